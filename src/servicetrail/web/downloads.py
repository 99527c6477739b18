"""The own-traffic report over HTTP, sent at the client's pace without holding the database.

A thread generates the report (`store.export`) into an unnamed temporary file, the spool, as
fast as the database gives it; the response sends it from there as fast as the client takes
it. So the database connection is held only while the database works, never while a client
is slow to read: before, a client that stopped reading left the report's generator suspended
with its connection (on PostgreSQL a session idle in transaction), and fifteen such clients
took the whole pool.

A client that goes, or that leaves a piece unread for SERVICETRAIL_SEND_TIMEOUT seconds, ends
everything at once: the running statement is interrupted, its connection is dropped rather than
pooled (so that an interruption still on its way cannot reach the next request to use it), the
spool is deleted and the Party's slots are given back.

Nothing is sent until the whole report is in the spool and its access-log entry, which
counts the rows the spool holds, is stored (SPEC section 8: before the first byte). So a
report that fails (its time limit, a busy bound) is answered with a status and a message
like any request, and the entry counts exactly what is sent: counted first and read after,
in two transactions, a report sent the records an ingest stored in between uncounted.

A download outlives its request, as an event stream does, so it asks again whether its token
or session still holds (state.credential_recheck_seconds): revoked, its account disabled or
its password changed, it is cut off there, not sent on at its client's pace to the end (a
slow client went on reading a whole report for as long as it liked). A download cut off has
its connection reset (web.resets): what the server's buffers held of it is not sent either.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy.engine import Engine
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import settings
from ..domain.access_log import Reader
from ..domain.times import compact_time
from ..domain.visibility import Viewer
from ..store.engine import reading
from ..store.limits import StoreBusy
from ..store.logged_reads import LoggedRead
from .credential_watch import until_the_credential_ends
from .fairness import Busy, PartyLimits, Slots
from .resets import reset
from .stopping import ServerRestarting

log = logging.getLogger("servicetrail.web")

SEND_BYTES = 64 * 1024
STOP_ATTEMPTS, STOP_PAUSE = (
    100,
    0.05,
)  # cancels sent to a report being stopped, and the pause between


class NoRoomForTheReport(StoreBusy):
    """The spool could not be written: the server's temporary folder is full (a stalled
    client holds its report's spool until the send timeout lets it go) or unwritable. A 503
    with Retry-After, saying so: it was a 500 and a traceback (audit 30a)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(
            "the server has no room to prepare this report now "
            f"({error.strerror or type(error).__name__}): try again later, or ask for a "
            "shorter period"
        )


