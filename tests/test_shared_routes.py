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


def test_a_servers_first_sign_in_page_builds_the_sign_ins_routes_alone(
    sqlite_url, monkeypatch
) -> None:
    """FastAPI builds the routes of each router a request passes on the first request to pass
    it: the first /login of every server (its start's check, a browser's first visit) built
    the API's twenty routes before it reached the sign-in's, 30 ms of CPU (session 63)."""
    passed = []
    built = _IncludedRouter.effective_candidates

    def spied(self: _IncludedRouter) -> list:
        passed.append(self.original_router)
        return built(self)

    monkeypatch.setattr(_IncludedRouter, "effective_candidates", spied)
    engine = open_store(sqlite_url)
    with TestClient(create_app(engine)) as client:
        assert client.get("/login").status_code == 200
    engine.dispose()
    assert passed and all(router is auth_router for router in passed)


def test_a_new_app_builds_no_route_of_its_own(sqlite_url) -> None:
    """Every page's routes are a module-level router's, built once a process: the Watches
    page's four, added to each app, built their parameters' models and dependencies again
    for every app, 4-5 ms of CPU a `create_app` and as much at its first requests, in nearly
    every web test (session 64)."""
    from fastapi.routing import APIRoute

    engine = open_store(sqlite_url)
    app = create_app(engine)
    engine.dispose()
    own = [route.path for route in app.router.routes if isinstance(route, APIRoute)]
    assert own == []
    with TestClient(app) as client:  # the page is still there, behind its sign-in
        answer = client.get("/watches", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login?next=%2Fwatches")
