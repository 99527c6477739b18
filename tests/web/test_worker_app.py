"""The app each `serve --workers N` worker builds for itself (web.worker_app)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from servicetrail.web.worker_app import app_for_store


def test_a_workers_own_engine_is_disposed_of_at_shutdown(sqlite_url):
    """Its pooled connections were left to the process's exit, closed without a word to
    PostgreSQL (session 59): the engine the worker opened is disposed of after its lifespan,
    once the shutdown's last seal (which uses the pool) is written."""
    app = app_for_store(sqlite_url)
    engine = app.state.engine
    with TestClient(app) as client:
        response = client.get("/api/v1/records", headers={"Authorization": "Bearer nobody"})
        assert response.status_code == 401
        pool = engine.pool
        assert pool.checkedin() > 0  # the token was looked up and its connection put back
    assert engine.pool is not pool  # dispose() gives the engine a new pool ...
    assert pool.checkedin() == 0  # ... having closed the old one's connections
