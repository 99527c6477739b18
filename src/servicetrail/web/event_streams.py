"""A watch's events as Server-Sent Events (SPEC section 6), as web.watches_api's stream route
answers them: pages of events as they come, a keep-alive when quiet, the stream's two
access-log entries, and its cut-offs (a stalled client, a stop, a token that no longer
holds: web.credential_watch), each with its connection reset (web.resets)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from .. import settings
from ..domain.access_log import Reader, Tally
from ..domain.visibility import Viewer
from ..store.engine import reading
from ..store.limits import store_busy
from ..store.logged_reads import LoggedRead
from ..store.watches import get_watch
from .api import token_viewer
from .credential_watch import until_the_credential_ends
from .fairness import Slots, limits_of
from .head_requests import asked_head
from .resets import offers_reset, reset
from .stopping import ServerStopping

log = logging.getLogger("servicetrail.web")
# the answer to a watch that is not the Party's (web.watches_api's routes answer it too)
NOT_A_WATCH = {"error": "not_found", "message": "no such watch"}

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
class StreamReads:
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
    request: Request, reads: StreamReads, start: int, slots: Slots
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

    def __init__(self, reads: StreamReads, content: AsyncIterator[bytes], **kw: Any) -> None:
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


def stream_answer(request: Request, reads: StreamReads, start: int) -> Response:
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
