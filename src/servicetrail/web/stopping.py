"""A server asked to stop ends its event streams first, and cuts off late downloads itself.

uvicorn, told to stop (SIGINT, SIGTERM), waits `timeout_graceful_shutdown` for the responses
in progress to finish, then cancels them and logs each as an error with its traceback. An
event stream never finishes on its own, so every stream open at a restart ended that way,
and its closing access-log entry was written from a cancelled task. In each server process
the handler uvicorn installs is wrapped to tell the streams first: they end at their next
look for events, write their closing entries, and their clients come back after the
`retry` they were given, from their Last-Event-ID, to whichever server is up. A report
download still sending a second before uvicorn would cancel it is cut off by its own
response instead (web.downloads): a warning in the log, and the client sees the body end
without its last chunk, never a shorter report that looks whole.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio

from ..store.limits import StoreBusy

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACEFUL_SECONDS = 5  # what uvicorn gives responses in progress once asked to stop (web.server)


class ServerRestarting(StoreBusy):
    """A request the server gave up on because it is stopping: the same request may be made
    again (503 with Retry-After), to this server once it is back or to another."""

    def __init__(self) -> None:
        super().__init__("the server is stopping")


class ServerStopping:
    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        # a second Ctrl-C: uvicorn waits no more for the responses in progress, and cancels
        # those still going as its loop ends, each logged with a traceback (web.forced_stop)
        self._forced: asyncio.Event | None = None

    def watch_signals(self) -> Callable[[], None]:
        """Wrap the handlers of the stop signals (uvicorn's, under `serve`), from the app's
        lifespan; returns what puts them back. Signals are handled in the main thread only:
        elsewhere (a test client's thread) nothing is wrapped."""
        self._event = event = asyncio.Event()
        self._forced = forced = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        wrapped: dict[int, Any] = {}
        told: list[int] = []
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # ignored, or the default: this process has no graceful stop to help

            def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
                # a signal handler may not touch the loop; uvicorn's own rule for a forced stop
                told.append(number)
                loop.call_soon_threadsafe(event.set)
                if number == signal.SIGINT and len(told) > 1:
                    loop.call_soon_threadsafe(forced.set)
                previous(number, frame)

            signal.signal(sig, handler)
            wrapped[sig] = previous

        def put_back() -> None:
            for sig, previous in wrapped.items():
                signal.signal(sig, previous)

        return put_back

    @property
    def asked(self) -> bool:
        return self._event is not None and self._event.is_set()

    async def asked_to_stop(self) -> None:
        """Returns once the server is asked to stop; never where nothing can tell it."""
        if self._event is None:
            await anyio.sleep_forever()
        else:
            await self._event.wait()

    async def until_cut_off(self) -> None:
        """Returns a second before uvicorn, asked to stop, would cancel a response still
        going, with a traceback and nothing after it run (its access-log entry, its
        cleanup): a response that cannot finish in the graceful time ends itself then. At
        once when the stop is forced (a second Ctrl-C), which cancels sooner still."""
        await self.asked_to_stop()
        forced = self._forced
        # made with the stop's event, which asked_to_stop has just seen set
        assert forced is not None
        with anyio.move_on_after(GRACEFUL_SECONDS - 1):  # at once if forced: a second Ctrl-C
            await forced.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if the server is asked to stop meanwhile; whether it is."""
        with anyio.move_on_after(seconds):
            await self.asked_to_stop()
        return self.asked
