"""Every read of SAT records: one query builder that takes the viewer, so none can skip the rule."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (BindParameter, ColumnElement, FromClause, Integer, Select, and_, bindparam, case, false, null,
                        or_, select, text, union_all)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.util import ClauseAdapter

from ..domain.model import Responsibility, SatRecord
from ..domain.records import item
from ..domain.search import MAX_PAGE, Cursor, Search
from ..domain.visibility import Access, Decision, Scope, Viewer, decide
from .limits import DEFAULT_SECONDS, EXPORT_SECONDS, time_limit
from .schema import UtcDateTime, dcc_user, device, responsibility, sat_payload, sat_record, sat_visibility
from .visibility_index import MP141, OWN
from .visibility_sql import (VIEWER_PARTY, access_column, intervals_query, merged_ranges, mp141_range, own_clause,
                             own_rows, viewer_params, visible_clause)

s = sat_record.c
STREAM_PAGE = 2000
MAX_RECORD_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
READER_ROLE = "servicetrail_reader"
# Past these, a device search uses the general form: one branch per User ID and per
# Responsibility range stops paying off, and the statement shapes stay few.
MAX_OWN_BRANCHES = 8
MAX_RANGE_BRANCHES = 8


def _bounded_as(conn: Connection, viewer: Viewer, seconds: float = DEFAULT_SECONDS, generic_plan: bool = False,
                prefetch: tuple[Any, dict[str, Any]] | None = None):
    """A time limit, and on PostgreSQL the row-level-security role and viewer for this
    transaction: a pooled connection never carries a previous viewer past its transaction.

    `generic_plan`: for the interval-first device search only. Its every branch is one
    ordered index range with a LIMIT, a plan that does not depend on the values, while
    planning it afresh over every monthly partition cost 5-9 ms against 0.5-2 ms to run
    (EXPLAIN ANALYZE, 1M records). The general form keeps custom plans (engine.py).

    `prefetch`: a small read that goes to the database with the settings (limits.time_limit);
    the context yields its rows."""
    settings = {"role": READER_ROLE, "servicetrail.party_id": viewer.party_id,
                "servicetrail.user_ids": ",".join(sorted(viewer.user_ids))}
    if generic_plan:
        settings["plan_cache_mode"] = "force_generic_plan"
    return time_limit(conn, seconds, settings=settings, prefetch=prefetch)


def viewer_for(conn: Connection, party_id: str) -> Viewer | None:
    """The Party with all its User IDs, or None when no such Party is registered."""
    from .schema import party

    if conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first() is None:
        return None
    ids = conn.execute(select(dcc_user.c.user_id).where(dcc_user.c.party_id == party_id)).scalars()
    return Viewer(party_id, frozenset(ids))


# Statements are built once per shape (which filters, scope, cursor or not) with named
# parameters, and executed with the values: building them per request cost more than the
# query itself, and a stable structure lets SQLAlchemy reuse its compiled SQL.

def own_only(column: ColumnElement) -> ColumnElement:
    """A field read from a message's body: NULL unless rule 1 holds, so the query itself never
    returns it for another User's record (SPEC section 5: only with access "own")."""
    return case((own_clause(), column), else_=null())


def _item_columns(with_payload: bool = True) -> list:
    """The columns of `domain.records.item`, in its order (the payload last but two, when read
    here)."""
    columns = [s.id, s.logged_at, s.kind, s.request_id, s.srv, s.device_id, device.c.device_type, device.c.smets,
               s.user_id, dcc_user.c.role, dcc_user.c.party_id, s.response_code, s.command_variant,
               access_column().label("access")]
    body_fields = [own_only(s.execution_at).label("execution_at"),
                   own_only(s.subject_device_id).label("subject_device_id")]
    return columns + ([sat_payload.c.payload] if with_payload else []) + body_fields


def _with_item_joins(base: FromClause, with_payload: bool = True) -> FromClause:
    joined = (base.outerjoin(device, device.c.device_id == s.device_id)
              .outerjoin(dcc_user, dcc_user.c.user_id == s.user_id))
    if not with_payload:
        return joined
    # the payload join is itself guarded by rule 1: no path reads another User's payload
    return joined.outerjoin(sat_payload, and_(sat_payload.c.record_id == s.id, sat_payload.c.logged_at == s.logged_at,
                                              sat_payload.c.device_id == s.device_id, own_clause()))


