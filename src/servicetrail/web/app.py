"""The ASGI application: API, web screen and OpenAPI document over one store."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from .. import __version__
from ..store.engine import pool_capacity
from . import api, errors, html, watches_api
from .fairness import PartyLimits
from .headers import SecurityHeaders
from ..webhooks.deliver import BackgroundDeliverer


@asynccontextmanager
async def _deliveries(app: FastAPI):
    """Watches' matching and webhook deliveries run beside the server (webhooks.deliver)."""
    worker = BackgroundDeliverer(app.state.engine).start()
    try:
        yield
    finally:
        await asyncio.to_thread(worker.stop)


def create_app(engine: Engine, deliveries: bool = False) -> FastAPI:
    """`deliveries`: also run the webhook worker (serve does; tests of the API need not)."""
    app = FastAPI(
        lifespan=_deliveries if deliveries else None,
        title="servicetrail",
        version=__version__,
        description="The DCC Service Audit Trail with SEC MP141 (Option B) visibility. "
                    "Authenticate with `Authorization: Bearer TOKEN` (servicetrail tokens create USERNAME).",
        docs_url=None, redoc_url=None,  # no third-party scripts under our CSP
    )
    app.state.engine = engine
    app.state.viewers = api.ViewerCache()  # per process: see api.TOKEN_CACHE_SECONDS
    # heavy work of all Parties together leaves half the pool to the quick searches
    app.state.limits = PartyLimits(heavy_total=pool_capacity(engine) // 2)
    errors.install(app)
    app.include_router(api.router)
    app.include_router(watches_api.router)
    html.install(app)
    app.add_middleware(SecurityHeaders)
    return app


def app_from_environment() -> FastAPI:
    """For `serve --workers N`: each worker process opens the store named in the environment."""
    from ..store.engine import open_store

    return create_app(open_store(), deliveries=True)
