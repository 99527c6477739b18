"""The delivery worker run beside the web server, in a thread of its own with its own event
loop (`servicetrail serve`); `servicetrail deliver` runs it alone."""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy.engine import Engine

from ..store.schema_watch import StoreUpgraded
from .deliver import Deliverer

log = logging.getLogger("servicetrail.webhooks")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (a dependency, beside uvicorn's): a delivery
    is a dozen loop callbacks, which asyncio's loop runs in Python, on the worker's one core."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class BackgroundDeliverer:
    """The worker in a thread of its own (with its own event loop), for `servicetrail serve`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="servicetrail-deliver", daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        self._loop = new_event_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            self._loop.run_until_complete(Deliverer(self.engine).run(self._stop))
        except StoreUpgraded as e:  # said, not as a bug: the server's requests say it too
            log.error("the webhook worker stopped: %s", e)
        except Exception:  # the server keeps serving; the outbox keeps the work for later
            log.exception("the webhook worker stopped")
        finally:
            self._loop.close()

    def start(self) -> BackgroundDeliverer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self, seconds: float = 20) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(seconds)
