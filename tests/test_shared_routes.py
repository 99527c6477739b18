"""The suite's in-process apps share FastAPI's route contexts (tests/shared_routes.py): a
FastAPI that builds them otherwise makes every web test pay ~40 ms of CPU again, unseen."""

from __future__ import annotations

from fastapi.routing import _IncludedRouter
from fastapi.testclient import TestClient

from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
from servicetrail.web.auth import router as auth_router
from tests.shared_routes import share_route_contexts


def test_a_second_app_takes_the_route_contexts_the_first_built(sqlite_url) -> None:
    assert share_route_contexts()  # as conftest made it: already shared
    engine, built = open_store(sqlite_url), []
    for _ in range(2):
        app = create_app(engine)
        with TestClient(app) as client:
            assert client.get("/login").status_code == 200
        (included,) = (
            route
            for route in app.router.routes
            if isinstance(route, _IncludedRouter) and route.original_router is auth_router
        )
        built.append(included.effective_candidates())
    engine.dispose()
    assert built[0] is built[1] and built[0]