def _visible_items(scope: Scope = Scope.ALL, with_payload: bool = True) -> Select:
    """The only way to select SAT records: filtered by the rule, shaped as items (without the
    payload column when the caller reads payloads itself, through `own_payload`)."""
    return (select(*_item_columns(with_payload)).select_from(_with_item_joins(sat_record, with_payload))
            .where(visible_clause(scope)))


def own_payload(rows: FromClause) -> ColumnElement:
    """The payload of each of `rows` (records selected through `_visible_items`), read only
    where rule 1 holds: a correlated read per row, so payloads are fetched for the rows a
    caller keeps, after its filtering and sorting, never for other Users' rows."""
    c = rows.c
    payload = (select(sat_payload.c.payload)
               .where(sat_payload.c.record_id == c.id, sat_payload.c.logged_at == c.logged_at,
                      sat_payload.c.device_id == c.device_id)
               .scalar_subquery())
    return case((ClauseAdapter(rows).traverse(own_clause()), payload), else_=null())


Shape = tuple[bool, bool, bool, bool, bool, bool]  # device, request, srvs, kinds, from, to


def _shape(search: Search) -> Shape:
    return (bool(search.device_id), bool(search.request_id), search.srvs is not None, bool(search.kinds),
            search.time_from is not None, search.time_to is not None)


def _params(viewer: Viewer, search: Search, cursor: Cursor | None) -> dict[str, Any]:
    params = viewer_params(viewer)
    params.update(device_id=search.device_id, request_id=search.request_id,
                  srvs=list(search.srvs or ()), kinds=list(search.kinds or ()),
                  time_from=search.time_from, time_to=search.time_to)
    if cursor is not None:
        params.update(cursor_at=cursor.logged_at, cursor_id=cursor.record_id)
    return params


def _device_param() -> BindParameter:
    return bindparam("device_id", type_=s.device_id.type)


def device_match() -> ColumnElement[bool]:
    """A record of the Device: its own `device_id`, or, for the viewer's own non-device
    requests only, the Device their body is about (SPEC 4.1 `subject_device_id`, which never
    widens rule 3)."""
    return or_(s.device_id == _device_param(), and_(s.subject_device_id == _device_param(), own_clause()))


def _conditions(shape: Shape, with_cursor: bool, device: ColumnElement[bool] | None = None) -> list:
    """The search's filters; `device` replaces the device filter (the interval-first branches
    each read one index, so they say which column they match)."""
    has_device, has_request, has_srvs, has_kinds, has_from, has_to = shape
    when = []
    if has_device:
        when.append(device_match() if device is None else device)
    if has_request:
        when.append(s.request_id == bindparam("request_id", type_=s.request_id.type))
    if has_srvs:
        when.append(s.srv.in_(bindparam("srvs", expanding=True, type_=s.srv.type)))
    if has_kinds:
        when.append(s.kind.in_(bindparam("kinds", expanding=True, type_=s.kind.type)))
    if has_from:
        when.append(s.logged_at >= bindparam("time_from", type_=UtcDateTime))
    if has_to:
        when.append(s.logged_at < bindparam("time_to", type_=UtcDateTime))
    if with_cursor:
        at = bindparam("cursor_at", type_=UtcDateTime)
        # the first conjunct is implied by the second; it gives the engine a range bound
        when.append(and_(s.logged_at <= at,
                         or_(s.logged_at < at, and_(s.logged_at == at, s.id < bindparam("cursor_id", type_=s.id.type)))))
    return when


def _newest_first(query: Select) -> Select:
    return query.order_by(s.logged_at.desc(), s.id.desc())


def _filtered_search(scope: Scope, shape: Shape, with_cursor: bool) -> Select:
    return _newest_first(_visible_items(scope).where(*_conditions(shape, with_cursor)))


@lru_cache(maxsize=512)
def _page_statement(scope: Scope, shape: Shape, with_cursor: bool) -> Select:
    return _filtered_search(scope, shape, with_cursor).limit(bindparam("lim", type_=Integer))


_RECORD_COLUMNS = (s.id, s.logged_at, s.kind, s.request_id, s.srv, s.device_id, s.user_id, s.response_code,
                   s.command_variant, s.execution_at, s.subject_device_id)


