"""Query strings holding a NUL character, refused at the door: 422 naming the parameter.

No parameter of the API or the screen may hold one, and PostgreSQL's text cannot: checked
once here, a NUL never reaches a statement (where it was a 500 on PostgreSQL for the
parameters not validated by shape, such as a log's `origin`). Pure ASGI, and a byte search
of the query string for all the others, so the hot path pays next to nothing."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.ids import shown

from .errors import bad_parameter, is_for_the_screen
from .rendering import error_page


_PARAMETER_NAME = re.compile(r"[a-z_]{1,20}")  # how every parameter of the screen is named


def _named(parameter: str) -> str:
    """The parameter as the screen's page names it: quoted if it is named as ours are, else not
    at all. Quoted, forty characters of anyone's choosing still read on our page ("...
    'Your session expired, call +44 ...'"; review 23d)."""
    if _PARAMETER_NAME.fullmatch(parameter):
        return f"The parameter {shown(parameter)}"
    return "A parameter of the address"


class NoNulInQuery:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"%00" in query or b"\x00" in query:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            named = next((k for k, v in pairs if "\x00" in k or "\x00" in v), None)
            if named is not None:
                parameter = named.replace("\x00", "") or "query"
                message = "must not contain a NUL character"
                request = Request(scope)
                response: Response = (
                    error_page(
                        # quoted as every refusal quotes what it was sent: the name as the
                        # page's own words ("Your session expired, call ...") was a spoof
                        # anyone could link to (audit 23b)
                        request,
                        None,
                        422,
                        "Not a valid search",
                        f"{_named(parameter)} {message}.",
                    )
                    if is_for_the_screen(request)  # a page, as every refusal on the screen
                    else bad_parameter(parameter[:40], message)
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
