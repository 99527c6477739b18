"""Query strings holding a NUL character, refused: 422 naming the parameter.

No parameter of the API or the screen may hold one, and PostgreSQL's text cannot: checked
once here, a NUL never reaches a statement (where it was a 500 on PostgreSQL for the
parameters not validated by shape, such as a log's `origin`). Pure ASGI, and a byte search
of the query string for all the others, so the hot path pays next to nothing.

The API is answered at the door. A screen's page was too, before the session was read: a
bare page with no navigation, the error not beside its field (review of the screen, 47d).
So the page's request goes on with the NULs taken out of its address and the parameter
named in its scope; before any route runs, `refuse_nul_in_query` refuses it on the page
with its chrome, unless the route shows that parameter as a field of its form
(`shows_nul_beside`), which then refuses it there (`nul_in`), never reading the query. A
visitor not signed in gets the sign-in page instead, as for any other wrong address of a
page (web.errors.as_page)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.ids import shown

from .errors import NulInQuery, bad_parameter, is_for_the_screen


_PARAMETER_NAME = re.compile(r"[a-z_]{1,20}")  # how every parameter of the screen is named
NUL_MESSAGE = "must not contain a NUL character"
_NUL_IN = "servicetrail.nul_in"  # the scope's key: the parameter that held a NUL
_FIELDS = "_nul_shown_beside"  # a route's attribute: the parameters it shows as fields
Route = TypeVar("Route", bound=Callable[..., object])


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
                if is_for_the_screen(Request(scope)):
                    # decoded as Starlette decodes it, written again without a NUL in it
                    cleaned = [(k.replace("\x00", ""), v.replace("\x00", "")) for k, v in pairs]
                    query = urlencode(cleaned).encode("ascii")
                    await self.app(
                        {**scope, "query_string": query, _NUL_IN: parameter}, receive, send
                    )
                    return
                await bad_parameter(parameter[:40], NUL_MESSAGE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def shows_nul_beside(*fields: str) -> Callable[[Route], Route]:
    """Marks a page route whose form shows a NUL in one of `fields` beside that field."""

    def mark(route: Route) -> Route:
        setattr(route, _FIELDS, frozenset(fields))
        return route

    return mark


def nul_in(request: Request, fields: Iterable[str]) -> dict[str, str]:
    """The error, by its field, of a field of `fields` whose parameter held a NUL."""
    named = request.scope.get(_NUL_IN)
    return {named: NUL_MESSAGE} if named is not None and named in fields else {}


async def refuse_nul_in_query(request: Request) -> None:
    """Every route's first dependency: a NUL the door let through to the screen is refused
    here, unless the route shows it beside its field. Async: no thread for every request."""
    named = request.scope.get(_NUL_IN)
    if named is not None and named not in getattr(request.scope.get("endpoint"), _FIELDS, ()):
        # quoted as every refusal quotes what it was sent: the name as the page's own words
        # ("Your session expired, call ...") was a spoof anyone could link to (audit 23b)
        raise NulInQuery(named[:40], NUL_MESSAGE, f"{_named(named)} {NUL_MESSAGE}.")
