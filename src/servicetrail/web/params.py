"""Reading search parameters from outside into a `Search`, naming the parameter on any error."""
from __future__ import annotations

from ..domain.catalogue import search_srvs
from ..domain.ids import InvalidValue, RequestId, eui64, whole_number
from ..domain.model import KINDS
from ..domain.search import DEFAULT_PAGE, MAX_PAGE, Cursor, Search
from ..domain.times import parse_time
from ..domain.visibility import Scope
from .errors import ParameterError


def _time(name: str, value: str | None):
    if not value:
        return None
    try:
        return parse_time(value)
    except InvalidValue as e:
        raise ParameterError(name, str(e)) from None


def build_search(device_id: str | None = None, request_id: str | None = None, srv: str | None = None,
                 kind: str | None = None, time_from: str | None = None, time_to: str | None = None,
                 scope: str | None = None) -> Search:
    try:
        device = eui64(device_id) if device_id else None
    except InvalidValue as e:
        raise ParameterError("device_id", str(e)) from None
    try:
        request = str(RequestId.parse(request_id)) if request_id else None
    except InvalidValue as e:
        raise ParameterError("request_id", str(e)) from None
    if kind and kind not in KINDS:
        raise ParameterError("kind", f"must be one of {', '.join(KINDS)}")
    try:
        chosen_scope = Scope(scope or "all")
    except ValueError:
        raise ParameterError("scope", "must be own, others or all") from None
    start, end = _time("from", time_from), _time("to", time_to)
    if start and end and end <= start:
        raise ParameterError("to", "must be after from")
    srvs = None
    if srv and srv.strip():
        srvs = tuple(search_srvs(srv)) or (srv.strip(),)  # a number, or words of a title
    return Search(device_id=device, request_id=request, srvs=srvs, kinds=(kind,) if kind else None,
                  time_from=start, time_to=end, scope=chosen_scope)


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
