"""A search of the trail, as a value: filters, scope, page size and keyset position."""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from .catalogue import number_in_other_digits, search_srvs, typed_srv
from .ids import (
    BLANK,
    DRAWN_AS_NOTHING,
    MOST_STACKED_MARKS,
    InvalidValue,
    RequestId,
    eui64,
    is_blank,
    positive_id,
    shown,
    stacked_marks,
)
from .model import KINDS
from .times import format_time, parse_bound, parse_time
from .visibility import Scope

_T = TypeVar("_T")

MAX_PAGE = 1000
MAX_SRV_TEXT = 200
# Refused in SRV text: control characters (a NUL would fail PostgreSQL's bind); zero-width
# and direction controls, which make one text read as another; U+FFFD, what bytes that are
# not UTF-8 become, and lone surrogates. They were looked for as title words and found
# nothing, with no word said (audit 42e). The API's schema states the same class.
# The rest of the Basic Multilingual Plane's format and private-use characters too (a soft
# hyphen, the Arabic letter mark, a Mongolian vowel separator, U+206A-U+206F...): the
# search's filters are shown on every Who looked page, the auditor's included, and one of
# them made the text read otherwise there as U+200F did (audit 55f). Those past the plane
# are refused by `_srvs` alone: a schema's pattern may be read with UTF-16 code units.
_NOT_IN_SRV_TEXT = (
    "\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ue000-\uf8ff\ufeff\ufff9-\ufffd"
    + DRAWN_AS_NOTHING
)
# White space as is_blank strips it (str.isspace), outside the control characters and with
# them: written out, for a schema's `\s` (ECMA-262) is another set, with U+FEFF and without
# U+001C-U+001F and U+0085
_SPACE = "\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WHITE_SPACE = "\u0009-\u000d\u001c-\u001f\u0085" + _SPACE
# The schema's word for what the API takes: empty (not given) or not white space alone
# (is_blank; white space alone was admitted by the schema and refused by the API, 47b)
NOT_BLANK_PATTERN = f"^(?:[{WHITE_SPACE}]*[^{WHITE_SPACE}][\\s\\S]*)?$"
SRV_TEXT_PATTERN = f"^(?:[{_SPACE}]*[^{_NOT_IN_SRV_TEXT}{_SPACE}][^{_NOT_IN_SRV_TEXT}]*)?$"
# ... and lone surrogates, which a command line's bytes become (no HTTP request carries one,
# and the schema could not be written out as UTF-8 with one in it)
_CONTROL = re.compile(f"[{_NOT_IN_SRV_TEXT}\ud800-\udfff]")
_SRV_FORM = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){0,3}")
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page stopped: the last (logged_at, id) shown, newest first."""

    logged_at: datetime
    record_id: int

    def encode(self) -> str:
        raw = f"{format_time(self.logged_at)}|{self.record_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            when, _, rid = base64.urlsafe_b64decode(padded.encode("ascii")).decode().partition("|")
            record_id = positive_id(rid)
            logged_at = parse_time(when)
            # its time as the server writes one (format_time), no other form of it: a seventh
            # digit of the second was dropped, and the page began a little elsewhere
            if record_id is None or format_time(logged_at) != when:
                raise ValueError
            return cls(logged_at, record_id)
        except (ValueError, UnicodeError, binascii.Error, InvalidValue):
            raise InvalidValue(
                "not a cursor this server issued; start again from the first page"
            ) from None


@dataclass(frozen=True, slots=True)
class Search:
    device_id: str | None = None
    request_id: str | None = None
    srvs: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    time_from: datetime | None = None  # inclusive
    time_to: datetime | None = None  # exclusive
    scope: Scope = Scope.ALL
    # a search by Device also finds the viewer's own non-device requests whose body names it
    # (SPEC 4.1 `subject_device_id`); False for the requests on the Device alone (SPEC 6)
    device_in_body: bool = True


class InvalidField(InvalidValue):
    """A search parameter that does not have its form; `field` names it as the API does.
    `every`: each wrong field's message, in the order the fields are read, `field` first (a
    form says them all at once; an API's 422 and a command's error name the first)."""

    def __init__(self, field: str, message: str, every: dict[str, str] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.every = every or {field: message}


def _time(name: str, value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        return parse_bound(value)
    except InvalidValue as e:
        raise InvalidField(name, str(e)) from None


def build_search(
    device_id: str | None = None,
    request_id: str | None = None,
    srv: str | None = None,
    kind: str | None = None,
    time_from: str | datetime | None = None,
    time_to: str | datetime | None = None,
    scope: str | None = None,
) -> Search:
    """A search from values as they came (query parameters, form fields, command options):
    one reading for the API, the screen and the command line, naming the field on any error
    (every wrong field: the screen's analyst was told of one, put it right, and was told of
    the next)."""
    wrong: dict[str, str] = {}
    given = {
        "device_id": device_id,
        "request_id": request_id,
        "srv": srv,
        "kind": kind,
        "from": time_from,
        "to": time_to,
        "scope": scope,
    }
    blank = {name for name, value in given.items() if is_blank(value)}

    def read(name: str, parse: Callable[[], _T]) -> _T | None:
        if name in blank:
            wrong[name] = BLANK
            return None
        try:
            return parse()
        except InvalidField as e:
            wrong[e.field] = e.message
        except InvalidValue as e:
            wrong[name] = str(e)
        return None

    device = read("device_id", lambda: eui64(device_id) if device_id else None)
    request = read("request_id", lambda: str(RequestId.parse(request_id)) if request_id else None)
    if "kind" in blank:
        wrong["kind"] = BLANK
    elif kind and kind not in KINDS:
        wrong["kind"] = f"must be one of {', '.join(KINDS)}"
    chosen_scope = read("scope", lambda: _scope(scope))
    start, end = (
        read("from", lambda: _time("from", time_from)),
        read("to", lambda: _time("to", time_to)),
    )
    if start and end and end < start:  # equal: [T, T), an empty range (from inclusive, to not)
        wrong["to"] = "must not be before from"
    srvs = read("srv", lambda: _srvs(srv))
    if wrong:
        first = next(iter(wrong))
        raise InvalidField(first, wrong[first], wrong)
    assert chosen_scope is not None  # read without an error
    return Search(
        device_id=device,
        request_id=request,
        srvs=srvs,
        kinds=(kind,) if kind else None,
        time_from=start,
        time_to=end,
        scope=chosen_scope,
    )


def _scope(scope: str | None) -> Scope:
    try:
        return Scope(scope or "all")
    except ValueError:
        raise InvalidField("scope", "must be own, others or all") from None


def hidden_past_the_bmp(text: str) -> bool:
    """Whether `text` holds a format or private-use character past U+FFFF (a tag character,
    U+1D173...), which `_NOT_IN_SRV_TEXT` leaves to this."""
    return any(ord(ch) > 0xFFFF and unicodedata.category(ch) in ("Cf", "Co") for ch in text)


def _srvs(srv: str | None) -> tuple[str, ...] | None:
    """The SRVs a number or words of a title name; None for no SRV asked."""
    if not (srv and srv.strip()):
        return None
    text = srv.strip()
    if _CONTROL.search(text) or len(text) > MAX_SRV_TEXT or hidden_past_the_bmp(text):
        raise InvalidField(
            "srv",
            f"must be an SRV number such as 4.1.1 or words of its title, at most "
            f"{MAX_SRV_TEXT} characters of UTF-8 text, no control or invisible character",
        )
    if stacked_marks(text):  # 160 accents on a "Z" drew over the Who looked page's rows
        raise InvalidField(
            "srv", f"must have at most {MOST_STACKED_MARKS} combining marks on a character"
        )
    other_digits = number_in_other_digits(text)
    if other_digits:
        raise InvalidField(
            "srv",
            f"an SRV number is written in the digits 0-9, such as 4.1.1: {shown(other_digits)}",
        )
    # a number or words of a title; an SRV-shaped number is also looked for as it is,
    # family or not (a SAT JSONL record may carry `4.1`, a number the catalogue lacks),
    # and words that match no title find nothing
    srvs = tuple(search_srvs(text))
    number = typed_srv(text)
    if _SRV_FORM.fullmatch(number) and number not in srvs:
        srvs += (number,)
    return srvs
