"""Reading search parameters from outside into a `Search`, naming the parameter on any error."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query
from pydantic import BeforeValidator
from starlette.datastructures import QueryParams
from starlette.requests import Request

from ..domain import search
from ..domain.ids import BLANK, MAX_ID, InvalidValue, is_blank, positive_id, whole_number
from ..domain.model import Kind
from ..domain.search import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Cursor,
    InvalidField,
    Search,
)
from ..domain.times import FROM_WORDS, TO_WORDS
from ..domain.visibility import Scope
from .errors import ParameterError
from .param_schemas import (
    NOT_BLANK_SCHEMA,
    optional_time_schema,
    or_empty,
    time_schema,
    whole_number_schema,
)


# id(a route's dependant) -> (that dependant, kept so that its id is never reused; the query
# names it takes)
_ROUTE_PARAMETERS: dict[int, tuple[Any, frozenset[str]]] = {}


def _query_names(dependant: Any) -> frozenset[str]:
    names = {parameter.alias for parameter in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def refuse_wrong_parameters(request: Request) -> None:
    """A query parameter the API route does not take is a 422 naming it. Ignored, a misspelt
    filter (`devce_id=...`) answered every record the Party may see, as if they were the
    Device's. So is one given twice, and one of white space alone: here for every route and
    parameter, where each parser had its own word for it (`cursor=%20` was "not a cursor",
    `window=%20` "not a whole number"; review 47j). Asked after the token is checked:
    without one the answer stays 401."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    # the hot path (web.hot_path), with no route, is taken only with parameters the route
    # takes, each given once and none blank
    if dependant is None or not request.scope.get("query_string"):
        return
    cached = _ROUTE_PARAMETERS.get(id(dependant))
    if cached is None:
        cached = _ROUTE_PARAMETERS[id(dependant)] = (dependant, _query_names(dependant))
    known = cached[1]
    given = request.query_params
    for name in given:
        if name not in known:
            takes = ", ".join(sorted(known)) if known else "none"
            raise ParameterError(
                _shown(name), f"not a parameter of this request (it takes: {takes})"
            )
        if len(given.getlist(name)) > 1:
            raise ParameterError(_shown(name), REPEATED)
        if is_blank(given[name]):
            raise ParameterError(name, BLANK)


REPEATED = "given more than once; each parameter takes one value"


