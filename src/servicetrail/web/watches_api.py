"""HTTP API of watches (SPEC section 6): create, list, read and delete a Party's watches, and
read their events as a page or as Server-Sent Events (sent by web.event_streams). Thin:
store.watches and store.watch_events do the work."""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ..domain.ids import MAX_ID, InvalidValue, RepeatedKeys, keys_once, positive_id, whole_number
from ..domain.watches import InvalidWatch, watch_spec
from ..store.watches import (
    WatchLimit,
    create_watch,
    get_watch,
    list_watches,
    delete_watch_at_once,
)
from ..webhooks.outbound import UnsafeUrl, check_url
from ..webhooks.signing import new_secret
from ..store.logged_reads import logged_read
from .api import ERRORS, ViewerDep, api_reader, bearer_token
from .errors import BodyTooLarge, ParameterError
from .event_streams import NOT_A_WATCH, SSE_TYPE, StreamReads, stream_answer
from .fairness import limits_of
from .param_schemas import whole_number_schema
from .params import PageSize, asked
from .schemas import (
    Error,
    EventPage,
    NewWatch,
    WatchList,
    WatchOut,
    WebhookState,
    inline_schema,
)
from .state import engine_of, reader_of

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["watches"])
# a watch is a few hundred bytes; its lists are bounded (domain.watches), and so is its body
MAX_BODY_BYTES = 256 * 1024


# documented as the integer POST answered (a generated client takes an int, not any text);
# read as text, so that an id no watch can have is the 404 of a missing one, not a 422
WatchId = Annotated[
    str,
    Path(description="the watch's id", json_schema_extra=whole_number_schema(1, MAX_ID)),
]


def watch_id_of(text: str) -> int | None:
    """A watch id from a path: ASCII digits, in range; anything else is a watch that is not
    there."""
    return positive_id(text)


