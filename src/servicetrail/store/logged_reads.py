"""The interfaces' one way to read SAT records (SPEC section 8): every read is made through a
`LoggedRead`, which counts what each of its reads returned and appends one access-log entry
before the caller answers. The API, the screen, the CLI and the webhook deliveries import
their reads from here only (tests/test_architecture.py checks it), so a new read cannot be
made without saying who reads and why, and cannot skip the entry.

    with logged_read(conn, viewer, reader, "search", filters) as read:
        items, more = read.search_page(search, limit, cursor)
    # the entry is stored here, before anything is sent

A read that ends in an exception (a time limit, a refusal) writes no entry: it returned
nothing. An export is spooled whole, counted as it is read, and its entry written
(`write_entry()`) before the spool is sent; an SSE stream writes its entry before its first
event and a second one when it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ..domain.access_log import ACTIONS, AccessEntry, Reader, Tally
from ..domain.model import Responsibility
from ..domain.search import Cursor, Search
from ..domain.visibility import Access, Decision, Viewer
from . import queries
from .access_log import append_entries, append_entry

if TYPE_CHECKING:
    from .outbox import Due, Share
    from .triggers import Triggers

# The reads that only some answers make (proofs, triggers, watches' events, the CSV report,
# the webhooks' leases) are imported by the methods that make them: every CLI read command
# starts a fresh interpreter, and `records` imported the watches' and the outbox's modules
# with the proofs', some 0.015 s of its CPU (session 62)


class LoggedRead:
    """The reads of one answer, by one reader; see the module's note."""

    def __init__(
        self,
        conn: Connection,
        viewer: Viewer,
        reader: Reader,
        action: str,
        filters: Mapping[str, Any],
        tally: Tally | None = None,
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        self.conn, self.viewer, self.reader = conn, viewer, reader
        self.action, self.filters = action, dict(filters)
        self.tally = Tally() if tally is None else tally  # a stream's counts, kept across reads
        self.entry: AccessEntry | None = None
        self.left_out = False
        self._seen: set[int] = set()

    def _counted(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # a record shown twice in one answer (in the exchange and among the triggers of a
        # record page) was returned once
        self.tally.count(i for i in items if i["id"] not in self._seen)
        self._seen.update(i["id"] for i in items)
        return items

    # --- reads that return records: each counts what it returned ---------------------------

    def search_page(
        self,
        search: Search,
        limit: int,
        cursor: Cursor | None = None,
        titles_only: bool = False,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        items, more = queries.search_page(
            self.conn, self.viewer, search, limit, cursor, titles_only
        )
        return self._counted(items), more

    def get_visible(self, record_id: int) -> dict[str, Any] | None:
        found = queries.get_visible(self.conn, self.viewer, record_id)
        if found is not None:
            self._counted([found])
        return found

    def get_own(self, record_id: int) -> dict[str, Any] | None:
        """The record when it is the viewer's own traffic (its payload may be handed over),
        else None; a record seen only as MP141 titles is neither returned nor counted."""
        found = queries.get_visible(self.conn, self.viewer, record_id)
        if found is None or found.get("access") != Access.OWN:
            return None
        return self._counted([found])[0]

    def proof_of(self, record_id: int) -> dict[str, Any] | None:
        """The record's proof document (SPEC section 7); it returns the record's leaf."""
        from . import log_proofs

        found = log_proofs.proof_with_record(self.conn, self.viewer, record_id)
        if found is None:
            return None
        self._counted([found[0]])
        return found[1]

    def verifier_keys(self) -> list[str]:
        """Every key the store's checkpoints were signed with (no record: not counted)."""
        from . import log_tree

        return log_tree.verifier_keys(self.conn)

    def explain(self, record_id: int) -> tuple[dict[str, Any], Decision] | None:
        found = queries.explain(self.conn, self.viewer, record_id)
        if found is not None:
            self._counted([found[0]])
        return found

    def exchange_of(
        self, current: dict[str, Any]
    ) -> tuple[list[tuple[dict[str, Any], Decision]], bool]:
        """The record's exchange (its request, acknowledgement, responses), each with why it
        is visible, and whether it was cut to the newest MAX_EXCHANGE. The why is read in one
        statement, however long the exchange; on SQLite in a snapshot after the messages', so
        that a message a registry correction hid meanwhile is left out (audit 28c)."""
        messages, cut = queries.exchange_of(self.conn, self.viewer, current["request_id"])
        reasons = queries.why_many(self.conn, self.viewer, messages)
        shown = [(m, reasons[m["id"]]) for m in messages if reasons[m["id"]].visible]
        self._counted([m for m, _ in shown])
        return shown, cut

    def triggers_of(self, record_id: int, minutes: int) -> tuple[dict[str, Any], Triggers] | None:
        from . import triggers

        found = triggers.triggers_of(self.conn, self.viewer, record_id, minutes)
        if found is not None:
            # what the answer lists (SPEC section 8: records returned); the record asked
            # about is never listed, and its id is in the entry's filters
            self._counted([t["record"] for t in found[1].items])
        return found

    def triggers_for(self, current: dict[str, Any], minutes: int) -> Triggers:
        """A record page's triggers: titles only (the page shows no payload of theirs)."""
        from . import triggers

        found = triggers.triggers_for(self.conn, self.viewer, current, minutes, titles_only=True)
        self._counted([t["record"] for t in found.items])
        return found

    def events_after(
        self, watch_id: int, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None] | None:
        from . import watch_events

        page = watch_events.events_after(self.conn, self.viewer, watch_id, after, limit)
        if page is not None:
            self._counted([e["record"] for e in page[0]])
        return page

    def newer_events(
        self, watch_id: int, after: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool] | None:
        """The oldest `limit` events after `after`, oldest first, and whether there are more
        (one more is read, neither shown nor counted)."""
        from . import watch_events

        found = watch_events.events_after(self.conn, self.viewer, watch_id, after, limit + 1)
        if found is None:
            return None
        shown = found[0][:limit]
        self._counted([e["record"] for e in shown])
        return shown, len(found[0]) > limit

    def recent_events(
        self, watch_id: int, limit: int, before: int
    ) -> tuple[list[dict[str, Any]], int | None] | None:
        """The newest `limit` events before `before` (watch_events.NO_EVENT_YET: the newest
        of all), newest first, and the id of the next older one (None: no more), which is
        read but neither shown nor counted."""
        from . import watch_events

        found = watch_events.recent_events(self.conn, self.viewer, watch_id, limit + 1, before)
        if found is None:
            return None
        shown, beyond = found[:limit], found[limit:]
        self._counted([e["record"] for e in shown])
        return shown, beyond[0]["event_id"] if beyond else None

    # --- exports: counted as they are read, sent once the entry is stored -----------------
    # The caller spools what these yield, then calls write_entry(), then sends the spool:
    # so the entry counts exactly what is sent. (Counting first and streaming after read
    # the rows twice, in two transactions: an ingest between them was sent uncounted.)

    def export_search(self, search: Search, limit: int | None = None) -> Iterator[dict[str, Any]]:
        for found in queries.iter_search(self.conn, self.viewer, search, limit):
            self.tally.count((found,))
            yield found

    def export_own_report(self, time_from: datetime, time_to: datetime) -> Iterator[dict[str, Any]]:
        for found in queries.iter_own_report(self.conn, self.viewer, time_from, time_to):
            self.tally.count_own(1)
            yield found

    def export_own_report_csv(self, time_from: datetime, time_to: datetime) -> Generator[bytes]:
        """The report as CSV chunks (store.export.OwnReport), counted once read through."""
        from .export import own_report_csv

        report = own_report_csv(self.conn, self.viewer, time_from, time_to)
        yield from report
        self.tally.count_own(report.rows)

    # --- reads about records already counted: they return no record of their own ---------

    def why_many(self, items: list[dict[str, Any]]) -> dict[int, Decision]:
        return queries.why_many(self.conn, self.viewer, items)

    def registry_of(self, device_id: str) -> list[Responsibility]:
        return queries.registry_of(self.conn, device_id, self.viewer.party_id)

    # --- the entry --------------------------------------------------------------------------

    def write_entry(self) -> AccessEntry | None:
        """Stores the entry of what was read so far (once): before a stream's first byte."""
        if self.entry is None and not self.left_out:
            self.entry = append_entry(self.conn, self.reader, self.action, self.filters, self.tally)
        return self.entry

    def leave_out_if_empty(self) -> None:
        """No entry if nothing was returned: for the repeated polls of a follower (`watch
        events --follow`), whose first read is logged and then every one that finds events."""
        self.left_out = self.tally.records_returned == 0


@contextmanager
def logged_read(
    conn: Connection, viewer: Viewer, reader: Reader, action: str, filters: Mapping[str, Any]
) -> Iterator[LoggedRead]:
    """A `LoggedRead` whose entry is stored when the block ends without an exception."""
    read = LoggedRead(conn, viewer, reader, action, filters)
    yield read
    read.write_entry()


WEBHOOK = Reader(None, "webhook", "webhook")


def lease_deliveries(
    conn: Connection,
    now: datetime,
    limit: int,
    lease: timedelta,
    share: Share | None = None,
    accept: Callable[[Due], bool] = lambda _: True,
) -> list[Due]:
    """`store.outbox.lease_due`, with one access-log entry per delivery leased (each attempt
    sends its record to the watch's Party's receiver), in the lease's transaction: the entry
    is committed before the delivery's first byte is sent."""
    from .outbox import lease_due

    def entries(due: list[Due]) -> None:
        reads = []
        for delivery in due:
            tally = Tally()
            tally.count([delivery.event["record"]])
            reader = Reader(delivery.party_id, WEBHOOK.actor, WEBHOOK.interface)
            filters = {"watch_id": delivery.watch_id, "event_id": delivery.event_id}
            reads.append((reader, "deliver", filters, tally))
        append_entries(conn, reads)

    return lease_due(conn, now, limit, lease, share, accept, then=entries)


__all__ = ["LoggedRead", "lease_deliveries", "logged_read"]
