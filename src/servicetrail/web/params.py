"""Reading search parameters from outside into a `Search`, naming the parameter on any error."""
from __future__ import annotations

from ..domain import search
from ..domain.ids import InvalidValue, whole_number
from ..domain.search import DEFAULT_PAGE, MAX_PAGE, Cursor, InvalidField, Search
from .errors import ParameterError


def build_search(*values: str | None, **named: str | None) -> Search:
    """domain.search.build_search, its errors said as 422s that name the parameter."""
    try:
        return search.build_search(*values, **named)
    except InvalidField as e:
        raise ParameterError(e.field, e.message) from None


def page_size(limit: str | int | None) -> int:
    if limit in (None, ""):
        return DEFAULT_PAGE
    try:
        value = limit if isinstance(limit, int) else whole_number(limit)
    except InvalidValue:
        raise ParameterError("limit", f"must be a whole number from 1 to {MAX_PAGE}") from None
    if not 1 <= value <= MAX_PAGE:
        raise ParameterError("limit", f"must be from 1 to {MAX_PAGE}")
    return value


def cursor_of(token: str | None) -> Cursor | None:
    if not token:
        return None
    try:
        return Cursor.decode(token)
    except InvalidValue as e:
        raise ParameterError("cursor", str(e)) from None
