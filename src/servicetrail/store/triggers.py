"""The possible triggers of a record (SPEC section 6), read through the rule.

No statement of its own: the record, the requests sharing its Request ID and the requests
on its Device in the window are three reads of `store.queries` (the record look-up and
`search_page`, whose device search is the interval-first form), each bounded by the page
size and the statement time limit. `domain.triggers` orders and links them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from ..domain.search import Search
from ..domain.times import parse_time
from ..domain.triggers import MAX_TRIGGERS, possible_triggers, window_bounds
from ..domain.visibility import Viewer
from .queries import get_visible, search_page

_REQUESTS = ("request",)


def triggers_of(
    conn: Connection, viewer: Viewer, record_id: int, minutes: int, limit: int = MAX_TRIGGERS
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The record and its possible triggers, or None when the viewer may not see the record
    (exactly as when it does not exist)."""
    record = get_visible(conn, viewer, record_id)
    if record is None:
        return None
    return record, triggers_for(conn, viewer, record, minutes, limit)


def triggers_for(
    conn: Connection,
    viewer: Viewer,
    record: dict[str, Any],
    minutes: int,
    limit: int = MAX_TRIGGERS,
) -> list[dict[str, Any]]:
    """The possible triggers of `record`, an item the viewer was just shown (read through the
    rule; its id, time, Request ID and Device are all that is used)."""
    linked: list[dict[str, Any]] = []
    if record["request_id"]:  # an empty Request ID (a response without one) links to nothing
        # one more than the cap: the record itself may be among them (a request)
        linked, _ = search_page(
            conn, viewer, Search(request_id=record["request_id"], kinds=_REQUESTS), limit + 1
        )
    on_device: list[dict[str, Any]] = []
    if record["device_id"]:
        start, end = window_bounds(parse_time(record["logged_at"]), minutes)
        search = Search(
            device_id=record["device_id"], kinds=_REQUESTS, time_from=start, time_to=end
        )
        # room for the record itself and for the linked requests, which may also be in the window
        on_device, _ = search_page(conn, viewer, search, limit + 1 + len(linked))
    return possible_triggers(record, linked, on_device, limit)
