"""HTTP API of watches (SPEC section 6): create, list, read and delete a Party's watches, and
read their events as a page or as Server-Sent Events. Thin: store.watches and
store.watch_events do the work."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from .. import settings
from ..domain.access_log import Reader, Tally
from ..domain.ids import MAX_ID, InvalidValue, RepeatedKeys, keys_once, positive_id, whole_number
from ..domain.visibility import Viewer
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
from ..store.engine import reading
from ..store.limits import store_busy
from ..store.logged_reads import LoggedRead, logged_read
from .api import ERRORS, ViewerDep, api_reader, bearer_token, token_viewer
from .credential_watch import until_the_credential_ends
from .errors import ParameterError
from .fairness import Slots, limits_of
from .head_requests import asked_head
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
from .resets import offers_reset, reset
from .stopping import ServerStopping

log = logging.getLogger("servicetrail.web")

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["watches"])
NOT_A_WATCH = {"error": "not_found", "message": "no such watch"}
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
        raise ParameterError("body", f"larger than {MAX_BODY_BYTES // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ParameterError("body", f"larger than {MAX_BODY_BYTES // 1024} KiB")
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
        201: {"model": WatchOut, "description": "the watch; `webhook.secret` is shown this once"}
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


# How long an open stream may stay silent before a comment line tells proxies (and the client)
# the connection is alive (how often it looks for new events: SERVICETRAIL_STREAM_POLL_SECONDS)

STREAM_KEEPALIVE_SECONDS = 15.0
SSE_TYPE = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
STREAM_PAGE = 200
# how long a stream's closing entry is tried for while the store is busy (each try waits a
# lock's time, 5-10 s): off the event loop, its stream slot held meanwhile
CLOSING_ENTRY_PATIENCE = 60.0


def sse_event(event: dict[str, Any]) -> bytes:
    """One Server-Sent Event: `id:` the event_id (what Last-Event-ID resumes from), its type,
    and the event as one line of JSON (orjson escapes every line break inside strings)."""
    return (
        f"id: {event['event_id']}\nevent: record.matched\ndata: ".encode()
        + orjson.dumps(event)
        + b"\n\n"
    )


@dataclass
class _StreamReads:
    """What one stream reads from the store, each in a read of its own: pages of events, and
    its two access-log entries, counted together (SPEC section 8: the first before the first
    byte, the second, with the counts of every event it sent, when it ends)."""

    engine: Engine
    viewer: Viewer
    reader: Reader
    watch_id: int
    filters: dict[str, Any]
    # the token is asked about again as often as a request's would be (api.ViewerCache): a
    # stream outlives any one request, and must end once its token is revoked or its account
    # disabled, not keep sending
    token: str
    sent: Tally = field(default_factory=Tally)
    cut_off: str = ""  # why the stream ended of itself, when it was cut off

    def opening_entry(self) -> None:
        with reading(self.engine) as conn:
            LoggedRead(conn, self.viewer, self.reader, "stream", self.filters).write_entry()

    def page(self, position: int) -> tuple[list[dict[str, Any]], int | None] | None:
        """The events after `position`; None when the watch was deleted. Read as the Party
        stood at the last look at its token (`still_held`): with the User IDs of its start, a
        User ID the registry gave the Party since was not its own to the stream, and the
        events that rule 1 alone shows were never sent, though `/events` showed them (audit
        59f)."""
        with reading(self.engine) as conn:
            # counted into `sent`, whose entry is written when the stream ends
            read = LoggedRead(conn, self.viewer, self.reader, "stream", self.filters, self.sent)
            return read.events_after(self.watch_id, position, STREAM_PAGE)

    def still_held(self) -> bool:
        """Whether the stream's token still holds; if so, the stream reads on as its Party
        stands now."""
        with reading(self.engine) as conn:
            held = token_viewer(conn, self.token, self.viewer.party_id)
        if held is None:
            return False
        self.viewer = held
        return True

    def closing_entry(self, stopping: ServerStopping) -> None:
        """The counts of what was sent, tried again while the store is busy: one try, a
        store's lock wait, lost the entry of events that had gone out (audit 24b). A server
        that is stopping gives it one try."""
        deadline = time.monotonic() + CLOSING_ENTRY_PATIENCE
        while True:
            try:
                with reading(self.engine) as conn:
                    LoggedRead(
                        conn, self.viewer, self.reader, "stream", self.filters, self.sent
                    ).write_entry()
                return
            except Exception as e:
                busy = store_busy(e)
                if busy is None:
                    raise
                if stopping.asked or time.monotonic() >= deadline:
                    log.warning(
                        "watch %s stream: its closing entry is lost: %s", self.watch_id, busy.reason
                    )
                    return
                log.info("watch %s stream: its closing entry waits: %s", self.watch_id, busy.reason)
                time.sleep(1.0)


async def _event_stream(
    request: Request, reads: _StreamReads, start: int, slots: Slots
) -> AsyncIterator[bytes]:
    """The stream's body: pages of events as they come, a keep-alive comment when quiet; its
    closing access-log entry when it ends, however it ends."""
    stopping: ServerStopping = request.app.state.stopping
    try:
        position, quiet_since = start, time.monotonic()
        yield b"retry: 2000\n\n"
        # a server asked to stop ends the stream, rather than have it cancelled (web.stopping)
        while not (stopping.asked or reads.cut_off or await request.is_disconnected()):
            got = await run_in_threadpool(reads.page, position)
            if got is None:
                return
            events, next_after = got
            if next_after is not None:  # a page with events on it
                yield b"".join(sse_event(e) for e in events)
                position, quiet_since = next_after, time.monotonic()
                continue
            if time.monotonic() - quiet_since >= STREAM_KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await stopping.sleep(settings.current().stream_poll_seconds)
    except Exception as e:
        # the store failed mid-stream: the stream ends, and the client comes back after the
        # `retry` it was given, from its Last-Event-ID
        busy = store_busy(e)
        if busy is None:
            raise
        log.warning("watch %s stream ended: %s", reads.watch_id, busy.reason)
    finally:
        try:
            # off the loop, which a store slow to write the entry would hold up for every
            # client; shielded, since a stream whose client left is being cancelled
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(reads.closing_entry, stopping)
        finally:
            slots.release()


class EventStream(StreamingResponse):
    """A stream whose client leaves a piece untaken for SERVICETRAIL_SEND_TIMEOUT is cut off,
    as a download is, and one still sending a second before uvicorn would cancel it at a stop
    is cut off too; either way its body is closed, so that its closing access-log entry is
    written. Blocked in `send`, a stalled client's stream never came back to look whether
    the server was stopping: uvicorn cancelled it with a traceback, its body was never
    closed, and the counts of the 5,353 events it had sent were logged nowhere (audit 20e).

    Cut off so, or once its token no longer holds, its connection is reset (web.resets), as a
    download's is: what the server's buffers still held of it is not sent, and the log says
    why in a line of its own, not as uvicorn's ERROR of a response left incomplete (62f).
    Its token is looked at beside its sends (web.credential_watch), not between its pages: a
    page's send to a slow client waits while the buffers drain, and the stream learnt of a
    revocation 4-5 s late (62h). Under a server that cannot reset, it ends whole at its next
    page, as it did."""

    def __init__(self, reads: _StreamReads, content: AsyncIterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self.reads = reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        patience = settings.current().send_timeout
        why = ""

        async def bounded(message: Message) -> None:
            with anyio.fail_after(patience):
                await send(message)

        try:
            async with anyio.create_task_group() as group:

                async def give_way_to_a_stop() -> None:
                    nonlocal why
                    await scope["app"].state.stopping.until_cut_off()
                    why = "the server is stopping"
                    group.cancel_scope.cancel()

                async def end_with_its_token() -> None:
                    # beside the sends: one to a slow client waits while the buffers drain
                    await until_the_credential_ends(self.reads.still_held)
                    self.reads.cut_off = (
                        "its token no longer holds (revoked, or its account disabled)"
                    )
                    if offers_reset(scope):  # else it ends whole, at its next page
                        group.cancel_scope.cancel()

                group.start_soon(give_way_to_a_stop)
                group.start_soon(end_with_its_token)
                try:
                    await super().__call__(scope, receive, bounded)
                except TimeoutError:
                    why = "the client took no data for SERVICETRAIL_SEND_TIMEOUT seconds"
                except (OSError, ClientDisconnect):
                    pass
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
        why = why or self.reads.cut_off
        if why:
            party = self.reads.viewer.party_id
            log.warning("watch %s stream of %s cut off: %s", self.reads.watch_id, party, why)
            await reset(scope, receive)


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
        str | None, Header(alias="Last-Event-ID", description="resume after this event_id")
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
    reads = _StreamReads(
        engine_of(request),
        viewer,
        api_reader(request, viewer),
        found,
        filters,
        bearer_token(request),
    )
    return _stream_answer(request, reads, start)


def _stream_answer(request: Request, reads: _StreamReads, start: int) -> Response:
    """The stream of a watch its Party has (else a 404), within the Party's bound of streams
    (else a 429); a HEAD has the GET's head alone."""
    head_only = asked_head(request)
    with reading(reads.engine) as conn:
        if get_watch(conn, reads.viewer.party_id, reads.watch_id) is None:
            if not head_only:  # a read of nothing, logged as /events logs it
                LoggedRead(conn, reads.viewer, reads.reader, "stream", reads.filters).write_entry()
            return JSONResponse(NOT_A_WATCH, status_code=404)
    slots = limits_of(request).take(reads.viewer.party_id, "stream")  # a HEAD is refused alike
    if head_only:
        # the head of a GET, ended at once: a stream's head shows no event, so nothing is
        # read or logged. As a GET, it wrote both entries and read a page the client never
        # saw (61g: two entries a monitor's check)
        slots.release()
        return StreamingResponse(iter(()), media_type=SSE_TYPE, headers=STREAM_HEADERS)
    try:
        reads.opening_entry()  # before the stream's first byte
    except BaseException:
        slots.release()
        raise
    return EventStream(
        reads,
        _event_stream(request, reads, start, slots),
        media_type=SSE_TYPE,
        headers=STREAM_HEADERS,
        background=BackgroundTask(slots.release),
    )
