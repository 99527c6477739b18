"""The way back from a record to the search it was opened from: the record page's "Search"
breadcrumb went to `/`, and an analyst on page 2 of a filtered search lost it (review of the
screen, 47d).

The search's query string rides on the result links as `back`. It is a value anyone can put
in a link, so it is never echoed: the record page reads the search's own fields out of it
and writes the address again as the search form would, always `/` and a query string of our
making. No other path, host or scheme can come out of it (no open redirect), and the page's
escaping of an attribute is all that stands between its values and the HTML, as for every
other link the screen builds from the form's values."""

from __future__ import annotations

from urllib.parse import parse_qsl

from .errors import ParameterError
from .params import cursor_of
from .presenters import SEARCH_FIELDS, page_link, page_number, search_values

LONGEST_BACK = 2000  # a longer search is not carried: its crumb is the empty search
_TAKEN = frozenset((*SEARCH_FIELDS, "cursor", "page"))


def back_of(values: dict[str, str], cursor: str, page: int) -> str:
    """The `back` a result link carries: the query of the results page it is on ("" for the
    empty search's first page, or a search too long to carry)."""
    query = page_link(values, cursor=cursor, page=str(page) if cursor and page > 1 else "")
    back = query.removeprefix("/").removeprefix("?")
    return back if len(back) <= LONGEST_BACK else ""


def search_href(back: str | None) -> str:
    """The address of the search `back` names, rebuilt from its fields alone; `/` for
    anything else."""
    if not back or len(back) > LONGEST_BACK:
        return "/"
    pairs = parse_qsl(back, keep_blank_values=True)
    seen = [name for name, _ in pairs if name in _TAKEN]
    if len(seen) != len(set(seen)):  # a field twice: the search itself refuses it
        return "/"
    sent = dict(pair for pair in pairs if pair[0] in _TAKEN)
    values = search_values(sent)
    cursor = sent.get("cursor", "")
    try:
        if cursor_of(cursor or None) is None:
            cursor = ""
    except ParameterError:
        cursor = ""
    page = page_number(sent.get("page")) if cursor else 1
    return page_link(values, cursor=cursor, page=str(page) if page > 1 else "")