def _shown(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "..."


def repeated_parameter(query: QueryParams, names: Iterable[str]) -> str | None:
    """The first of `names` that the query string gives more than once: read with `.get`, the
    last value silently won, so `?device_id=A&device_id=B` searched B alone and said nothing."""
    return next((name for name in names if len(query.getlist(name)) > 1), None)


def build_search(
    device_id: str | None = None,
    request_id: str | None = None,
    srv: str | None = None,
    kind: str | None = None,
    time_from: str | None = None,
    time_to: str | None = None,
    scope: str | None = None,
) -> Search:
    """domain.search.build_search, its errors said as 422s that name the parameter."""
    try:
        return search.build_search(
            device_id,
            request_id,
            srv,
            kind,
            plus_restored(time_from),
            plus_restored(time_to),
            scope,
        )
    except InvalidField as e:
        raise ParameterError(e.field, e.message, e.every) from None


# A time's offset `+hh:mm` whose `+` a query string turned into a space (form encoding, which
# Starlette decodes): right after a time's digits, before the offset's, no other character
# could have stood there.
_PLUS_AS_SPACE = re.compile(r"(T[0-9:.,]*[0-9]) ([0-9]{2}(?::?[0-9]{2})?)\Z")


def plus_restored(value: str | None) -> str | None:
    """A time given unencoded in a URL, `?from=2025-03-01T13:00:00+01:00` (as a client that
    writes Python's isoformat() into an f-string sends it), with its `+` back: read as the
    space the query string makes of it, it was a 422 (audit 48f)."""
    if not value or " " not in value:
        return value
    return _PLUS_AS_SPACE.sub(r"\1+\2", value)


def _ascii_digits(value: object) -> object:
    """Pydantic's integers also take ' 5 ', '1_000' and '5.0' from a query string; the API's
    counts are digits 0-9 only, as the CLI's and the record ids are."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError(f"must be a whole number from 1 to {MAX_PAGE}, in the digits 0-9")
    return value


def _empty_as(default: object) -> BeforeValidator:
    """`?limit=` (a form's empty field) means the parameter was not given, as it always has
    (white space alone never comes here: refuse_wrong_parameters)."""

    def read(value: object) -> object:
        return default if value == "" else value

    return BeforeValidator(read)


PageSize = Annotated[
    int,
    Query(ge=1, le=MAX_PAGE, description=f"page size, 1..{MAX_PAGE}", json_schema_extra=or_empty),
    BeforeValidator(_ascii_digits),
    _empty_as(DEFAULT_PAGE),
]
KindFilter = Annotated[
    Kind | None,
    Query(description="the kind of message", json_schema_extra=or_empty),
    _empty_as(None),
]
ScopeFilter = Annotated[
    Scope,
    Query(description="own, others (MP141) or all", json_schema_extra=or_empty),
    _empty_as(Scope.ALL),
]
PageCursor = Annotated[
    str | None,
    Query(
        description="next_cursor of the previous page (opaque)",
        json_schema_extra=NOT_BLANK_SCHEMA,
    ),
]


_YEARS = "; years 1 to 9999 once in UTC"


# `from` inclusive and `to` exclusive, here and everywhere (SPEC section 5); the route's own
# parser (build_search) reads them, so that its 422 names the parameter
def _bound(name: str, words: str, schema: Callable[[dict[str, Any]], None]) -> Any:
    return Query(alias=name, description=words + _YEARS, json_schema_extra=schema)


TimeFrom = Annotated[str | None, _bound("from", FROM_WORDS, optional_time_schema)]
TimeTo = Annotated[str | None, _bound("to", TO_WORDS, optional_time_schema)]
RequiredFrom = Annotated[str, _bound("from", FROM_WORDS, time_schema)]
RequiredTo = Annotated[str, _bound("to", TO_WORDS, time_schema)]


# the names a read of the API or the screen takes, in the order an access-log entry keeps
# them, before any other parameter, since it keeps only so many (domain.access_log's
# MAX_FILTERS and MAX_FILTERS_TEXT): kept as sent, four long values of names the search page
# does not use (window, after ...) filled the entry and the Device searched for was lost
# (review 27e)
_READ_ORDER = (
    "device_id",
    "request_id",
    "srv",
    "kind",
    "from",
    "to",
    "scope",
    "cursor",
    "limit",
) + ("party_id", "window", "after", "page")
_READ_NAMES = frozenset(_READ_ORDER)
# what a route's own entry sets to say what was done (web.proofs_page: the payload taken
# away): from a query, kept as sent, a record page's look read as a payload download in Who
# looked (review of the screen, 56). No read takes a parameter of that name.
_MARKS = frozenset({"download"})


def asked(request: Request, *own: str, **path: Any) -> dict[str, Any]:
    """The filters as asked (SPEC section 8): the path's ids, the read's `own` parameters, the
    query's other parameters that some read takes, then the rest as sent. The screen ignores
    a parameter it does not take, and 24 of them sent first pushed the record's id or the
    Device searched for out of its entry (audit 24b); long values of names that other reads
    take pushed out a Device page's cursor (review 27f)."""
    query = request.query_params
    taken = {name: query[name] for name in (*own, *_READ_ORDER) if name in query}
    rest = {n: value for n, value in query.items() if n not in _READ_NAMES and n not in _MARKS}
    return {**path, **{n: v for n, v in {**taken, **rest}.items() if n not in path}}


def tree_size(parameter: str, text: str) -> int:
    """A log's tree size asked for a consistency proof (the API's and the screen's)."""
    if text == "":
        raise ParameterError(parameter, "is required")
    try:
        size = whole_number(text)
    except InvalidValue as e:  # its reason: a 20-digit size was "not a whole number" (37e)
        raise ParameterError(parameter, str(e)) from None
    if size > MAX_ID:
        raise ParameterError(parameter, f"too large (at most {MAX_ID})")
    return size


# a record's id in an API path, as SPEC section 3 has it: a positive integer (it was any string,
# as the watch's id was: a generated client took text); anything else is a 404 (below)
RecordId = Annotated[
    str,
    Path(description="the record's id", json_schema_extra=whole_number_schema(1, MAX_ID)),
]


def record_id_or_404(text: str) -> int:
    """Ids are positive integers in ASCII digits (str.isdigit() also takes '²', which int()
    refuses); anything else cannot exist, so it is a 404 like a record the viewer may not see."""
    found = positive_id(text)
    if found is None:
        raise HTTPException(404)
    return found


def cursor_of(token: str | None) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.decode(token)
    except InvalidValue as e:
        raise ParameterError("cursor", str(e)) from None