class Spool:
    """One report on its way: written by the generating thread, read by the response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:  # unnamed: gone with its last descriptor
            self._file = tempfile.TemporaryFile(buffering=0)
        except OSError as e:
            raise NoRoomForTheReport(e) from None
        self._fd = self._file.fileno()
        self._loop = loop
        self._progress = asyncio.Event()
        self._lock = threading.Lock()
        self.written = 0
        self.sendable = 0  # all that was written, once the report's access-log entry is stored
        self.done = False
        self.error: BaseException | None = None
        self._stopping = False
        self._statement_on: object | None = None  # the DBAPI connection while a statement may run
        self._interrupted = False
        self._read_done = False

    # --- the generating thread ---------------------------------------------------------------

    def generate(
        self, engine: Engine, read: ReportRead, time_from: datetime, time_to: datetime, slots: Slots
    ) -> None:
        try:
            with reading(engine) as conn:
                with self._lock:
                    if self._stopping:
                        return
                    self._statement_on = conn.connection.dbapi_connection
                logged = LoggedRead(conn, read.viewer, read.reader, "report", read.filters)
                chunks = logged.export_own_report_csv(time_from, time_to)
                try:
                    for chunk in chunks:
                        if self._stopping:
                            return
                        self._append(chunk)
                finally:
                    # ends the statement (a COPY is cancelled) inside its transaction
                    chunks.close()
                    with self._lock:
                        self._statement_on = None
                        if self._interrupted:
                            conn.invalidate()
                # the access-log entry, with the report's counts, before its first byte
                logged.write_entry()
                self.sendable = self.written
        except Exception as e:  # given to the response, which answers or cuts off the download
            if not self._stopping:
                self.error = e
        finally:
            slots.release()
            with self._lock:
                self.done = True
                if self._read_done:
                    self._file.close()
            self._wake()

    def _append(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:  # ENOSPC, EFBIG, EDQUOT, EIO
            raise NoRoomForTheReport(e) from None
        self.written += len(chunk)
        self._wake()

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._progress.set)
        except RuntimeError:  # the server's loop has closed: nobody is reading
            pass

    # --- the response ------------------------------------------------------------------------

    async def read(self, position: int, size: int) -> bytes:
        """Up to `size` bytes from `position`, once generated; b"" at the end of the report.
        Raises what ended the generation, if it failed."""
        while True:
            self._progress.clear()
            done = self.done  # first: the generation sets `sendable` before `done`
            if self.sendable > position:
                return await anyio.to_thread.run_sync(
                    os.pread, self._fd, min(size, self.sendable - position), position
                )
            if done:
                if self.error is not None:
                    raise self.error
                return b""
            await self._progress.wait()

    def stop(self) -> None:
        """End the generation now; may block while PostgreSQL is sent its cancel request.

        A cancel that lands between two statements of the report's transaction (its settings,
        then the COPY) cancels nothing, and the next statement may then wait on a lock for as
        long as the lock is held: so the cancel is sent again until the generation has ended."""
        with self._lock:
            if self.done:
                return
            self._stopping = True
        for _ in range(STOP_ATTEMPTS):
            with self._lock:
                if self.done or self._statement_on is None:
                    return
                self._interrupted = True
                _interrupt(self._statement_on)
            time.sleep(STOP_PAUSE)

    def close(self) -> None:
        """The response is done with the spool: it goes as soon as the generation has ended."""
        with self._lock:
            self._read_done = True
            if self.done:
                self._file.close()
                return
        threading.Thread(target=self.stop, name="report-stop", daemon=True).start()


def _interrupt(dbapi_connection: object) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.interrupt()
    else:
        dbapi_connection.cancel_safe(timeout=5.0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ReportRead:
    """Who asks for the report and how, for its access-log entry."""

    viewer: Viewer
    reader: Reader
    filters: dict[str, Any]


class ReportDownload(Response):
    """The own-traffic report as an ASGI response: slots first (429 past a bound), then the
    spool. `on_error` may turn an error raised before anything was sent into a response
    (the web screen shows its form again); otherwise the app's error handlers answer."""

    media_type = "text/csv; charset=utf-8"

    def __init__(
        self,
        engine: Engine,
        limits: PartyLimits,
        viewer: Viewer,
        reader: Reader,
        filters: dict[str, Any],
        time_from: datetime,
        time_to: datetime,
        headers: dict[str, str],
        on_error: Callable[[Exception], Response | None] | None = None,
        still_held: Callable[[], bool] | None = None,
    ) -> None:
        self.engine, self.limits, self.viewer = engine, limits, viewer
        self.still_held = still_held  # whether the credential it was asked with holds now
        self.read = ReportRead(viewer, reader, filters)
        self.time_from, self.time_to = time_from, time_to
        self.on_error = on_error
        self.status_code, self.background = 200, None
        self.init_headers(headers)  # no body: sent chunked, as it is generated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        party = self.viewer.party_id
        try:
            download = self.limits.take(party, "download")
        except Busy as e:
            await self._answer(e, scope, receive, send)
            return
        spool: Spool | None = None
        failure: Exception | None = None
        started = all_sent = False
        try:
            generating = self.limits.take(party, "request", "heavy")
            try:
                spool = Spool(asyncio.get_running_loop())
                threading.Thread(
                    target=spool.generate,
                    name=f"report-{party}",
                    daemon=True,
                    args=(self.engine, self.read, self.time_from, self.time_to, generating),
                ).start()
            except BaseException:
                generating.release()
                raise

            async def send_report(cancel: anyio.CancelScope) -> None:
                nonlocal failure, started, all_sent
                try:
                    piece = await spool.read(0, SEND_BYTES)
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
                    )
                    started = True
                    position = 0
                    # with 64 KB pieces, a client slower than about 1 KB/s at the default (or one
                    # that stopped reading) is cut off
                    patience = settings.current().send_timeout
                    while piece:
                        with anyio.fail_after(patience):
                            await send(
                                {"type": "http.response.body", "body": piece, "more_body": True}
                            )
                        position += len(piece)
                        piece = await spool.read(position, SEND_BYTES)
                    all_sent = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except Exception as e:
                    failure = e
                finally:
                    cancel.cancel()

            async def watch_for_disconnect(cancel: anyio.CancelScope) -> None:
                nonlocal failure
                while (await receive())["type"] != "http.disconnect":
                    pass
                # gone part way: said as a cut-off (the report's entry counts it all, as the
                # server sent it; it was taken as a download that had ended, unsaid: audit 27b)
                if started and not all_sent:
                    failure = failure or ClientGone()
                cancel.cancel()

            async def give_way_to_a_stop(cancel: anyio.CancelScope) -> None:
                """A report that cannot finish in the server's graceful time is cut off here,
                a second before uvicorn would cancel it with a traceback (web.stopping)."""
                nonlocal failure
                await scope["app"].state.stopping.until_cut_off()
                failure = ServerRestarting()
                cancel.cancel()

            async def watch_the_credential(cancel: anyio.CancelScope) -> None:
                nonlocal failure
                if self.still_held is None:
                    return
                await until_the_credential_ends(self.still_held)
                if not all_sent:
                    failure = failure or CredentialEnded()
                    cancel.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(send_report, group.cancel_scope)
                group.start_soon(watch_for_disconnect, group.cancel_scope)
                group.start_soon(give_way_to_a_stop, group.cancel_scope)
                group.start_soon(watch_the_credential, group.cancel_scope)
        except Busy as e:
            failure = e
        finally:
            if spool is not None:
                spool.close()
            download.release()
        if failure is None:
            if self.background is not None:
                await self.background()
            return
        if started:  # cut off: the client sees its connection reset before the last chunk
            # a send timeout says nothing of itself: said by its kind
            log.warning("own report of %s cut off: %s", party, str(failure) or _cut_off_by(failure))
            await reset(scope, receive)  # not one more byte of it, and no ERROR from uvicorn
            return
        await self._answer(failure, scope, receive, send)

    async def _answer(self, failure: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Nothing sent yet: the caller's page, or the app's error handlers (429, 422, 500)."""
        answer = self.on_error(failure) if self.on_error is not None else None
        if answer is None:
            raise failure
        await answer(scope, receive, send)


def report_download_headers(party_id: str, start: datetime, end: datetime) -> dict[str, str]:
    """The own report's Content-Disposition, made only of the parsed times and a Party ID cut
    down to header-safe characters: a raw query value can hold control or non-Latin-1
    characters, which drop the connection or fail to encode (and stores loaded before Party
    IDs were checked to be ASCII may hold such IDs)."""
    party = re.sub(r"[^A-Za-z0-9_-]", "_", party_id)
    name = f"servicetrail-own-{party}-{compact_time(start)}-{compact_time(end)}.csv"
    return {"Content-Disposition": f'attachment; filename="{name}"'}


class CredentialEnded(Exception):
    """The download's token or session no longer holds."""

    def __str__(self) -> str:
        return (
            "its token or session ended (revoked, account disabled, password changed or signed out)"
        )


class ClientGone(ConnectionError):
    """The client closed the connection before the report's end."""

    def __str__(self) -> str:
        return "the client went before the end of the report"


def _cut_off_by(failure: Exception) -> str:
    if isinstance(failure, TimeoutError):
        return "the client took no data for SERVICETRAIL_SEND_TIMEOUT seconds"
    return type(failure).__name__
