"""Every error a client can get, from one handler: a status and a message, never a stack. The
API and the OpenAPI document answer in JSON; the screen answers with a page (datasette's
`handle_exception` is the model: one place decides what an exception becomes, then how to
show it)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..store.engine import changed_under_us
from ..store.postgresql_errors import psycopg_error
from ..store.limits import SearchTooBroad, StoreBusy, StoreMisconfigured, store_busy
from ..store.schema_watch import StoreUpgraded
from .fairness import Busy
from .head_requests import allowed_methods
from .presenters import readable
from .rendering import error_page, not_found, too_busy
from .signin import AuditorRefused, FormExpired, SignInNeeded, anyone_signed_in, to_login

log = logging.getLogger("servicetrail.web")
NOT_FOUND = {"error": "not_found", "message": "no such record"}
# an address no route takes (a typo, a trailing '/'): "no such record" sent the client looking
# for a record (audit 25d). A record one may not see is still NOT_FOUND, as one that is not.
NO_SUCH_ADDRESS = {"error": "not_found", "message": "no such address in this API (/openapi.json)"}


class ParameterError(ValueError):
    """A wrong parameter: an API's 422 names `parameter`; a form shows `every` wrong one."""

    def __init__(self, parameter: str, message: str, every: dict[str, str] | None = None) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message
        self.every = every or {parameter: message}


class BodyTooLarge(ValueError):
    """A body over a route's own limit, below the server's: a 413 as the server's is, not a
    422 naming a `body` parameter (audit 67b)."""

    def __init__(self, limit_bytes: int, what: str) -> None:
        super().__init__(f"the request body is larger than {limit_bytes // 1024} KiB, {what}")


class NulInQuery(ParameterError):
    """A NUL in the address of a screen page that shows no field for that parameter: refused
    on the page with its chrome (web.query_guard), in `said`, the page's own words."""

    def __init__(self, parameter: str, message: str, said: str) -> None:
        super().__init__(parameter, message)
        self.said = said


# exceptions that are the request's doing, not a bug: answered, never logged as errors
EXPECTED = (
    ParameterError,
    BodyTooLarge,
    RequestValidationError,
    SearchTooBroad,
    Busy,
    StarletteHTTPException,
    SignInNeeded,
    FormExpired,
    AuditorRefused,
    ClientDisconnect,  # the client left mid-body: nobody to answer, nothing broken
)
# answered with their own status, without a traceback (these are logged as a warning)
NOT_THE_REQUESTS = (StoreBusy, StoreUpgraded)
ANSWERED = (*EXPECTED, *NOT_THE_REQUESTS)
AUDITOR_MESSAGE = "An auditor's account reads the access log only, never SAT records."
AUDITOR_PAGE_MESSAGE = (
    "An auditor's account reads the access log only, never SAT records: every Party's reads "
    "are on the Who looked page."
)


def bad_parameter(parameter: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "error": "invalid_parameter",
            "parameter": parameter,
            "message": f"{parameter}: {message}",
        },
    )