@lru_cache(maxsize=512)
def _device_statement(scope: Scope, shape: Shape, with_cursor: bool, own_branches: int,
                      ranges: tuple[bool, ...]) -> Select:
    """The interval-first form of a device search (see visibility_sql): the newest `lim`
    rows of each of the viewer's User IDs on the device, and of each Responsibility range
    of the viewer on it, each one ordered index range; then the rule itself, on top, over
    those few candidates, and the page. A busy device's other rows are never read.

    Each branch reads whole (narrow) records, so the page is not joined back to the trail,
    and a payload is read only for the viewer's own rows: on PostgreSQL, joining back and
    probing payloads for every row cost 1.2 ms of a search against 0.45 ms this way
    (EXPLAIN ANALYZE, 1M records, monthly partitions).

    `ranges` says, per range, whether it has an end. The viewer's own non-device requests
    about the device (`subject_device_id`) come through one more branch per User ID."""
    on_device = _conditions(shape, with_cursor, device=s.device_id == _device_param())
    on_subject = _conditions(shape, with_cursor, device=s.subject_device_id == _device_param())
    lim = bindparam("lim", type_=Integer)
    branches = [(on_device, own_rows(f"own_{i}")) for i in range(own_branches)]
    branches += [(on_subject, own_rows(f"own_{i}")) for i in range(own_branches)]
    branches += [(on_device, mp141_range(f"from_{j}", f"to_{j}" if has_end else None))
                 for j, has_end in enumerate(ranges)]
    # each branch is wrapped in a subquery: SQLite allows ORDER BY / LIMIT only on a whole compound
    parts = [select(*b.c).select_from(b) for b in (
        _newest_first(select(*_RECORD_COLUMNS).where(*where, rule)).limit(lim).subquery() for where, rule in branches)]
    candidate = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("candidate")
    return _page_of_candidates(candidate, scope)


def _page_of_candidates(candidate: FromClause, scope: Scope, conditions: list | None = None) -> Select:
    """The page from candidate records (whole narrow rows): the rule itself on top, then the
    items, newest first. `conditions`: the search's filters, checked again here when the
    candidates come from the visibility index."""
    c = candidate.c
    on_candidate = ClauseAdapter(candidate).traverse  # the rule's own clauses, read off the candidates
    query = (
        select(c.id, c.logged_at, c.kind, c.request_id, c.srv, c.device_id, device.c.device_type, device.c.smets,
               c.user_id, dcc_user.c.role, dcc_user.c.party_id, c.response_code, c.command_variant,
               on_candidate(access_column()).label("access"), own_payload(candidate).label("payload"),
               on_candidate(own_only(s.execution_at)).label("execution_at"),
               on_candidate(own_only(s.subject_device_id)).label("subject_device_id"))
        .select_from(candidate.outerjoin(device, device.c.device_id == c.device_id)
                     .outerjoin(dcc_user, dcc_user.c.user_id == c.user_id))
        .where(on_candidate(visible_clause(scope)), *(on_candidate(w) for w in conditions or ()))
    )
    return query.order_by(c.logged_at.desc(), c.id.desc()).limit(bindparam("lim", type_=Integer))


# --- device-less searches: through the per-Party visibility index --------------------------

_SCOPE_ACCESS = {Scope.OWN: (OWN,), Scope.OTHERS: (MP141,), Scope.ALL: (OWN, MP141)}


def _index_conditions(shape: Shape, with_cursor: bool) -> list:
    """The search's filters on the index's own columns (it carries the title fields)."""
    v = sat_visibility.c
    _, has_request, has_srvs, has_kinds, has_from, has_to = shape
    when = [v.party_id == bindparam(VIEWER_PARTY, type_=v.party_id.type)]
    if has_request:
        when.append(v.request_id == bindparam("request_id", type_=v.request_id.type))
    if has_srvs:
        when.append(v.srv.in_(bindparam("srvs", expanding=True, type_=v.srv.type)))
    if has_kinds:
        when.append(v.kind.in_(bindparam("kinds", expanding=True, type_=v.kind.type)))
    if has_from:
        when.append(v.logged_at >= bindparam("time_from", type_=UtcDateTime))
    if has_to:
        when.append(v.logged_at < bindparam("time_to", type_=UtcDateTime))
    if with_cursor:
        at = bindparam("cursor_at", type_=UtcDateTime)
        when.append(and_(v.logged_at <= at, or_(v.logged_at < at, and_(v.logged_at == at,
                                                                        v.record_id < bindparam("cursor_id")))))
    return when


