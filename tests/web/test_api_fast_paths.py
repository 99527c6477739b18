"""What the fast API paths must keep: token revocation within the cache's lifetime, and
TCP_NODELAY on the connections of `serve --workers N`."""

from __future__ import annotations

import socket
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import delete

from servicetrail.store.schema import api_token
from servicetrail.web.api import ViewerCache
from servicetrail.web.app import create_app
from servicetrail.web.server import listening_socket
from tests import personas as P


def _revoke_all(engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(api_token))


@pytest.mark.parametrize("seconds", [0, 1.5])  # room for a loaded machine between the two reads
def test_a_deleted_token_stops_working_within_the_cache_lifetime(engine, bearer, seconds) -> None:
    app = create_app(engine)
    app.state.viewers = ViewerCache(seconds)
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = bearer(P.NORTHPOWER)
        assert client.get("/api/v1/records", headers=headers).status_code == 200
        _revoke_all(engine)
        if seconds:
            # remembered for at most `seconds`: the documented window
            assert client.get("/api/v1/records", headers=headers).status_code == 200
            time.sleep(seconds + 0.05)
        assert client.get("/api/v1/records", headers=headers).status_code == 401


def test_an_unknown_token_is_never_remembered(engine, world) -> None:
    """A rejected token is asked of the store every time, so a token created a moment later
    (or a guess) is judged on the store's current state."""
    app = create_app(engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        bad = {"Authorization": "Bearer st_not-a-real-token"}
        assert client.get("/api/v1/records", headers=bad).status_code == 401
        assert client.get("/api/v1/records", headers=bad).status_code == 401
        assert app.state.viewers._entries == {}


def test_the_cached_viewer_is_the_same_party_and_user_ids(engine, bearer, use_settings) -> None:
    use_settings(SERVICETRAIL_TOKEN_CACHE_SECONDS=5)  # the cache is off by default
    app = create_app(engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = bearer(P.SOUTHENERGY)
        first = client.get("/api/v1/records", headers=headers).json()
        second = client.get("/api/v1/records", headers=headers).json()  # from the cache
        assert first == second and first["items"]
        ((holder, _),) = app.state.viewers._entries.values()
        assert holder.viewer.party_id == P.SOUTHENERGY and len(holder.viewer.user_ids) == 2


def test_connections_accepted_by_the_workers_socket_have_nagle_off() -> None:
    """uvicorn's own socket for `--workers N` has proto 0, so asyncio never set TCP_NODELAY
    and every response waited ~40 ms for the client's delayed ACK."""
    config = uvicorn.Config(
        "servicetrail.web.app:app_for_store", host="127.0.0.1", port=0, workers=2
    )
    server = listening_socket(config)
    server.listen()
    try:
        with socket.create_connection(server.getsockname()):
            accepted, _ = server.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.close()
