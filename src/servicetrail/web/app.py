"""The ASGI application: API, web screen and OpenAPI document over one store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.engine import Engine

from .. import __version__
from ..security import HASHING_SLOTS
from ..store.engine import pool_capacity
from ..store.sealing import seal_every_minute, seal_now
from ..webhooks.background import BackgroundDeliverer
from . import (
    access_api,
    access_page,
    api,
    auth,
    errors,
    logs_api,
    pages,
    proofs_page,
    verify_page,
    watches_api,
    watches_page,
)
from .fairness import PartyLimits
from .gate import Gate
from .quiet_logs import say_untold_warnings
from .hashing_turns import HashingTurns
from .state import SeenCredentials, SignInLanes, SignInPace
from .head_requests import HeadAsGet
from .headers import SecurityHeaders
from .hot_path import HotPath
from .query_guard import NoNulInQuery, refuse_nul_in_query
from .rendering import ASSETS, Assets
from .stopping import ServerStopping

log = logging.getLogger("servicetrail.web")


@asynccontextmanager
async def _deliveries(app: FastAPI) -> AsyncIterator[None]:
    """Watches' matching and webhook deliveries run beside the server (webhooks.deliver),
    and the access log's entries are sealed into signed checkpoints every minute and at
    shutdown (store.sealing)."""
    put_back_signals = app.state.stopping.watch_signals()  # see web.stopping
    worker = BackgroundDeliverer(app.state.engine).start()
    sealer = asyncio.create_task(seal_every_minute(app.state.engine))
    try:
        yield
    finally:
        put_back_signals()
        sealer.cancel()
        await asyncio.to_thread(worker.stop)
        await seal_now(app.state.engine, last=True)
        say_untold_warnings()


# The worker threads every sync route and run_in_threadpool share: anyio's default pool.
WORKER_THREADS = 40


# Sign-ins checked or waiting at once, of browsers new and known each (web.state.SignInLanes):
# a few for each hashing slot, and an eighth of the pool at most, whatever the cores (four a
# slot held 44 threads of 40 on 12 cores; review 43d)
def sign_in_lanes_for(hashing_slots: int) -> int:
    return min(4 * hashing_slots, WORKER_THREADS // 8)


SIGN_IN_LANES = sign_in_lanes_for(HASHING_SLOTS)
# the hashing slots are the process's (security._HASHING): so are the threads that take them
SIGN_IN_TURNS = HashingTurns(HASHING_SLOTS)


def create_app(engine: Engine, deliveries: bool = False, hot_path: bool = True) -> FastAPI:
    """`deliveries`: also run the webhook worker (serve does; tests of the API need not).
    `hot_path`: answer the hot reads through web.hot_path (off: every request through its
    FastAPI route, which the tests compare it with)."""
    app = FastAPI(
        lifespan=_deliveries if deliveries else None,
        title="servicetrail",
        version=__version__,
        description="The DCC Service Audit Trail with SEC MP141 (Option B) visibility. "
        "Authenticate with `Authorization: Bearer TOKEN` (servicetrail tokens create USERNAME). "
        "A parameter this API does not know, or one holding a NUL character, is a 422 naming "
        "it. `servicetrail serve` bounds every request: a head too long is a 431, a body too "
        "large a 413, a request not whole in time a 408, each closing the connection; a "
        "connection is closed after 100 requests (`Connection: close`).",
        docs_url=None,
        redoc_url=None,  # no third-party scripts under our CSP
        # `/api/v1/records/` is a 404, not a 307 before any check to an address built from the
        # request's own Host header
        redirect_slashes=False,
        dependencies=[Depends(refuse_nul_in_query)],
    )
    app.state.engine = engine
    app.state.viewers = api.ViewerCache()  # per process: see api.ViewerCache
    app.state.stopping = ServerStopping()  # told by serve's stop signals (lifespan)
    # heavy work of all Parties together leaves half the pool to the quick searches
    app.state.limits = PartyLimits(heavy_total=pool_capacity(engine) // 2)
    app.openapi = _with_bearer_tokens(app)  # type: ignore[method-assign]
    errors.install(app, on_postgresql=engine.dialect.name == "postgresql")
    app.mount("/static", Assets(directory=ASSETS), name="static")
    # the sign-in's routes first: FastAPI builds the routes of each router a request passes
    # (their parameters' models) on the first request to pass it, and the first /login of a
    # server (its start's check, a browser's first visit) built the API's twenty, 30 ms of
    # CPU (session 63). No other router has a path of the sign-in's.
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(logs_api.router)
    app.include_router(watches_api.router)
    app.include_router(access_api.router)
    app.include_router(pages.router)
    app.include_router(proofs_page.router)
    app.include_router(verify_page.router)
    app.include_router(access_page.router)
    app.include_router(watches_page.router)
    if hot_path:
        app.add_middleware(HotPath)  # inside SecurityHeaders: its answers get them too
    app.state.seen_credentials = SeenCredentials()
    app.state.sign_in_lanes = SignInLanes(strangers=SIGN_IN_LANES, trusted=SIGN_IN_LANES)
    app.state.sign_in_turns = SIGN_IN_TURNS
    app.state.sign_in_pace = SignInPace()
    app.state.sign_in_successes = SignInPace()
    app.add_middleware(Gate)  # outside the hot path: a turn is taken before a thread is
    app.add_middleware(NoNulInQuery)
    app.add_middleware(HeadAsGet)
    app.add_middleware(SecurityHeaders)
    return app


def _with_bearer_tokens(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document saying how every operation authenticates (a bearer token), which
    it said in prose alone: generated clients and tools sent no header (audit 25d). Tokens
    are checked by the API's own dependency; this is the document's word for it."""
    plain = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = plain()
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token: servicetrail tokens create USERNAME",
                }
            }
            doc["security"] = [{"bearerToken": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    return document
