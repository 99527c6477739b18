"""HEAD answered wherever GET is (RFC 9110 section 9.3.2: a general-purpose server supports
both), and a 405's `Allow` naming every method the address takes.

FastAPI's routes take only the methods they name, so HEAD was a 405 on every page and API
address (a monitor's check, a link checker); and the router's 405 named only the methods of
the first route it met at that path (`PATCH /api/v1/watches` said `Allow: POST`). A HEAD goes
on as a GET, whose body is not sent: the client gets the GET's status and headers,
Content-Length included. A read it makes is logged as the GET's would be (its Content-Length
tells of what was read); a watch's stream, whose head tells nothing of its events, reads and
logs none for a HEAD (web.event_streams)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def head_only(message: Message) -> None:
            # the first piece of body ends the answer: a stream (SSE) then sees its client
            # gone, instead of running on unseen
            nonlocal ended
            if message["type"] == "http.response.body":
                if ended:
                    return
                ended = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(dict(scope, method="GET", **{ASKED_HEAD: True}), receive, head_only)


ASKED_HEAD = "servicetrail.asked_head"  # in the scope of a HEAD that goes on as a GET


def asked_head(request: Request) -> bool:
    """Whether the client asked for the head alone: a page that changes state as it is seen
    (the Watches page marks events read) leaves it unchanged."""
    return bool(request.scope.get(ASKED_HEAD))


def allowed_methods(request: Request) -> str | None:
    """Every method some route at the request's path takes (and HEAD wherever GET is); None
    when no route says (the router's own `Allow` then stands)."""
    methods: set[str] = set()
    for route in _routes_at(request.app.router.routes, request.scope):
        methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or None


def _routes_at(routes: Iterable[BaseRoute], scope: Scope) -> Iterator[BaseRoute]:
    """The routes whose path is the request's, looking inside included routers (which this
    FastAPI keeps as one route each, its candidates within)."""
    for route in routes:
        if route.matches(scope)[0] is Match.NONE:
            continue
        inner = getattr(route, "effective_candidates", None)
        if callable(inner):
            yield from _routes_at(inner(), scope)
        else:
            yield route
