"""Every read of SAT records, and the only public way to read them: each function takes the
viewer, so none can skip the rule.

Read the rule first (domain/visibility.py, and visibility_sql.py for the same rule in SQL),
then the forms a search takes here, each applying the rule on top of what it finds:
- a search by Device: the interval-first form (device_search.py);
- a search by another User's Request ID: its target's intervals (request_search.py);
- any other search, and a look-up by id: the per-Party visibility index (index_search.py);
- an export of everything that matches: the general form (`items.visible_titles`, with
  payload heads; a long payload is read whole as its row comes).
Filters (filters.py) and the item columns (items.py) are shared by all three; every read
runs inside `read_transaction.read_as`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select
from sqlalchemy.engine import Connection, Row

from ..domain.ids import MAX_ID
from ..domain.model import Responsibility, SatRecord
from ..domain.records import item
from ..domain.search import MAX_PAGE, Cursor, Search
from ..domain.visibility import Access, Decision, Scope, Viewer, decide
from .compiled_statements import fetch_all
from .device_search import device_search
from .filters import Shape, conditions, params_of, shape_of
from .index_search import (
    ROW_BUCKETS,
    index_keys_statement,
    index_records_statement,
    record_statement,
    request_statement,
    rows_bucket,
)
from .fetching import fetched_by_size
from .items import (
    PAGE_PAYLOAD_BYTES,
    PAYLOAD_HEAD_CHARS,
    head_chars_for,
    head_params,
    is_cut_short,
    newest_first,
    payload_bytes,
    visible_titles,
)
from .limits import EXPORT_SECONDS, StoreBusy
from .read_transaction import custom_plans, read_as
from .request_search import others_request, request_search
from .schema import dcc_user, party, responsibility, sat_payload, sat_record
from .visibility_sql import intervals_query, viewer_params

STREAM_PAGE = 2000
# a record page's exchange: a request has an acknowledgement and a few responses, but nothing
# stops a trail from holding thousands of records under one Request ID
MAX_EXCHANGE = 200
FILL_SHORT_PAGES = 3


def viewer_for(conn: Connection, party_id: str) -> Viewer | None:
    """The Party with all its User IDs, or None when no such Party is registered."""
    if conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first() is None:
        return None
    ids = conn.execute(select(dcc_user.c.user_id).where(dcc_user.c.party_id == party_id)).scalars()
    return Viewer(party_id, frozenset(ids))


def _general_search(
    scope: Scope, shape: Shape, with_cursor: bool, titles_only: bool = False
) -> Select[Any]:
    """The general form, newest first: each own payload's head (a long one is read whole
    after: `_whole_payloads`, `_with_whole_payload`), or with `titles_only` none."""
    items = visible_titles(scope, heads=not titles_only)
    return newest_first(items.where(*conditions(shape, with_cursor)))


@lru_cache(maxsize=512)
def _general_page(
    scope: Scope, shape: Shape, with_cursor: bool, titles_only: bool = False
) -> Select[Any]:
    return _general_search(scope, shape, with_cursor, titles_only).limit(
        bindparam("lim", type_=Integer)
    )


def search_page(
    conn: Connection,
    viewer: Viewer,
    search: Search,
    limit: int,
    cursor: Cursor | None = None,
    titles_only: bool = False,
    heads_only: bool = False,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page, newest first, and the cursor of the next page (None on the last).
    `titles_only`: the items' payloads are not read (empty), for a screen that shows none;
    `heads_only`: each payload's first PAYLOAD_HEAD_CHARS and one more character at the most,
    for a screen that shows no more (a longer one is then that long: `items.is_cut_short`)."""
    limit = max(1, min(limit, MAX_PAGE))
    params = params_of(viewer, search, cursor)
    params["lim"] = limit + 1
    head_chars = PAYLOAD_HEAD_CHARS if heads_only else head_chars_for(limit + 1)
    params.update(head_params(head_chars))
    by_device = bool(search.device_id) and not search.request_id
    # A device search reads the viewer's Responsibility intervals on the device first, and a
    # search by another User's Request ID those on its target: they decide the statement's
    # form (and travel with the transaction's settings).
    asked = others_request(viewer, search)
    prefetch: tuple[Any, dict[str, Any]] | None = None
    if search.scope is not Scope.OWN:
        if by_device:
            prefetch = (intervals_query(), params)
        elif asked is not None:
            prefetch = (intervals_query(), {**viewer_params(viewer), "device_id": asked.target})
    rows: Sequence[Any]
    next_cursor: Cursor | None = None
    # both forms read ordered index ranges with a LIMIT: a plan that does not depend on the values
    with read_as(
        conn,
        viewer,
        generic_plan=True,
        prefetch=prefetch,
        one_snapshot=True,
    ) as intervals:
        if by_device:
            query = device_search(
                viewer,
                search,
                cursor is not None,
                params,
                intervals,
                titles_only,
                on_sqlite=conn.dialect.name == "sqlite",
            )
            if query is None:  # too many branches for the interval-first form: back to custom plans
                custom_plans(conn)
                query = _general_page(
                    search.scope, shape_of(search), cursor is not None, titles_only
                )
            rows = fetch_all(conn, query, params)
        elif search.request_id:
            bucket = rows_bucket(limit + 1)
            on_sqlite = conn.dialect.name == "sqlite"
            if asked is not None:
                # every branch an index seek with a LIMIT: a generic plan, as the device
                # search's (planned afresh, its branches over every monthly partition took
                # PostgreSQL 15 ms at 1M, against 5 for the old form); on PostgreSQL one
                # lateral branch over all of the viewer's ranges (request_search)
                query = request_search(
                    search,
                    asked,
                    cursor is not None,
                    params,
                    intervals,
                    bucket,
                    titles_only,
                    on_sqlite,
                )
            else:
                # the generic plan too, its index probe a subplan a record (seen_by_viewer):
                # planned for its values, a search spent 4-5 of its ~5 ms planning (48b)
                query = request_statement(
                    search.scope,
                    shape_of(search),
                    cursor is not None,
                    bucket,
                    titles_only,
                    without_row_security=on_sqlite,
                )
            rows = conn.execute(query, params).all()
        else:
            rows, next_cursor = _index_page(
                conn, search, cursor is not None, params, limit, titles_only
            )
            rows, cut = _whole_payloads(conn, rows, heads_only, head_chars)
            if cut:
                next_cursor = Cursor(rows[-1][1], rows[-1][0])
            return [item(*r) for r in rows], next_cursor
        more = len(rows) > limit
        rows, cut = _whole_payloads(conn, rows[:limit], heads_only, head_chars)
        more = more or cut
    # every form's rows begin with (id, logged_at)
    next_cursor = Cursor(rows[-1][1], rows[-1][0]) if more and rows else None
    return [item(*r) for r in rows], next_cursor


