"""`GET /api/v1/access-log` (SPEC section 8): who looked. A Party's accounts read their own
Party's entries; an auditor's account reads every Party's (and may filter by `party_id`)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..domain.access_log import entry_json
from ..domain.search import DEFAULT_PAGE
from ..store.access_log import EntryFilter, NoSuchParty, readable_page
from .api import ERRORS, AccountDep
from .errors import ParameterError
from .param_schemas import NOT_BLANK_SCHEMA
from .params import (
    PageCursor,
    PageSize,
    TimeFrom,
    TimeTo,
    build_search,
    cursor_of,
)
from .fairness import limits_of, share_of
from .schemas import AccessPage
from .state import reader_of

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["access log"])
MAX_PARTY_ID = 32


@router.get("/access-log", response_model=None, responses={200: {"model": AccessPage}})
def access_log(
    request: Request,
    holder: AccountDep,
    time_from: TimeFrom = None,
    time_to: TimeTo = None,
    limit: PageSize = DEFAULT_PAGE,
    cursor: PageCursor = None,
    party_id: Annotated[
        str | None,
        Query(
            description="auditors only: one Party's entries (a Party's account always reads "
            "its own Party's, whatever this says)",
            max_length=MAX_PARTY_ID,
            json_schema_extra=NOT_BLANK_SCHEMA,
        ),
    ] = None,
) -> Response:
    """Who read SAT records, newest first: `{"items": [entry, ...], "next_cursor"}`. An
    entry: `id, at, party_id, actor, interface, action, filters, records_returned,
    mp141_records_returned, device_ids`."""
    period = build_search(time_from=time_from, time_to=time_to)
    after = cursor_of(cursor)
    own_party = holder.viewer.party_id if holder.viewer is not None else None
    # a read slot, as every read takes: a Party's 200 connections of these held every thread
    with (
        limits_of(request).search(share_of(own_party, holder.username)),
        reader_of(request) as conn,
    ):
        try:
            asked = EntryFilter(party_id, period.time_from, period.time_to)
            entries, next_cursor = readable_page(conn, own_party, asked, limit, after)
        except NoSuchParty as e:
            raise ParameterError("party_id", e.words()) from None
    body = {
        "items": [entry_json(e) for e in entries],
        "next_cursor": next_cursor.encode() if next_cursor else None,
    }
    return Response(orjson.dumps(body), media_type="application/json")
