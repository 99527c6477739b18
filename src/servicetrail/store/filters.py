"""A search's filters as SQL: one table keyed by the names of `domain.search.Search`'s fields,
read by every form of the search (the general one and the device one on the trail's own
columns, the device-less one on the visibility index's copy of the same title fields).

Statements are built once per shape (which filters a search has, and whether it has a
cursor) with named parameters, and executed with the values: building them per request cost
more than the query itself, and a stable structure lets SQLAlchemy reuse its compiled SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, or_

from ..domain.search import Cursor, Search
from ..domain.visibility import Viewer
from .schema import UtcDateTime, sat_record
from .visibility_sql import own_clause, viewer_params

s = sat_record.c

# Search field -> its condition on a table with the trail's title columns (sat_record, or
# sat_visibility), and whether a search has it. The Device is not here: only the trail itself
# knows the Device a record is about (see `device_match`).
FILTERS: dict[str, tuple[Callable[[Any], ColumnElement[bool]], Callable[[Search], bool]]] = {
    "request_id": (
        lambda c: c.request_id == bindparam("request_id", type_=s.request_id.type),
        lambda search: bool(search.request_id),
    ),
    # an empty tuple of SRVs (words that match no title) finds nothing, so it is a filter too
    "srvs": (
        lambda c: c.srv.in_(bindparam("srvs", expanding=True, type_=s.srv.type)),
        lambda search: search.srvs is not None,
    ),
    "kinds": (
        lambda c: c.kind.in_(bindparam("kinds", expanding=True, type_=s.kind.type)),
        lambda search: bool(search.kinds),
    ),
    "time_from": (
        lambda c: c.logged_at >= bindparam("time_from", type_=UtcDateTime),
        lambda search: search.time_from is not None,
    ),
    "time_to": (
        lambda c: c.logged_at < bindparam("time_to", type_=UtcDateTime),
        lambda search: search.time_to is not None,
    ),
}

# the names of the filters a search has; first, when it has a Device, "device_id" (with the
# requests whose body names it) or "on_device" (without them)
Shape = tuple[str, ...]


def shape_of(search: Search) -> Shape:
    device: Shape = ()
    if search.device_id:
        device = ("device_id",) if search.device_in_body else ("on_device",)
    return device + tuple(name for name, (_, has) in FILTERS.items() if has(search))


def params_of(viewer: Viewer, search: Search, cursor: Cursor | None) -> dict[str, Any]:
    params = viewer_params(viewer)
    params.update(
        device_id=search.device_id,
        request_id=search.request_id,
        srvs=list(search.srvs or ()),
        kinds=list(search.kinds or ()),
        time_from=search.time_from,
        time_to=search.time_to,
    )
    if cursor is not None:
        params.update(cursor_at=cursor.logged_at, cursor_id=cursor.record_id)
    return params


def device_param() -> BindParameter[Any]:
    return bindparam("device_id", type_=s.device_id.type)


def device_match() -> ColumnElement[bool]:
    """A record of the Device: its own `device_id`, or, for the viewer's own non-device
    requests only, the Device their body is about (SPEC 4.1 `subject_device_id`, which never
    widens rule 3)."""
    return or_(
        s.device_id == device_param(), and_(s.subject_device_id == device_param(), own_clause())
    )


def after_cursor(logged_at: Any, record_id: Any) -> ColumnElement[bool]:
    """Keyset paging, newest first: rows strictly before the cursor's (time, id)."""
    at = bindparam("cursor_at", type_=UtcDateTime)
    # the first conjunct is implied by the second; it gives the engine a range bound
    return and_(
        logged_at <= at,
        or_(
            logged_at < at,
            and_(logged_at == at, record_id < bindparam("cursor_id", type_=s.id.type)),
        ),
    )


def conditions(
    shape: Shape, with_cursor: bool, device: ColumnElement[bool] | None = None
) -> list[Any]:
    """The search's filters on the trail; `device` replaces the device filter (the
    interval-first branches each read one index, so they say which column they match)."""
    when = []
    if "device_id" in shape:
        when.append(device_match() if device is None else device)
    elif "on_device" in shape:
        when.append(s.device_id == device_param() if device is None else device)
    when += [FILTERS[name][0](s) for name in shape if name in FILTERS]
    if with_cursor:
        when.append(after_cursor(s.logged_at, s.id))
    return when