# where an item's row holds its payload (`domain.records.item`: the last but two)
_PAYLOAD_AT = -3


def _whole_payloads(
    conn: Connection,
    rows: Sequence[Any],
    heads_only: bool = False,
    head_chars: int = PAYLOAD_HEAD_CHARS,
) -> tuple[list[tuple[Any, ...]], bool]:
    """A page's rows (newest first) with each payload its statement cut short
    (`items.payload_head`, to `head_chars`) read whole, while the page's payloads stay within
    PAGE_PAYLOAD_BYTES: the page ends before the first row that would pass it (the first row
    is always whole), and the second value says whether it ended there. Two statements, and
    only for a page with a long payload: the sizes, then the payloads that fit. `heads_only`:
    the rows as they are (search_page's)."""
    short = (
        [] if heads_only else [row for row in rows if is_cut_short(row[_PAYLOAD_AT], head_chars)]
    )
    if not short:
        return list(rows), False
    # planned for their lists, not in the page's generic plan (the device search's): generic,
    # the two statements of a page of 1,000 took 65-73 ms, custom 17-32 (review 31a)
    custom_plans(conn)
    p = sat_payload.c
    # by the payloads' key (device, time, id): without the Device, PostgreSQL read the
    # month's whole partition for them, twice (review 30e: 33 ms a page, growing with it)
    where = (
        p.device_id.in_(sorted({row[5] for row in short})),
        p.logged_at.in_(sorted({row[1] for row in short})),
        p.record_id.in_([row[0] for row in short]),
    )
    sizes: dict[int, int] = {
        record_id: size
        for record_id, size in conn.execute(
            select(p.record_id, payload_bytes(p.payload)).where(*where)
        )
    }
    room, kept, wanted = PAGE_PAYLOAD_BYTES, list[Any](), set[int]()
    for row in rows:
        payload = row[_PAYLOAD_AT]
        long = is_cut_short(payload, head_chars)
        size = _found(sizes, row[0]) if long else len((payload or "").encode())
        if kept and size > room:
            break
        room -= size
        kept.append(row)
        if long:
            wanted.add(row[0])
    whole: dict[int, str] = {
        record_id: payload
        for record_id, payload in conn.execute(
            select(p.record_id, p.payload).where(*where[:2], p.record_id.in_(sorted(wanted)))
        )
    }
    return [
        (*row[:_PAYLOAD_AT], _found(whole, row[0]), *row[_PAYLOAD_AT + 1 :])
        if row[0] in wanted
        else tuple(row)
        for row in kept
    ], len(kept) < len(rows)


