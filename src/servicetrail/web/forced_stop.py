"""uvicorn's server, stopped by a second Ctrl-C without a traceback.

The first Ctrl-C stops gracefully (web.stopping). A second one makes uvicorn stop waiting
for the responses in progress and skip the app's shutdown, leaving its lifespan task to be
cancelled as the event loop ends: starlette logged that CancelledError as
`ERROR: Traceback ... asyncio.exceptions.CancelledError`, and the app's clean-up (the
webhook worker stopped, the access log's last seal) ran inside a cancelled task; so was
each response still going, as an "Exception in ASGI application". Here the responses are
told to end at once (web.stopping) and given a moment to, and the app is still asked to
shut down: only what will not end is cancelled, and an error in that shutdown is logged as
ever. The command then says it was interrupted (130), as a command stopped by Ctrl-C does."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from types import FrameType

import uvicorn


# how long a forced stop waits for the responses in progress to end themselves
ENDING_SECONDS = 1.0


# a Ctrl-C this long after the one that forced the stop breaks the app's shutdown as stuck;
# one sooner is the same key pressed again (three times, as people do), and is let be
STUCK_SECONDS = 3.0


def _another_ctrl_c(forced_at: float) -> None:
    """A Ctrl-C after the stop was forced. Raised at once, one pressed three times in a row
    cancelled the app's lifespan with a traceback, or came after the server's end, where
    nothing caught it (killed by SIGINT; review 47j). Later, the shutdown is taken to be
    stuck (a store lock, say), and only Python's own Ctrl-C ends it now."""
    if time.monotonic() - forced_at >= STUCK_SECONDS:
        raise KeyboardInterrupt


class Server(uvicorn.Server):
    forced_at: float | None = None  # when a second Ctrl-C forced the stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.forced_at is not None and sig == signal.SIGINT:
            _another_ctrl_c(self.forced_at)
            return
        super().handle_exit(sig, frame)
        if self.force_exit and self.forced_at is None:
            self.forced_at = time.monotonic()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:  # uvicorn's own shutdown skipped the app's
            # the responses still going were told to end at once (web.stopping): a moment
            # for them to, or the loop's end cancels each, logged with its traceback
            deadline = time.monotonic() + ENDING_SECONDS
            while self.server_state.tasks and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await self.lifespan.shutdown()


# uvicorn.run's exit when the server never started (its port taken, the app failing)
STARTUP_FAILURE = 3


def serve(config: uvicorn.Config) -> bool:
    """uvicorn.run's single-process path; whether a second Ctrl-C forced the stop."""
    server = Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # the stop signal raised again once stopped, as uvicorn.run
        pass
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
    forced_at = server.forced_at
    if forced_at is not None:  # and so until the command has ended
        signal.signal(signal.SIGINT, lambda _number, _frame: _another_ctrl_c(forced_at))
    return server.force_exit
