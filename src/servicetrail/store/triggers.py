"""The possible triggers of a record (SPEC section 6), read through the rule.

No statement of its own: the record, the requests sharing its Request ID and the requests
on its Device in the window are reads of `store.queries` (the record look-up and
`search_page`, whose device search is the interval-first form, a page at a time up to the
cap), each bounded by the page size and the statement time limit. `domain.triggers` orders
and links them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ..domain.search import MAX_PAGE, Cursor, Search
from ..domain.times import parse_time
from ..domain.triggers import (
    LINK_REQUEST_ID,
    LINK_SAME_DEVICE,
    MAX_TRIGGERS,
    possible_triggers,
    window_bounds,
)
from ..domain.visibility import Viewer
from .items import PAGE_PAYLOAD_BYTES
from .queries import get_visible, search_page

_REQUESTS = ("request",)


# A records search that goes on where a cut list stops: from the cursor after the last one
# listed (None: from its first page)
Rest = tuple[Search, Cursor | None]


@dataclass(frozen=True)
class Triggers:
    """A record's possible triggers, and when the cap cut them, the searches for the rest: the
    requests sharing its Request ID, if the cap cut those, then the window's (which may repeat
    a request of the window listed first for its Request ID)."""

    items: list[dict[str, Any]]
    rest: tuple[Rest, ...] = ()


def triggers_of(
    conn: Connection, viewer: Viewer, record_id: int, minutes: int, limit: int = MAX_TRIGGERS
) -> tuple[dict[str, Any], Triggers] | None:
    """The record and its possible triggers, or None when the viewer may not see the record
    (exactly as when it does not exist)."""
    record = get_visible(conn, viewer, record_id, head_only=True)  # never listed
    if record is None:
        return None
    return record, triggers_for(conn, viewer, record, minutes, limit)


def triggers_for(
    conn: Connection,
    viewer: Viewer,
    record: dict[str, Any],
    minutes: int,
    limit: int = MAX_TRIGGERS,
    titles_only: bool = False,
) -> Triggers:
    """The possible triggers of `record`, an item the viewer was just shown (read through the
    rule; its id, time, Request ID and Device are all that is used). `titles_only`: for the
    record page, which shows none of their payloads (it read up to a thousand: review 30e)."""
    linked: list[dict[str, Any]] = []
    by_id = by_device = None
    budget = _Budget(titles_only, record["id"])
    if record["request_id"]:  # an empty Request ID (a response without one) links to nothing
        # room for the record itself (a request), and one more to tell a cut list
        by_id = Search(request_id=record["request_id"], kinds=_REQUESTS)
        linked, _ = _first(conn, viewer, by_id, limit + 2, titles_only, budget)
    on_device: list[dict[str, Any]] = []
    device_read_on = False  # the window's search stopped with requests left to read
    if record["device_id"]:
        start, end = window_bounds(parse_time(record["logged_at"]), minutes)
        # the requests on the Device (SPEC 6), not the viewer's own naming it in their body
        by_device = Search(
            device_id=record["device_id"],
            kinds=_REQUESTS,
            time_from=start,
            time_to=end,
            device_in_body=False,
        )
    # room for the record itself and for the linked requests, which may also be in the window;
    # none once the budget is spent (the window's come after the linked ones)
    window_left = by_device is not None and budget.spent
    if by_device is not None and not window_left:
        on_device, device_read_on = _first(
            conn, viewer, by_device, limit + 2 + len(linked), titles_only, budget
        )
    items, cut = possible_triggers(record, linked, on_device, limit)
    # (a window read whole that had more lists past the cap: this only keeps it so)
    cut = cut or device_read_on
    if not cut and budget.cut is None and not window_left:
        return Triggers(items)
    listed: dict[str, list[dict[str, Any]]] = {LINK_REQUEST_ID: [], LINK_SAME_DEVICE: []}
    for trigger in items:
        listed[trigger["link"]].append(trigger["record"])
    rest: list[Rest] = []
    linked_ones = [c for c in linked if c["id"] != record["id"]]
    if by_id is not None and (
        len(linked_ones) > len(listed[LINK_REQUEST_ID]) or budget.cut == by_id
    ):
        rest.append((by_id, _after(listed[LINK_REQUEST_ID])))
    if by_device is not None:
        rest.append((by_device, _after(listed[LINK_SAME_DEVICE])))
    return Triggers(items, tuple(rest))


def _after(shown: list[dict[str, Any]]) -> Cursor | None:
    """The cursor after the last of a search's items listed (None: none was)."""
    return Cursor(parse_time(shown[-1]["logged_at"]), shown[-1]["id"]) if shown else None


class _Budget:
    """The payloads a list of triggers holds: its requests' own payloads are whole, and a
    User's requests of a day (firmware images, 10 MB each) took a list of up to 1,000 to as
    many gigabytes. It stops reading once past PAGE_PAYLOAD_BYTES (`spent`: at most a page
    past it, no further search read), and says which search it cut short (`cut`, None when
    the last page read was its last): the list then ends there, with the searches for the
    rest.

    What is never listed (the record itself) and what is read twice (a request sharing the
    Request ID and in the window) counts once or not at all: a request whose own payload
    was past the budget had its list cut before the window's requests were read."""

    def __init__(self, titles_only: bool, record_id: int) -> None:
        self.left = None if titles_only else PAGE_PAYLOAD_BYTES
        self.cut: Search | None = None
        self._counted = {record_id}

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def take(self, page: list[dict[str, Any]]) -> None:
        if self.left is None:
            return
        for item in page:
            if item["id"] not in self._counted:
                self._counted.add(item["id"])
                self.left -= len((item.get("payload") or "").encode())


def _first(
    conn: Connection,
    viewer: Viewer,
    search: Search,
    wanted: int,
    titles_only: bool,
    budget: _Budget,
) -> tuple[list[dict[str, Any]], bool]:
    """The first `wanted` items of a search, newest first, a page at a time, or fewer where
    the budget ran out (`budget.cut`); and whether the search has more than those."""
    found: list[dict[str, Any]] = []
    cursor: Cursor | None = None
    while len(found) < wanted:
        page, cursor = search_page(
            conn, viewer, search, min(MAX_PAGE, wanted - len(found)), cursor, titles_only
        )
        found += page
        budget.take(page)
        if cursor is None:
            break
        if budget.spent:
            budget.cut = search
            break
    return found, cursor is not None