def _index_page(
    conn: Connection,
    search: Search,
    with_cursor: bool,
    params: dict[str, Any],
    limit: int,
    titles_only: bool = False,
) -> tuple[Sequence[Row[Any]], Cursor | None]:
    """A device-less page through the visibility index (`_through_the_index`). A page the
    rule cut short (index rows gone stale: the registry changed without the index) is filled
    from the pages after it, a few at the most: a screen that showed "no records" beside
    "older records" would read as the end of the listing."""
    rows, next_cursor = _through_the_index(
        conn, search, with_cursor, params, limit, rows_bucket(limit + 1), titles_only
    )
    for _ in range(FILL_SHORT_PAGES):
        if len(rows) >= limit or next_cursor is None:
            break
        params.update(cursor_at=next_cursor.logged_at, cursor_id=next_cursor.record_id)
        wanted = limit - len(rows)
        more_rows, next_cursor = _through_the_index(
            conn, search, True, params, wanted, rows_bucket(wanted + 1), titles_only
        )
        rows = [*rows, *more_rows]
    return rows, next_cursor


def _through_the_index(
    conn: Connection,
    search: Search,
    with_cursor: bool,
    params: dict[str, Any],
    limit: int,
    bucket: int,
    titles_only: bool = False,
) -> tuple[Sequence[Row[Any]], Cursor | None]:
    """A device-less page and its next cursor: the candidates' keys from the visibility
    index, then the records themselves with the rule on top (see index_search), each
    statement planned as suits it.

    The page ends, and the next begins, at the index's keys, not at the records the rule
    kept: a registry correction committed between the two statements leaves stale index
    rows for the rule to drop, and a page counted after the drop came back short with no
    next cursor, the listing ended there (audit of races, session 16)."""
    shape = shape_of(search)
    keys = conn.execute(
        index_keys_statement(search.scope, shape, with_cursor, bucket), params
    ).all()
    # each access's branch is ordered and limited on its own, and a record may be in two
    newest = sorted({(k[0], k[1]) for k in keys}, key=lambda k: (k[1], k[0]), reverse=True)
    page = newest[:limit]
    if not page:
        return [], None
    after = Cursor(page[-1][1], page[-1][0]) if len(newest) > limit else None
    custom_plans(conn)
    rows = conn.execute(
        index_records_statement(search.scope, shape, titles_only),
        {
            **params,
            "record_ids": [k[0] for k in page],
            "record_times": sorted({k[1] for k in page}),
        },
    ).all()
    return rows, after


