"""The API's hot reads, a page of records, one record and its proof, answered without
FastAPI's per-request machinery (issue 12 item 4).

A device search costs the server about 1.5 ms of Python; py-spy (`--gil`) put a third of it
in FastAPI's layers around the route: a second thread-pool hop for the token dependency,
parameter validation, the dependency solver and its middleware. Here a plain GET of
`/api/v1/records` or `/api/v1/records/{id}` whose parameters are all of the ordinary form
calls the route's own functions (its dependency, then the route), in one hop: whatever the
route does (bounds, the store, the answer's shape) it does here too.

Anything else goes on to the FastAPI route, which stays the documented one (OpenAPI) and
the one that words a malformed parameter: an unknown, repeated, empty or blank parameter, a
`limit`, `kind` or `scope` that is not exactly a value the route accepts, an id that is not
digits.
Either way the client gets the same bytes (tests/web/test_hot_path.py compares them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.model import KINDS, Kind
from ..domain.search import DEFAULT_PAGE, MAX_PAGE
from ..domain.visibility import Scope as Visible
from . import api, logs_api
from .errors import api_answer

RECORDS = "/api/v1/records"
ONE_RECORD = re.compile(r"/api/v1/records/([0-9]{1,19})")
PROOF = re.compile(r"/api/v1/records/([0-9]{1,19})/proof")
# the route's names for its query parameters
FIELDS = {
    "device_id": "device_id",
    "request_id": "request_id",
    "srv": "srv",
    "kind": "kind",
    "from": "time_from",
    "to": "time_to",
    "scope": "scope",
    "limit": "limit",
    "cursor": "cursor",
}
CHOICES = {"kind": frozenset(KINDS), "scope": frozenset(s.value for s in Visible)}
LIMIT = re.compile(r"[1-9][0-9]{0,3}")

Answer = Callable[[Request], Response]


class HotPath:
    """Pure ASGI, placed inside the app's error handling and security headers, so what it
    answers gets them as the route's answers do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = _answer_for(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        response = await run_in_threadpool(_answered, answer, Request(scope, receive))
        await response(scope, receive, send)


def _answered(answer: Answer, request: Request) -> Response:
    """The answer, or the API's answer to an expected error (`errors.api_answer`, as the app's
    error handler gives it); anything unexpected goes on to that handler, logged."""
    try:
        return answer(request)
    except Exception as e:
        answered = api_answer(request, e)
        if answered is None:
            raise
        return answered


def _answer_for(scope: Scope) -> Answer | None:
    """What answers this request here, or None to leave it to the FastAPI route."""
    if scope["method"] != "GET" or scope.get("root_path"):
        return None
    path = scope["path"]
    if path == RECORDS:
        return _page_answer(scope["query_string"])
    if scope["query_string"]:
        return None
    one = ONE_RECORD.fullmatch(path)
    if one is not None:
        record_id = one[1]
        return lambda request: api.one_record(request, api.api_viewer(request), record_id)
    proof = PROOF.fullmatch(path)
    if proof is not None:
        proved = proof[1]
        return lambda request: logs_api.proof(request, api.api_viewer(request), proved)
    return None


def _page_answer(query_string: bytes) -> Answer | None:
    given = QueryParams(query_string).multi_items()
    named = dict(given)
    if len(named) != len(given) or not all(value.strip() for value in named.values()):
        return None  # repeated, empty or white space alone: the route's reading of those stands
    if not named.keys() <= FIELDS.keys():
        return None
    if any(named[name] not in choices for name, choices in CHOICES.items() if name in named):
        return None
    limit = named.get("limit", str(DEFAULT_PAGE))
    if not LIMIT.fullmatch(limit) or int(limit) > MAX_PAGE:
        return None
    values: dict[str, Any] = {FIELDS[name]: value for name, value in named.items()}
    values["limit"] = int(limit)
    values["scope"] = Visible(named.get("scope", Visible.ALL))
    if "kind" in named:
        values["kind"] = Kind(named["kind"])

    def answer(request: Request) -> Response:
        return api.list_records(request, api.api_viewer(request), **values)

    return answer