def event_id_of(text: str | None, name: str = "after") -> int:
    if text in (None, ""):
        return 0
    try:
        value = whole_number(text)
    except InvalidValue as e:  # its reason: a 20-digit one was "not a whole number" (43a)
        raise ParameterError(name, f"must be an event_id, 0 or more: {e}") from None
    if value > MAX_ID:
        raise ParameterError(name, f"must be at most {MAX_ID}")
    return value


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:  # answered now, not after it came
        raise BodyTooLarge(MAX_BODY_BYTES, "a watch's limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge(MAX_BODY_BYTES, "a watch's limit")
    try:
        return _keys_once(orjson.loads(body.removeprefix(b"\xef\xbb\xbf")), body)
    except orjson.JSONDecodeError as e:
        # why, as the loaders say it: invalid UTF-8 was "must be a JSON object" (audit 35c)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ParameterError("body", f"is not UTF-8 text (byte {bad.start + 1})") from None
        raise ParameterError("body", f"must be a JSON object; it is not JSON ({e})") from None


def _keys_once(found: Any, body: bytearray) -> Any:
    """The body orjson read (after a BOM, which RFC 8259 lets be ignored), a field given twice
    refused: orjson keeps the last value, so `{"name": "a", "name": "b"}` or a webhook URL
    named twice made a watch of the one the Party may not have meant, where a query parameter
    given twice is a 422 and so is a SAT record's field (audit 51d). Checked on every body,
    not only where `":` says a key may repeat as the loaders do: a body is at most 256 KiB."""
    if type(found) is dict:
        try:
            json.loads(body.decode("utf-8-sig"), object_pairs_hook=keys_once)
        except RepeatedKeys as e:
            said = json.dumps(e.keys[0][:40])
            raise ParameterError("body", f"the field {said} is given twice") from None
        except (RecursionError, ValueError):  # no watch is that deep: watch_spec refuses it
            pass
    return found


@router.post(
    "/watches",
    status_code=201,
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(NewWatch)}},
        }
    },
    responses={
        201: {"model": WatchOut, "description": "the watch; `webhook.secret` is shown this once"},
        413: {
            "model": Error,
            "description": f"the body is larger than {MAX_BODY_BYTES // 1024} KiB",
        },
    },
)
async def add_watch(request: Request, viewer: ViewerDep) -> JSONResponse:
    """Ask to be told of every new record you may see that matches. With a webhook, the
    answer holds its signing secret (`whsec_...`), shown this once."""
    try:
        spec = watch_spec(await _json_body(request))
    except InvalidWatch as e:
        raise ParameterError(e.field, e.message) from None

    def store() -> dict[str, Any]:
        if spec.webhook_url is not None:
            check_url(spec.webhook_url)  # resolves the name: on a thread, not the event loop
        with engine_of(request).begin() as conn:
            return create_watch(
                conn, viewer.party_id, spec, new_secret() if spec.webhook_url else None
            )

    # one of the Party's requests in flight: a name whose DNS never answers holds a thread
    # of the server's pool for as long, and a Party may hold only its share of them
    with limits_of(request).holding(viewer.party_id, "request"):
        try:
            made = await run_in_threadpool(store)
        except UnsafeUrl as e:
            raise ParameterError("webhook.url", str(e)) from None
        except WatchLimit as e:
            raise ParameterError("watches", str(e)) from None
    return JSONResponse(made, status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/watches", response_model=None, responses={200: {"model": WatchList}})
def get_watches(request: Request, viewer: ViewerDep) -> JSONResponse:
    """Your Party's watches (never a secret)."""
    with limits_of(request).search(viewer.party_id), reader_of(request) as conn:
        return JSONResponse({"items": list_watches(conn, viewer.party_id)})


@router.get(
    "/watches/{watch_id}",
    response_model=None,
    responses={
        200: {"model": WatchOut, "description": "the watch as the list shows it (no secret)"},
        404: {"model": Error, "description": "no such watch"},
    },
)
def get_one_watch(request: Request, viewer: ViewerDep, watch_id: WatchId) -> JSONResponse:
    """One of your Party's watches, as one item of `GET /api/v1/watches` (never a secret).
    Another Party's watch is no such watch, as one deleted or never made."""
    found = watch_id_of(watch_id)
    with limits_of(request).search(viewer.party_id), reader_of(request) as conn:
        shown = None if found is None else get_watch(conn, viewer.party_id, found)
    if shown is None:
        return JSONResponse(NOT_A_WATCH, status_code=404)
    return JSONResponse(shown)


NO_WEBHOOK = {"error": "not_found", "message": "this watch has no webhook"}


@router.get(
    "/watches/{watch_id}/webhook",
    response_model=None,
    responses={
        200: {"model": WebhookState},
        404: {"model": Error, "description": "no such watch, or it has no webhook"},
    },
)
def watch_webhook(request: Request, viewer: ViewerDep, watch_id: WatchId) -> JSONResponse:
    """Whether your watch's webhook still delivers (a 410 turns it off) and, while deliveries
    fail, how many wait and the last error. Apart from the watch, whose fields are the same
    in the list as when it was made (SPEC section 6)."""
    found = watch_id_of(watch_id)
    with limits_of(request).search(viewer.party_id), reader_of(request) as conn:
        shown = (
            []
            if found is None
            else list_watches(conn, viewer.party_id, with_state=True, watch_id=found)
        )
    if not shown:
        return JSONResponse(NOT_A_WATCH, status_code=404)
    if shown[0]["webhook"] is None:
        return JSONResponse(NO_WEBHOOK, status_code=404)
    return JSONResponse(shown[0]["webhook"])


@router.delete(
    "/watches/{watch_id}",
    status_code=204,
    response_model=None,
    responses={404: {"model": Error, "description": "no such watch"}},
)
def remove_watch(request: Request, viewer: ViewerDep, watch_id: WatchId) -> Response:
    """Delete one of your Party's watches, its events and its pending deliveries."""
    found = watch_id_of(watch_id)
    deleted = found is not None and delete_watch_at_once(engine_of(request), viewer.party_id, found)
    return Response(status_code=204) if deleted else JSONResponse(NOT_A_WATCH, status_code=404)


@router.get(
    "/watches/{watch_id}/events",
    response_model=None,
    responses={200: {"model": EventPage}, 404: {"model": Error, "description": "no such watch"}},
)
def watch_events(
    request: Request,
    viewer: ViewerDep,
    watch_id: WatchId,
    after: Annotated[
        str | None,
        Query(
            description="the last event_id you have (default 0)",
            json_schema_extra=whole_number_schema(0, MAX_ID, empty_not_given=True),
        ),
    ] = None,
    limit: PageSize = 100,
) -> Response:
    """The watch's events after `after`, in event_id order. Titles only, even for your own
    records; a record you may no longer see (a registry correction) is left out."""
    start, size, found = event_id_of(after), limit, watch_id_of(watch_id)
    if found is None:
        return JSONResponse(NOT_A_WATCH, status_code=404)
    filters = asked(request, "after", "limit", watch_id=found)
    with (
        limits_of(request).search(viewer.party_id),
        reader_of(request) as conn,
        logged_read(conn, viewer, api_reader(request, viewer), "watch_events", filters) as read,
    ):
        page = read.events_after(found, start, size)
    if page is None:
        return JSONResponse(NOT_A_WATCH, status_code=404)
    return Response(
        orjson.dumps({"events": page[0], "next_after": page[1]}), media_type="application/json"
    )


@router.get(
    "/watches/{watch_id}/stream",
    response_class=Response,
    response_model=None,
    responses={
        200: {
            "content": {SSE_TYPE: {}},
            "description": "the events as Server-Sent Events",
        },
        404: {"model": Error, "description": "no such watch"},
    },
)
def watch_stream(
    request: Request,
    viewer: ViewerDep,
    watch_id: WatchId,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="resume after this event_id",
            # it was documented as any string, but anything else is a 422 (63k's fuzz)
            json_schema_extra=whole_number_schema(0, MAX_ID, empty_not_given=True),
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            description="resume after this event_id (when no Last-Event-ID)",
            json_schema_extra=whole_number_schema(0, MAX_ID, empty_not_given=True),
        ),
    ] = None,
) -> Response:
    """The watch's events as Server-Sent Events (`id:` event_id, `event: record.matched`,
    `data:` the event), from after Last-Event-ID on; the same events as `/events`. A Party
    may hold a few streams open on a server (429 past that)."""
    if len(request.headers.getlist("last-event-id")) > 1:  # the first silently won (51d)
        raise ParameterError("Last-Event-ID", "is given twice: send it once")
    start = event_id_of(last_event_id, "Last-Event-ID") if last_event_id else event_id_of(after)
    found = watch_id_of(watch_id)
    if found is None:
        return JSONResponse(NOT_A_WATCH, status_code=404)
    # the resume point is part of what was asked, though it came as a header
    filters = asked(request, "after", watch_id=found)
    if last_event_id:
        filters["last_event_id"] = last_event_id
    reads = StreamReads(
        engine_of(request),
        viewer,
        api_reader(request, viewer),
        found,
        filters,
        bearer_token(request),
    )
    return stream_answer(request, reads, start)
