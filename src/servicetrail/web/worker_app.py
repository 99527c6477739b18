"""The app of each `serve --workers N` worker process, built in the worker.

The supervisor only pickles a reference to `app_for_store` for the workers it spawns; the
app's modules (FastAPI, the routes, and then aiohttp for the webhooks: 0.6-0.7 s more of
the supervisor's CPU, session 59; aiohttp is now imported by a worker's first delivery due)
are imported in the workers that serve it, not in a supervisor that never does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..store.engine import open_store
from .quiet_logs import quiet_repeated_warnings

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_for_store(url: str) -> FastAPI:
    """Each worker opens the store for itself (the supervisor has already brought it to the
    current schema), and runs its share of the deliveries."""
    from .app import create_app

    quiet_repeated_warnings()  # in each worker's own logging
    engine = open_store(url)
    try:
        app = create_app(engine, deliveries=True)
    except BaseException:
        # open_store's connection stayed pooled until the engine was collected: a worker
        # that uvicorn starts again, or a test, holds it meanwhile (audit 59j)
        engine.dispose()
        raise
    serving = app.router.lifespan_context

    @asynccontextmanager
    async def serving_then_disposed(app: FastAPI) -> AsyncIterator[None]:
        # the engine is this worker's own: its pooled connections are closed with a word to
        # PostgreSQL once the shutdown's last seal is written, not cut off by the exit
        try:
            async with serving(app):
                yield
        finally:
            engine.dispose()

    app.router.lifespan_context = serving_then_disposed
    return app
