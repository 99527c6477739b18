"""Every read of SAT records: one query builder that takes the viewer, so none can skip the rule."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.engine import Connection

from ..domain.model import Responsibility, SatRecord
from ..domain.records import item
from ..domain.search import MAX_PAGE, Cursor, Search
from ..domain.visibility import Access, Decision, Scope, Viewer, decide
from .limits import DEFAULT_SECONDS, EXPORT_SECONDS, time_limit
from .schema import dcc_user, device, responsibility, sat_payload, sat_record
from .visibility_sql import access_column, own_clause, visible_clause

s = sat_record.c
STREAM_PAGE = 2000
MAX_RECORD_ID = 2**63 - 1  # BIGINT / SQLite INTEGER
READER_ROLE = "servicetrail_reader"


def _bounded_as(conn: Connection, viewer: Viewer, seconds: float = DEFAULT_SECONDS):
    """A time limit, and on PostgreSQL the row-level-security role and viewer for this
    transaction: a pooled connection never carries a previous viewer past its transaction."""
    return time_limit(conn, seconds, settings={
        "role": READER_ROLE, "servicetrail.party_id": viewer.party_id,
        "servicetrail.user_ids": ",".join(sorted(viewer.user_ids))})


def viewer_for(conn: Connection, party_id: str) -> Viewer | None:
    """The Party with all its User IDs, or None when no such Party is registered."""
    from .schema import party

    if conn.execute(select(party.c.party_id).where(party.c.party_id == party_id)).first() is None:
        return None
    ids = conn.execute(select(dcc_user.c.user_id).where(dcc_user.c.party_id == party_id)).scalars()
    return Viewer(party_id, frozenset(ids))


def _visible_items(viewer: Viewer, scope: Scope = Scope.ALL) -> Select:
    """The only way to select SAT records: filtered by the rule, shaped as items."""
    access = access_column(viewer).label("access")
    return (
        select(s.id, s.logged_at, s.kind, s.request_id, s.srv, s.device_id, device.c.device_type,
               device.c.smets, s.user_id, dcc_user.c.role, dcc_user.c.party_id, s.response_code, access,
               sat_payload.c.payload)
        .select_from(
            sat_record.outerjoin(device, device.c.device_id == s.device_id)
            .outerjoin(dcc_user, dcc_user.c.user_id == s.user_id)
            # the payload join is itself guarded by rule 1: no path reads another User's payload
            .outerjoin(sat_payload, and_(sat_payload.c.record_id == s.id, sat_payload.c.logged_at == s.logged_at,
                                         sat_payload.c.device_id == s.device_id, own_clause(viewer)))
        )
        .where(visible_clause(viewer, scope))
    )


def _filtered(viewer: Viewer, search: Search) -> Select:
    query = _visible_items(viewer, search.scope)
    if search.device_id:
        query = query.where(s.device_id == search.device_id)
    if search.request_id:
        query = query.where(s.request_id == search.request_id)
    if search.srvs is not None:
        query = query.where(s.srv.in_(search.srvs))
    if search.kinds:
        query = query.where(s.kind.in_(search.kinds))
    if search.time_from:
        query = query.where(s.logged_at >= search.time_from)
    if search.time_to:
        query = query.where(s.logged_at < search.time_to)
    return query


def _after(query: Select, cursor: Cursor | None) -> Select:
    if cursor is not None:
        query = query.where(or_(s.logged_at < cursor.logged_at,
                                and_(s.logged_at == cursor.logged_at, s.id < cursor.record_id)))
    return query.order_by(s.logged_at.desc(), s.id.desc())


def _as_item(row: Any) -> dict[str, Any]:
    return item(*row)


def search_page(conn: Connection, viewer: Viewer, search: Search, limit: int,
                cursor: Cursor | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    limit = max(1, min(limit, MAX_PAGE))
    with _bounded_as(conn, viewer):
        rows = conn.execute(_after(_filtered(viewer, search), cursor).limit(limit + 1)).all()
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
    query = _after(_filtered(viewer, search), None)
    if limit is not None:
        query = query.limit(limit)
    with _bounded_as(conn, viewer, EXPORT_SECONDS):
        for row in conn.execution_options(yield_per=STREAM_PAGE).execute(query):
            yield _as_item(row)


def get_visible(conn: Connection, viewer: Viewer, record_id: int) -> dict[str, Any] | None:
    """One record if the viewer may see it: fetched and checked in one statement, so a hidden
    record and a missing one are the same None."""
    if not 1 <= record_id <= MAX_RECORD_ID:  # no record has such an id; the driver would overflow
        return None
    with _bounded_as(conn, viewer):
        row = conn.execute(_visible_items(viewer).where(s.id == record_id)).first()
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
    record = SatRecord(datetime.fromisoformat(found["logged_at"].replace("Z", "+00:00")), found["kind"],
                       found["request_id"], found["srv"], found["user_id"], found["device_id"],
                       found["response_code"], "")
    registry = registry_of(conn, record.device_id, viewer.party_id) if record.device_id else []
    return found, decide(viewer, record, registry)


def exchange_of(conn: Connection, viewer: Viewer, request_id: str) -> list[dict[str, Any]]:
    """The visible messages sharing a Request ID (request, acknowledgement, responses), oldest first."""
    items, _ = search_page(conn, viewer, Search(request_id=request_id), 200)
    return items[::-1]


def iter_own_report(conn: Connection, viewer: Viewer, time_from: datetime, time_to: datetime
                    ) -> Iterator[dict[str, Any]]:
    """SPEC section 1 rule 7: a report holds the viewer's own traffic only (rule 1 alone)."""
    yield from iter_search(conn, viewer, Search(time_from=time_from, time_to=time_to, scope=Scope.OWN))


__all__ = ["Access", "explain", "exchange_of", "get_visible", "iter_own_report", "iter_search",
           "registry_of", "search_page", "viewer_for"]