def iter_search(
    conn: Connection, viewer: Viewer, search: Search, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every matching item (or the first `limit`), newest first, for exports and the CLI.

    One statement, streamed from the server in chunks: memory stays flat and the engine
    sorts once (keyset pages would sort again for every page). Its time limit is the
    export limit, since a whole year of a supplier's own traffic is a legitimate ask.
    """
    params = params_of(viewer, search, None)
    if (
        limit is not None
        and limit <= ROW_BUCKETS[-1]
        and not search.device_id
        and not search.request_id
    ):
        # the first `limit` of a device-less search: the index walk of a page, however large
        # (in pages, where long payloads cut one short: `_whole_payloads`)
        with read_as(conn, viewer, EXPORT_SECONDS, generic_plan=True, one_snapshot=True):
            after: Cursor | None = None
            while limit > 0:
                params["lim"] = limit
                head_chars = head_chars_for(limit + 1)
                params.update(head_params(head_chars))
                found, after = _index_page(conn, search, after is not None, params, limit)
                page, cut = _whole_payloads(conn, found, head_chars=head_chars)
                if cut:
                    after = Cursor(page[-1][1], page[-1][0])
                yield from (item(*row) for row in page)
                limit -= len(page)
                if after is None or not page:
                    break
                params.update(cursor_at=after.logged_at, cursor_id=after.record_id)
        return
    # each payload's head, and a long one read whole by its key as its row comes: a run of
    # long payloads is then held one at a time, whatever came before them (fetched by their
    # size alone, a small row ahead of them let the next fetch take 2,000: review 30e)
    query = _general_search(search.scope, shape_of(search), False)
    if limit is not None:
        query = query.limit(limit)
    with read_as(conn, viewer, EXPORT_SECONDS):
        # streamed as a statement's option: Connection.execution_options() sets it on the
        # connection in place, and every later statement of the read (each long payload's)
        # became a server-side cursor of its own
        result = conn.execute(query, params, execution_options={"stream_results": True})
        for row in fetched_by_size(result, _payload_size, STREAM_PAGE):
            yield item(*_with_whole_payload(conn, row))


def _payload_size(row: Any) -> int:
    """A row's payload head's size, in bytes at the most a character may take."""
    return 4 * len(row[_PAYLOAD_AT] or "")


def _with_whole_payload(conn: Connection, row: Any) -> Any:
    if not is_cut_short(row[_PAYLOAD_AT]):
        return row
    p = sat_payload.c
    whole = conn.execute(
        select(p.payload).where(p.device_id == row[5], p.logged_at == row[1], p.record_id == row[0])
    ).scalar_one_or_none()
    if whole is None:
        raise _gone(row[0])
    return (*row[:_PAYLOAD_AT], whole, *row[_PAYLOAD_AT + 1 :])


def _found(read: dict[int, Any], record_id: int) -> Any:
    """A long payload's size or whole, read after its head: in one snapshot it is there; if
    the store changed under the read all the same (a month retired), the read is asked again
    rather than a head passed off as the payload (review 30e)."""
    if record_id not in read:
        raise _gone(record_id)
    return read[record_id]


def _gone(record_id: int) -> StoreBusy:
    return StoreBusy(f"record {record_id}'s payload went while it was read")


def get_visible(
    conn: Connection,
    viewer: Viewer,
    record_id: int,
    *,
    then_as_owner: bool = False,
    head_only: bool = False,
) -> dict[str, Any] | None:
    """One record if the viewer may see it: fetched and checked in one statement, so a hidden
    record and a missing one are the same None (see index_search.record_statement).

    `then_as_owner`: the rest of the transaction runs as the store's owner (see
    read_transaction.read_as), for the log's reads of a proof; the record is read, and the
    role switched, with the transaction's settings in one round trip. `head_only`: an own
    payload's head only (`items.payload_head`), for a read that shows none of it or a head
    (the `why` of a record, its triggers, its page: each read a firmware image whole)."""
    if not 1 <= record_id <= MAX_ID:  # no record has such an id; the driver would overflow
        return None
    params = {**viewer_params(viewer), "record_id": record_id, "lim": 1}
    # one snapshot: a record page's exchange and triggers, read next in the transaction,
    # see the store as this read did
    with read_as(
        conn,
        viewer,
        generic_plan=True,
        prefetch=(record_statement(head_only), params),
        then_as_owner=then_as_owner,
        one_snapshot=True,
    ) as rows:
        pass
    return item(*rows[0]) if rows else None


def registry_of(conn: Connection, device_id: str, party_id: str) -> list[Responsibility]:
    r = responsibility.c
    rows = conn.execute(
        select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to).where(
            r.device_id == device_id, r.party_id == party_id
        )
    )
    return [Responsibility(*row) for row in rows]


def explain(
    conn: Connection, viewer: Viewer, record_id: int
) -> tuple[dict[str, Any], Decision] | None:
    """A visible record and why it is visible (rule, and for MP141 the granting interval).
    On SQLite the why is read in a snapshot after the record's: a registry correction
    committed between the two made it "not visible to you" beside the record (audit 28c).
    Not visible by then, the record is not the viewer's, as if missing."""
    found = get_visible(conn, viewer, record_id, head_only=True)
    if found is None:
        return None
    decision = why_many(conn, viewer, [found])[found["id"]]
    return (found, decision) if decision.visible else None


