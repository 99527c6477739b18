"""Turning a template into a page, and the screen's error pages.

Server-rendered (Jinja2, autoescaped), no inline script or style, so the screen runs under
the strict CSP of `headers.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .fairness import Busy
from .presenters import TEMPLATE_GLOBALS, readable, section_of
from .signin import SESSION_COOKIE

if TYPE_CHECKING:
    from .signin import SignedIn, SignedInAuditor

HERE = Path(__file__).parent

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(TEMPLATE_GLOBALS)
env.filters["readable"] = readable


def render(
    request: Request,
    template: str,
    who: SignedIn | SignedInAuditor | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    page = env.get_template(template).render(
        who=who,
        csrf=who.session.csrf_token if who else "",
        path=request.url.path,
        section=section_of(request.url.path),
        **context,
    )
    return HTMLResponse(page, status_code=status, headers=headers)


def error_page(
    request: Request,
    who: SignedIn | SignedInAuditor | None,
    status: int,
    title: str,
    message: str,
    heading: str | None = None,
    headers: dict[str, str] | None = None,
    again: str = "",
    again_label: str = "Open the form again",
) -> HTMLResponse:
    """`again`: the page to open again (a form's), instead of the search."""
    return render(
        request,
        "error.html",
        who,
        status=status,
        title=title,
        heading=heading or title,
        message=message,
        again=again,
        again_label=again_label,
        headers=headers,
        # answered before the session was looked up (the gate's 429, a 500): a "Sign in"
        # button told a signed-in analyst the session was lost (audit of the screen, session 18)
        maybe_signed_in=who is None and SESSION_COOKIE in request.cookies,
    )


def not_found(request: Request, who: SignedIn | SignedInAuditor | None) -> HTMLResponse:
    return error_page(
        request,
        who,
        404,
        "Not found",
        "There is no record or page here that you can see. Check "
        "the address, or search the trail again.",
    )


def too_busy(request: Request, who: SignedIn | SignedInAuditor | None, busy: Busy) -> HTMLResponse:
    return error_page(
        request,
        who,
        429,
        "Too much at once",
        busy.sentence(),
        headers={"Retry-After": str(busy.retry_after)},
    )


class Assets(StaticFiles):
    """The style sheet, script and icon: kept by the browser, revalidated by ETag on each use
    (the security headers would otherwise mark them no-store like every page)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("cache-control", "no-cache")
        return response


ASSETS = HERE / "static"