@lru_cache(maxsize=256)
def _index_statement(scope: Scope, shape: Shape, with_cursor: bool) -> Select:
    """A search without a Device: the newest `lim` index rows of the viewer's Party per rule
    the scope wants (one ordered index range each), the records they point at, and the rule
    and the filters again on top. The time depends on the page, not on the trail: the index
    is read in order and stops at the page's end, whatever else is stored."""
    v = sat_visibility.c
    lim = bindparam("lim", type_=Integer)
    where = _index_conditions(shape, with_cursor)
    parts = [select(*b.c).select_from(b) for b in (
        select(v.record_id, v.logged_at).where(v.access == code, *where)
        .order_by(v.logged_at.desc(), v.record_id.desc()).limit(lim).subquery()
        for code in _SCOPE_ACCESS[scope])]
    found = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("found")
    # the records themselves, by id and time (the time selects the month's partition)
    candidate = (select(*_RECORD_COLUMNS).select_from(found.join(
        sat_record, and_(s.id == found.c.record_id, s.logged_at == found.c.logged_at)))).subquery("candidate")
    return _page_of_candidates(candidate, scope, _conditions(shape, with_cursor))


def _device_search(viewer: Viewer, search: Search, with_cursor: bool, params: dict[str, Any],
                   intervals: list[tuple] | None) -> Select | None:
    """The interval-first statement for this device search (adding its parameters), or
    None when the general form should be used. `intervals`: the rows of `intervals_query`
    (None for a search of the viewer's own traffic, which needs none)."""
    user_ids = sorted(viewer.user_ids) if search.scope is not Scope.OTHERS else []
    ranges = merged_ranges([Responsibility(*row) for row in intervals or ()])
    if len(user_ids) > MAX_OWN_BRANCHES or len(ranges) > MAX_RANGE_BRANCHES:
        return None
    for i, user_id in enumerate(user_ids):
        params[f"own_{i}"] = user_id
    for j, (start, end) in enumerate(ranges):
        params[f"from_{j}"], params[f"to_{j}"] = start, end
    if not user_ids and not ranges:
        return select(s.id).where(false())  # the viewer may see nothing on this device
    return _device_statement(search.scope, _shape(search), with_cursor, len(user_ids),
                             tuple(end is not None for _, end in ranges))


