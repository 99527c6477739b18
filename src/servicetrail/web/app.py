"""The ASGI application: API, web screen and OpenAPI document over one store."""
from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from .. import __version__
from ..store.engine import open_store, pool_capacity
from . import api, auth, errors, pages
from .fairness import PartyLimits
from .headers import SecurityHeaders
from .rendering import ASSETS, Assets


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(
        title="servicetrail",
        version=__version__,
        description="The DCC Service Audit Trail with SEC MP141 (Option B) visibility. "
                    "Authenticate with `Authorization: Bearer TOKEN` (servicetrail tokens create USERNAME).",
        docs_url=None, redoc_url=None,  # no third-party scripts under our CSP
    )
    app.state.engine = engine
    app.state.viewers = api.ViewerCache()  # per process: see api.ViewerCache
    # heavy work of all Parties together leaves half the pool to the quick searches
    app.state.limits = PartyLimits(heavy_total=pool_capacity(engine) // 2)
    errors.install(app)
    app.mount("/static", Assets(directory=ASSETS), name="static")
    app.include_router(api.router)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.add_middleware(SecurityHeaders)
    return app


def app_for_store(url: str) -> FastAPI:
    """For `serve --workers N`: each worker process opens the store for itself (the parent
    has already brought it to the current schema)."""
    return create_app(open_store(url))
