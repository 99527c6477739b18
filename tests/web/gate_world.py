"""A gate before a route that holds its requests until let go, the app and its tokens: the
world of the gate's tests and of the read turns' behind it, and a request put to it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from servicetrail import settings
from servicetrail.web.fairness import share_of
from servicetrail.web.gate import Gate
from servicetrail.web.signin import SESSION_COOKIE
from servicetrail.web.state import SeenCredentials


class HeldRoute:
    """A route that answers 200 once `release` is set: its requests stay in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope, receive, send) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope_for(app, path="/api/v1/access-log", token=None, cookie=None, client="10.0.0.1"):
    headers = []
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if cookie is not None:
        headers.append((b"cookie", f"other=1; {SESSION_COOKIE}={cookie}".encode()))
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": headers,
        "client": (client, 50000),
        "app": app,
    }


async def ask(gate: Gate, scope) -> tuple[int, bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await gate(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture
def world():
    settings.reload()
    seen = SeenCredentials()
    seen.remember("token-of-a", share_of("PARTY_A", "a.analyst"))
    seen.remember("token-of-b", share_of("PARTY_B", "b.analyst"))
    seen.remember("session-of-a", share_of("PARTY_A", ""))
    app = SimpleNamespace(state=SimpleNamespace(seen_credentials=seen))
    route = HeldRoute()
    return app, route, Gate(route)