def _custom_plans(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"))


def _as_item(row: Any) -> dict[str, Any]:
    return item(*row)


def search_page(conn: Connection, viewer: Viewer, search: Search, limit: int,
                cursor: Cursor | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    limit = max(1, min(limit, MAX_PAGE))
    params = _params(viewer, search, cursor)
    params["lim"] = limit + 1
    # A device search reads the viewer's Responsibility intervals on the device first: they
    # decide the statement's form (and travel with the transaction's settings).
    needs_intervals = bool(search.device_id) and not search.request_id and search.scope is not Scope.OWN
    # both forms read ordered index ranges with a LIMIT: a plan that does not depend on the values
    with _bounded_as(conn, viewer, generic_plan=True,
                     prefetch=(intervals_query(), params) if needs_intervals else None) as intervals:
        if search.device_id and not search.request_id:
            query = _device_search(viewer, search, cursor is not None, params, intervals)
            if query is None:  # too many branches for the interval-first form: back to custom plans
                _custom_plans(conn)
                query = _page_statement(search.scope, _shape(search), cursor is not None)
        else:
            query = _index_statement(search.scope, _shape(search), cursor is not None)
        rows = conn.execute(query, params).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = Cursor(rows[-1].logged_at, rows[-1].id) if more and rows else None
    return [_as_item(r) for r in rows], next_cursor


def iter_search(conn: Connection, viewer: Viewer, search: Search, limit: int | None = None
                ) -> Iterator[dict[str, Any]]:
    """Every matching item (or the first `limit`), newest first, for exports and the CLI.

    One statement, streamed from the server in chunks: memory stays flat and the engine
    sorts once (keyset pages would sort again for every page). Its time limit is the
    export limit, since a whole year of a supplier's own traffic is a legitimate ask.
    """
    params = _params(viewer, search, None)
    if limit is not None and not search.device_id:
        # the first `limit` of a device-less search: the index walk of a page, however large
        query: Select = _index_statement(search.scope, _shape(search), False)
        params["lim"] = limit
    else:
        query = _filtered_search(search.scope, _shape(search), False)
        if limit is not None:
            query = query.limit(limit)
    with _bounded_as(conn, viewer, EXPORT_SECONDS):
        for row in conn.execution_options(yield_per=STREAM_PAGE).execute(query, params):
            yield _as_item(row)


@lru_cache(maxsize=1)
def _by_id_statement() -> Select:
    """The record, read only past the viewer's index row for it: a record the viewer may not
    see costs what a missing one does (an index probe that finds nothing), so the answer's
    time does not tell one from the other. The LIMIT keeps the engine from merging the rule
    on top into this probe (and so evaluating it for hidden records)."""
    v = sat_visibility.c
    candidate = (select(*_RECORD_COLUMNS)
                 .select_from(sat_record.join(sat_visibility, and_(
                     v.party_id == bindparam(VIEWER_PARTY, type_=v.party_id.type), v.access.in_((OWN, MP141)),
                     v.logged_at == s.logged_at, v.record_id == s.id)))
                 .where(s.id == bindparam("record_id", type_=s.id.type)).limit(1).subquery("candidate"))
    return _page_of_candidates(candidate, Scope.ALL)


def get_visible(conn: Connection, viewer: Viewer, record_id: int) -> dict[str, Any] | None:
    """One record if the viewer may see it: fetched and checked in one statement, so a hidden
    record and a missing one are the same None."""
    if not 1 <= record_id <= MAX_RECORD_ID:  # no record has such an id; the driver would overflow
        return None
    with _bounded_as(conn, viewer, generic_plan=True):
        row = conn.execute(_by_id_statement(), {**viewer_params(viewer), "record_id": record_id, "lim": 1}).first()
    return _as_item(row) if row else None


def registry_of(conn: Connection, device_id: str, party_id: str) -> list[Responsibility]:
    r = responsibility.c
    rows = conn.execute(select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to)
                        .where(r.device_id == device_id, r.party_id == party_id))
    return [Responsibility(*row) for row in rows]


def explain(conn: Connection, viewer: Viewer, record_id: int) -> tuple[dict[str, Any], Decision] | None:
    """A visible record and why it is visible (rule, and for MP141 the granting interval)."""
    found = get_visible(conn, viewer, record_id)
    if found is None:
        return None
    return found, why_many(conn, viewer, [found])[found["id"]]


def why_many(conn: Connection, viewer: Viewer, items: list[dict[str, Any]]) -> dict[int, Decision]:
    """Why each of `items` (already read through the rule) is visible: `decide()` over the
    viewer's intervals on their devices, read in one statement however many items there are."""
    devices = sorted({i["device_id"] for i in items if i["access"] != Access.OWN and i["device_id"]})
    registry: dict[str, list[Responsibility]] = {}
    if devices:
        r = responsibility.c
        for row in conn.execute(select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to)
                                .where(r.device_id.in_(devices), r.party_id == viewer.party_id)):
            registry.setdefault(row.device_id, []).append(Responsibility(*row))
    decisions = {}
    for found in items:
        record = SatRecord(datetime.fromisoformat(found["logged_at"].replace("Z", "+00:00")), found["kind"],
                           found["request_id"], found["srv"], found["user_id"], found["device_id"],
                           found["response_code"], "")
        decisions[found["id"]] = decide(viewer, record, registry.get(record.device_id, []))
    return decisions


def exchange_of(conn: Connection, viewer: Viewer, request_id: str) -> list[dict[str, Any]]:
    """The visible messages sharing a Request ID (request, acknowledgement, responses), oldest first.
    A response without a RequestID (empty) shares it with nothing."""
    if not request_id:
        return []
    items, _ = search_page(conn, viewer, Search(request_id=request_id), 200)
    return items[::-1]


def iter_own_report(conn: Connection, viewer: Viewer, time_from: datetime, time_to: datetime
                    ) -> Iterator[dict[str, Any]]:
    """SPEC section 1 rule 7: a report holds the viewer's own traffic only (rule 1 alone)."""
    yield from iter_search(conn, viewer, Search(time_from=time_from, time_to=time_to, scope=Scope.OWN))


def stored_record_count(conn: Connection) -> int:
    """How many SAT records the store holds, for the operator (`servicetrail demo` checks the
    store is empty). Not a viewer's total: those go through the rule like every read."""
    from sqlalchemy import func

    return conn.execute(select(func.count()).select_from(sat_record)).scalar_one()


__all__ = ["Access", "explain", "exchange_of", "get_visible", "why_many", "iter_own_report", "iter_search",
           "registry_of", "search_page", "stored_record_count", "viewer_for"]