def why_many(conn: Connection, viewer: Viewer, items: list[dict[str, Any]]) -> dict[int, Decision]:
    """Why each of `items` (already read through the rule) is visible: `decide()` over the
    viewer's intervals on their devices, read in one statement however many items there are."""
    devices = sorted(
        {i["device_id"] for i in items if i["access"] != Access.OWN and i["device_id"]}
    )
    registry: dict[str, list[Responsibility]] = {}
    if devices:
        r = responsibility.c
        for row in conn.execute(
            select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to).where(
                r.device_id.in_(devices), r.party_id == viewer.party_id
            )
        ):
            registry.setdefault(row.device_id, []).append(Responsibility(*row))
    decisions = {}
    for found in items:
        record = SatRecord(
            datetime.fromisoformat(found["logged_at"].replace("Z", "+00:00")),
            found["kind"],
            found["request_id"],
            found["srv"],
            found["user_id"],
            found["device_id"],
            found["response_code"],
            "",
        )
        decisions[found["id"]] = decide(viewer, record, registry.get(record.device_id, []))
    return decisions


def exchange_of(
    conn: Connection, viewer: Viewer, request_id: str
) -> tuple[list[dict[str, Any]], bool]:
    """The visible messages sharing a Request ID (request, acknowledgement, responses), oldest
    first, and whether there were more than MAX_EXCHANGE (the newest are kept: the oldest,
    the request among them, are a search by Request ID away). Each payload is its head
    (`items.payload_head`: a record page shows no more; the whole is a download away). A
    response without a RequestID (empty) shares it with nothing."""
    if not request_id:
        return [], False
    # payload heads only (a record page shows no more of each), so that no page is cut
    # short by long payloads: one so cut read as "more than MAX_EXCHANGE", and the exchange of
    # a firmware image lost its request (review 30e); and paged on whole, 200 of them held
    # 3 GB (review 30f)
    items, next_page = search_page(
        conn, viewer, Search(request_id=request_id), MAX_EXCHANGE, heads_only=True
    )
    return items[::-1], next_page is not None


def iter_own_report(
    conn: Connection, viewer: Viewer, time_from: datetime, time_to: datetime
) -> Iterator[dict[str, Any]]:
    """SPEC section 1 rule 7: a report holds the viewer's own traffic only (rule 1 alone)."""
    yield from iter_search(
        conn, viewer, Search(time_from=time_from, time_to=time_to, scope=Scope.OWN)
    )


def stored_record_count(conn: Connection) -> int:
    """How many SAT records the store holds, for the operator (`servicetrail demo` checks the
    store is empty). Not a viewer's total: those go through the rule like every read."""
    return conn.execute(select(func.count()).select_from(sat_record)).scalar_one()


def holds_message(conn: Connection, request_id: str, kind: str, logged_at: datetime) -> bool:
    """Whether a record of that Request ID, kind and time is stored, for the operator
    (`generate --into-store` tells its own world from a real trail)."""
    found = select(sat_record.c.id).where(
        sat_record.c.request_id == request_id,
        sat_record.c.kind == kind,
        sat_record.c.logged_at == logged_at,
    )
    return conn.execute(found.limit(1)).first() is not None


def registered_users(conn: Connection) -> set[tuple[str, str]]:
    """Every (User ID, Party) the registry holds, for the operator (`generate --into-store`
    tells its own world's registry from a real one: a few hundred rows)."""
    return {(u, p) for u, p in conn.execute(select(dcc_user.c.user_id, dcc_user.c.party_id))}


__all__ = [
    "Access",
    "holds_message",
    "registered_users",
    "explain",
    "exchange_of",
    "get_visible",
    "why_many",
    "iter_own_report",
    "iter_search",
    "registry_of",
    "search_page",
    "stored_record_count",
    "viewer_for",
]
