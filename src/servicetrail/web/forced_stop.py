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


class Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.force_exit and sig == signal.SIGINT:
            # a third Ctrl-C: the app's shutdown is stuck (a store lock, say), and only
            # Python's own Ctrl-C ends it now, as it ended the loop's cancelled clean-up
            raise KeyboardInterrupt
        super().handle_exit(sig, frame)

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
    return server.force_exit
