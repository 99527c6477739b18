"""HTTP API v1 (SPEC section 5): thin routes over store.queries, authenticated by bearer tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Connection, Engine

from .. import settings
from ..domain.ids import COUNTER_PATTERN, EUI64_TEXT, InvalidValue
from ..domain.search import DEFAULT_PAGE, MAX_SRV_TEXT, SRV_TEXT_PATTERN
from ..domain.times import format_time
from ..domain.triggers import (
    DEFAULT_WINDOW_MINUTES,
    MAX_TRIGGERS,
    MAX_WINDOW_MINUTES,
    window_minutes,
)
from ..domain.visibility import Scope, Viewer
from ..security import token_digest
from ..domain.access_log import Reader
from ..store.accounts import TokenHolder, holder_for_token
from ..store.engine import reading
from ..store.logged_reads import logged_read
from .downloads import CredentialEnded, ReportDownload, report_download_headers
from .errors import NOT_FOUND, ParameterError
from .fairness import limits_of, share_of
from .params import (
    KindFilter,
    RecordId,
    asked,
    PageCursor,
    PageSize,
    RequiredFrom,
    RequiredTo,
    ScopeFilter,
    TimeFrom,
    TimeTo,
    build_search,
    cursor_of,
    refuse_wrong_parameters,
    record_id_or_404,
)
from .param_schemas import whole_number_schema
from .presenters import older_triggers
from .schemas import Error, Item, Page, Triggers, Why
from .state import credential_not_found, engine_of, reader_of, seen_credentials

# Documented (not enforced) here: build_search is the one validator, and names the parameter.
# Empty is not given (SPEC section 5's `?device_id=&request_id=&srv=...`), as the API takes it.
EUI64_PATTERN = f"^(?:{EUI64_TEXT})?$"
REQUEST_ID_PATTERN = f"^(?:{EUI64_TEXT}:{EUI64_TEXT}:({COUNTER_PATTERN}))?$"

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "missing or unknown bearer token"},
    403: {"model": Error, "description": "an auditor's token: it reads the access log only"},
    422: {"model": Error, "description": "a parameter is invalid; `parameter` names it"},
    429: {
        "model": Error,
        "description": "your Party has too much running on this server; see Retry-After",
    },
    503: {
        "model": Error,
        "description": "the store cannot be read (down, or its reader role missing), or "
        "this server is stopping (then with Retry-After)",
    },
}
router = APIRouter(prefix="/api/v1", responses=ERRORS)


class ViewerCache:
    """token digest -> (TokenHolder, expiry): saves the auth round trip on most requests, which
    at a few milliseconds a search was a third of the database work.

    A token's Party and User IDs are remembered SERVICETRAIL_TOKEN_CACHE_SECONDS: deleting a
    token (or a registry change to the Party's User IDs) takes effect within that; an
    unknown token is never remembered, so a new one works at once. 0, the default, turns the
    cache off: a revoked token read the trail for 5 s, and the API answered otherwise than
    the CLI just after `load users` (audit 20b)."""

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = settings.current().token_cache_seconds if seconds is None else seconds
        self._entries: dict[str, tuple[TokenHolder, float]] = {}
        self._lock = threading.Lock()  # requests run on a thread pool

    def get(self, digest: str) -> TokenHolder | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            with self._lock:
                self._entries.pop(digest, None)
            return None
        return entry[0]

    def put(self, digest: str, holder: TokenHolder) -> None:
        if self.seconds <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if (
                len(self._entries) >= self.MAX_ENTRIES
            ):  # bounded: drop what expired, else start over
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[digest] = (holder, now + self.seconds)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    """The request's bearer token; "" when it has none. Two Authorization headers are a 401:
    the first was read, and a proxy that reads the last would have let another through
    (audit 42e)."""
    given = request.headers.getlist("authorization")
    if len(given) > 1:
        raise _unauthorized("one Authorization header, not several")
    scheme, _, token = (given[0] if given else "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def api_account(request: Request) -> TokenHolder:
    """The account behind the bearer token (a Party's or an auditor's); 401 for anything else.
    Then a query parameter the route does not take is a 422."""
    holder = _token_holder(request)
    refuse_wrong_parameters(request)
    return holder


def _token_holder(request: Request) -> TokenHolder:
    token = bearer_token(request)
    if not token:
        raise _unauthorized("a bearer token is required (servicetrail tokens create USERNAME)")
    cache: ViewerCache | None = getattr(request.app.state, "viewers", None)
    digest = token_digest(token)
    holder = cache.get(digest) if cache is not None else None
    if holder is None:
        with reader_of(request) as conn:
            holder = holder_for_token(conn, token)  # one query: token -> account, Party, User IDs
        if holder is None:
            credential_not_found(request, token)
            raise _unauthorized("invalid or revoked token")
        if cache is not None:
            cache.put(digest, holder)
        party_id = holder.viewer.party_id if holder.viewer is not None else None
        seen_credentials(request).remember(token, share_of(party_id, holder.username))
    request.state.actor = holder.username
    return holder


def token_viewer(conn: Connection, token: str, party_id: str) -> Viewer | None:
    """The token's Party as it stands now (its User IDs may have changed); None once the token
    is revoked, its account disabled, or it acts for another Party. Asked again by the answers
    that outlive their request: an event stream, a report download."""
    holder = holder_for_token(conn, token)
    held = holder.viewer if holder is not None else None
    return held if held is not None and held.party_id == party_id else None


def _token_still_held(engine: Engine, token: str, party_id: str) -> Callable[[], bool]:
    def still_held() -> bool:
        with reading(engine) as conn:
            return token_viewer(conn, token, party_id) is not None

    return still_held


def _report_refused(failure: Exception) -> Response | None:
    """A token that ended while its report was made is answered as any request of it is."""
    if isinstance(failure, CredentialEnded):
        raise _unauthorized("invalid or revoked token")
    return None


AUDITOR_REFUSED = "an auditor's account reads the access log only, never SAT records"


def api_viewer(request: Request) -> Viewer:
    """The Party behind the bearer token; 401 for anything else, 403 for an auditor (SPEC
    section 8: an auditor sees no SAT records at all), whatever it asks: an unknown parameter
    was a 422 first (audit 42d)."""
    holder = _token_holder(request)
    if holder.viewer is None:
        raise HTTPException(403, AUDITOR_REFUSED)
    refuse_wrong_parameters(request)
    return holder.viewer


ViewerDep = Annotated[Viewer, Depends(api_viewer)]
AccountDep = Annotated[TokenHolder, Depends(api_account)]


def api_reader(request: Request, viewer: Viewer) -> Reader:
    """Who reads, for the access log: the token's account, through the API."""
    return Reader(viewer.party_id, request.state.actor, "api")


@router.get("/records", response_model=None, responses={200: {"model": Page}})
def list_records(
    request: Request,
    viewer: ViewerDep,
    device_id: Annotated[
        str | None,
        Query(
            description="Device ID, EUI-64 (any case)", json_schema_extra={"pattern": EUI64_PATTERN}
        ),
    ] = None,
    request_id: Annotated[
        str | None,
        Query(
            description="originator:target:counter",
            json_schema_extra={"pattern": REQUEST_ID_PATTERN},
        ),
    ] = None,
    srv: Annotated[
        str | None,
        Query(
            description="SRV number such as 4.1.1, or words of its title",
            json_schema_extra={"pattern": SRV_TEXT_PATTERN, "maxLength": MAX_SRV_TEXT},
        ),
    ] = None,
    kind: KindFilter = None,
    time_from: TimeFrom = None,
    time_to: TimeTo = None,
    scope: ScopeFilter = Scope.ALL,
    limit: PageSize = DEFAULT_PAGE,
    cursor: PageCursor = None,
) -> Response:
    """What you may see, newest first: your own traffic, and titles under MP141."""
    search = build_search(device_id, request_id, srv, kind, time_from, time_to, scope)
    after = cursor_of(cursor)
    with (
        limits_of(request).search(viewer.party_id, search),
        reader_of(request) as conn,
        logged_read(conn, viewer, api_reader(request, viewer), "search", asked(request)) as read,
    ):
        # the entry's COMMIT also ends the read: psycopg forgets its prepared statements on
        # a ROLLBACK, which the pool would otherwise send, and the device search relies on
        # them (a generic plan, see store.read_transaction.read_as)
        items, next_cursor = read.search_page(search, limit, after)
    # orjson: a 100-item page encodes in a tenth of the time json.dumps takes
    return Response(
        orjson.dumps(
            {"items": items, "next_cursor": next_cursor.encode() if next_cursor else None}
        ),
        media_type="application/json",
    )


@router.get(
    "/records/{record_id}",
    response_model=None,
    responses={200: {"model": Item}, 404: {"model": Error, "description": "no such record"}},
)
def one_record(request: Request, viewer: ViewerDep, record_id: RecordId) -> JSONResponse:
    """One record you may see. A record you may not see is answered exactly like a missing one."""
    wanted = record_id_or_404(record_id)
    with (
        limits_of(request).search(viewer.party_id),
        reader_of(request) as conn,
        logged_read(
            conn, viewer, api_reader(request, viewer), "record", asked(request, record_id=wanted)
        ) as read,
    ):
        found = read.get_visible(wanted)
    if found is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return JSONResponse(found)


@router.get(
    "/records/{record_id}/why",
    response_model=None,
    responses={200: {"model": Why}, 404: {"model": Error, "description": "no such record"}},
)
def why(request: Request, viewer: ViewerDep, record_id: RecordId) -> JSONResponse:
    """Why you may see a record: the rule, and for MP141 the Responsibility interval."""
    wanted = record_id_or_404(record_id)
    with (
        limits_of(request).search(viewer.party_id),
        reader_of(request) as conn,
        logged_read(
            conn, viewer, api_reader(request, viewer), "why", asked(request, record_id=wanted)
        ) as read,
    ):
        found = read.explain(wanted)
    if found is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    record, decision = found
    interval = decision.interval
    return JSONResponse(
        {
            "id": record["id"],
            "access": decision.access.value if decision.access else "none",
            "rule": decision.rule,
            "reason": decision.reason,
            "badge": decision.badge(),
            "interval": None
            if interval is None
            else {
                "device_id": interval.device_id,
                "party_id": interval.party_id,
                "relation": interval.relation,
                "valid_from": format_time(interval.valid_from),
                "valid_to": format_time(interval.valid_to) if interval.valid_to else None,
            },
        }
    )


TRIGGERS_DOC = f"""What may have caused a record: the requests you may see on its Device logged in
[t - window, t] (t: the record's `logged_at`, both ends included), newest first. A request with
the record's Request ID comes first (link `request_id`), whatever its time; the record itself is
never listed; a record without a Device lists only that request, if any.

At most {MAX_TRIGGERS} triggers: those sharing the Request ID first, then the newest on the Device;
fewer once the payloads of your own requests on the list pass 16 MiB (about a page's worth past
it at the most). A list cut so or by the cap has a `Link` header (rel="next") to the search
that goes on with the older requests of the window (it may repeat one listed first for its
Request ID; as every search by Device, it also lists your own requests that are on no Device
but name it in their body, which are not triggers); if the cap cut the requests sharing the
Request ID, rel="next" goes on with those, and rel="related" is the window's search. Another
User's request shows its title only, as everywhere. `seconds_before` is the whole seconds from
the request to the record, rounded down; it is negative only for a request sharing the Request
ID that was logged after the record (-3: three seconds after). A record you may not see is
404, like a missing one."""


@router.get(
    "/records/{record_id}/triggers",
    response_model=None,
    description=TRIGGERS_DOC,
    responses={200: {"model": Triggers}, 404: {"model": Error, "description": "no such record"}},
)
def triggers(
    request: Request,
    viewer: ViewerDep,
    record_id: RecordId,
    window: Annotated[
        str | None,
        Query(
            description=f"minutes to look back from the record, "
            f"1..{MAX_WINDOW_MINUTES} (default {DEFAULT_WINDOW_MINUTES})",
            json_schema_extra=whole_number_schema(1, MAX_WINDOW_MINUTES, empty_not_given=True),
        ),
    ] = None,
) -> Response:
    """The possible triggers of a record (SPEC section 6)."""
    try:
        minutes = window_minutes(window)
    except InvalidValue as e:
        raise ParameterError("window", str(e)) from None
    wanted = record_id_or_404(record_id)
    filters = asked(request, "window", record_id=wanted)
    with (
        limits_of(request).search(viewer.party_id),
        reader_of(request) as conn,
        logged_read(conn, viewer, api_reader(request, viewer), "triggers", filters) as read,
    ):
        found = read.triggers_of(wanted, minutes)
    if found is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    listed = found[1]
    headers = {}
    if listed.rest:
        # one rel="next", where the list goes on (clients keep one link a relation); the
        # window's requests after a cut among the Request ID's own come as rel="related"
        headers["Link"] = ", ".join(
            f'</api/v1/records?{urlencode(older_triggers(*rest))}>; '
            f'rel="{"next" if n == 0 else "related"}"'
            for n, rest in enumerate(listed.rest)
        )
    body = orjson.dumps({"items": listed.items})
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/reports/own.csv",
    response_class=Response,
    response_model=None,
    responses={
        200: {"content": {"text/csv": {}}, "description": "your own records, CSV"},
        422: {
            "model": Error,
            "description": "a parameter is invalid, or the report ran past its time limit",
        },
    },
)
def own_report(
    request: Request,
    viewer: ViewerDep,
    time_from: RequiredFrom,
    time_to: RequiredTo,
) -> ReportDownload:
    """Your own traffic only, payload included (reports keep the own-traffic rule), streamed.
    In the CSV a cell that begins with =, +, -, @, tab or carriage return gets a leading '
    so that no spreadsheet runs it as a formula."""
    search = build_search(time_from=time_from, time_to=time_to)
    if search.time_from is None or search.time_to is None:
        raise ParameterError("from" if search.time_from is None else "to", "is required")
    return ReportDownload(
        engine_of(request),
        limits_of(request),
        viewer,
        api_reader(request, viewer),
        asked(request),
        search.time_from,
        search.time_to,
        headers=report_download_headers(viewer.party_id, search.time_from, search.time_to),
        on_error=_report_refused,
        still_held=_token_still_held(engine_of(request), bearer_token(request), viewer.party_id),
    )