def as_json(exc: Exception) -> JSONResponse:
    if isinstance(exc, ParameterError):
        return bad_parameter(exc.parameter, exc.message)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = [
            str(part)
            for part in first.get("loc", ())
            if part not in ("query", "path", "body", "header")
        ]
        return bad_parameter(".".join(where) or "request", _message(first))
    if isinstance(exc, BodyTooLarge):  # in the words of the server's own 413 (web.http_limits)
        return JSONResponse(
            status_code=413, content={"error": "request_body_too_large", "message": str(exc)}
        )
    if isinstance(exc, AuditorRefused):
        return JSONResponse(
            status_code=403, content={"error": "forbidden", "message": AUDITOR_MESSAGE}
        )
    if isinstance(exc, SearchTooBroad):
        return JSONResponse(
            status_code=422, content={"error": "search_too_broad", "message": str(exc)}
        )
    if isinstance(exc, Busy):
        return JSONResponse(
            status_code=429,
            content={"error": "too_many_requests", "message": str(exc)},
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, ClientDisconnect):
        return JSONResponse(
            status_code=400, content={"error": "disconnected", "message": "the client left"}
        )
    if isinstance(exc, (StoreMisconfigured, StoreUpgraded)):  # no retry mends it: no Retry-After
        return JSONResponse(status_code=503, content={"error": "unavailable", "message": str(exc)})
    if isinstance(exc, StoreBusy):
        return JSONResponse(
            status_code=503,
            content={"error": "busy", "message": str(exc)},
            headers={"Retry-After": str(exc.RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return JSONResponse(status_code=404, content=NOT_FOUND)
        body = {
            "error": {401: "unauthorized", 403: "forbidden", 405: "method_not_allowed"}.get(
                exc.status_code, "error"
            ),
            "message": str(exc.detail),
        }
        return JSONResponse(
            status_code=exc.status_code, content=body, headers=getattr(exc, "headers", None)
        )
    return JSONResponse(
        status_code=500,
        content={"error": "internal", "message": "internal error; it has been logged"},
    )


def as_page(request: Request, exc: Exception) -> Response | None:
    """The screen's page for an exception, or None where the screen has none (the JSON answer
    stands). Runs on a thread: naming who is signed in reads the store."""
    if isinstance(exc, SignInNeeded):
        return to_login(request)
    if isinstance(exc, AuditorRefused):
        return error_page(request, exc.who, 403, "Not for auditors", AUDITOR_PAGE_MESSAGE)
    if isinstance(exc, FormExpired):
        # the form's own page, whose GET gives it afresh: a reload sent the stale form again,
        # and "Back to the search" left the form behind (audit 53e)
        return error_page(
            request,
            exc.who,
            403,
            "Form expired",
            exc.message,
            heading="This form has expired",
            again=request.url.path,
        )
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 404:
        return not_found(request, anyone_signed_in(request))
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
        return error_page(
            request,
            anyone_signed_in(request),
            405,
            "Not allowed",
            "That address does not accept this kind of request.",
        )
    if isinstance(exc, NulInQuery):
        who = anyone_signed_in(request)
        if who is None:
            # the sign-in page, as every other wrong address of a page before sign-in: the
            # guard answers before the route asks for a session, and a visitor got one of
            # the app's pages, naming what the address sent (review 47g)
            return to_login(request)
        return error_page(request, who, 422, "Not a valid address", exc.said)
    if isinstance(exc, (ParameterError, RequestValidationError, StarletteHTTPException)):
        # what a form post the parser refused gets (no multipart boundary, past 1,000
        # fields, a field sent as a file): the API's JSON, on the screen (audit 36d)
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 422
        said = str(exc.detail) if isinstance(exc, StarletteHTTPException) else _first_said(exc)
        return error_page(request, anyone_signed_in(request), status, "Bad request", readable(said))
    if isinstance(exc, Busy):
        return too_busy(request, anyone_signed_in(request), exc)
    if isinstance(exc, SearchTooBroad):  # a page's reads past their limit outside its own form
        said = str(exc)
        return error_page(
            request,
            anyone_signed_in(request),
            422,
            "Narrow your search",
            said[:1].upper() + said[1:],
        )
    if isinstance(exc, StoreMisconfigured):
        return error_page(request, None, 503, "Unavailable", f"{str(exc).capitalize()}.")
    if isinstance(exc, StoreUpgraded):
        said = str(exc)
        return error_page(request, None, 503, "Restart needed", f"{said[:1].upper()}{said[1:]}.")
    if isinstance(exc, StoreBusy):
        return error_page(request, None, 503, "Busy", f"{str(exc).capitalize()}.")
    if not isinstance(exc, EXPECTED):
        return error_page(
            request,
            None,
            500,
            "Something went wrong",
            "The error has been logged. Try again; if it keeps happening, tell your servicetrail "
            "administrator.",
        )
    return None


def _first_said(exc: ParameterError | RequestValidationError) -> str:
    if isinstance(exc, ParameterError):
        return str(exc)
    first = exc.errors()[0] if exc.errors() else {}
    where = [
        str(part)
        for part in first.get("loc", ())
        if part not in ("query", "path", "body", "header")
    ]
    return f"{'.'.join(where) or 'request'}: {_message(first)}"


def _message(error: Mapping[str, Any]) -> str:
    """A validation error's reason as our validators said it: pydantic puts "Value error, "
    before a ValueError's words, so `limit=ten` read "limit: Value error, must be a whole
    number ..." where `limit=0` read "limit: Input should be ..." (audit 46c)."""
    said = str(error.get("msg", "invalid value"))
    return said.removeprefix("Value error, ") if error.get("type") == "value_error" else said


def is_for_the_screen(request: Request) -> bool:
    """Everything but the API and its OpenAPI document, the style sheet's folder included: a
    mistyped /static/ address is opened by a person, in a browser."""
    path = request.url.path
    return not (path.startswith("/api/") or path.startswith("/openapi"))


def note(request: Request, exc: Exception) -> None:
    """The server's log of an exception answered to a client: a bug with its traceback."""
    if isinstance(exc, NOT_THE_REQUESTS):  # not a bug, but the operator should hear of it
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    elif not isinstance(exc, EXPECTED):
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)


def api_answer(request: Request, exc: Exception) -> JSONResponse | None:
    """The API's answer to an expected error (a write that waited past SQLite's busy timeout
    among them), logged as `note` logs it; None for anything else, which is a bug."""
    known = store_busy(exc) or exc
    if not isinstance(known, ANSWERED):
        return None
    note(request, known)
    return as_json(known)


async def handle(request: Request, exc: Exception) -> Response:
    """The one exception handler of the app: what the exception means, said as the client
    asked (a page for the screen, JSON for the API)."""
    exc = store_busy(exc) or exc  # any write that waited past SQLite's busy timeout
    refused = isinstance(exc, DBAPIError) or psycopg_error(exc, "Error")  # a pipeline's: raw
    if refused and not isinstance(exc, ANSWERED):
        # a statement the store refused: on a schema upgraded under the server, that is a
        # restart's to mend, said so (503), not a bug's 500
        changed = await run_in_threadpool(changed_under_us, request.app.state.engine)
        exc = changed or exc
    note(request, exc)
    answer: Response | None = None
    if is_for_the_screen(request):
        answer = await run_in_threadpool(as_page, request, exc)
    answer = answer or as_json(exc)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 404:
        if "endpoint" not in request.scope and not is_for_the_screen(request):
            # no route took the address: not a record's 404
            answer = JSONResponse(status_code=404, content=NO_SUCH_ADDRESS)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
        allowed = allowed_methods(request) or (exc.headers or {}).get("Allow")
        if allowed:
            answer.headers["Allow"] = allowed
    return answer


def install(app: FastAPI, on_postgresql: bool) -> None:
    # the driver's errors by their own class: a handler for Exception alone answers, then
    # re-raises to the server, which logs a traceback for what may be only a busy store
    kinds: list[type[BaseException]] = [*ANSWERED, OperationalError, sqlite3.OperationalError]
    if on_postgresql:  # only a PostgreSQL store loads its driver (store.postgresql_errors)
        import psycopg

        kinds.append(psycopg.OperationalError)
    for kind in (*kinds, Exception):
        app.add_exception_handler(kind, handle)
