"""Identifiers of the DCC world: EUI-64s and Request IDs."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# an EUI-64 as SPEC section 4 writes it (any case here; stored upper case)
EUI64_TEXT = "[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}"
_EUI64 = re.compile(f"^{EUI64_TEXT}\\Z")
EUI64_LENGTH = 23  # 8 octets of 2 digits, 7 dashes
# The shape eui64() checks, for loops over millions of IDs that call it only on a mismatch
EUI64_SHAPE = _EUI64
# the XSD's RequestIDType counter, as its pattern writes it: a decimal with no leading zero,
# at most 2^64 - 1 (shared with the API's OpenAPI document)
COUNTER_PATTERN = (
    "(0|[1-9][0-9]{0,18}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|"
    "1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|"
    "184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|"
    "1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|"
    "18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]|"
    "1844674407370955161[0-5])"
)
_COUNTER = re.compile(f"^(?:{COUNTER_PATTERN})\\Z")


# the white space an identifier may come wrapped in (XML's, a CSV cell's): str.strip() also
# took a no-break space and other Unicode spaces, which no schema's pattern allows (audit 23c)
ASCII_SPACE = " \t\n\r\x0b\x0c"  # bytes.strip()'s set: a vertical tab or form feed too


class InvalidValue(ValueError):
    """A value from outside that does not have the shape the SPEC gives it."""


@lru_cache(maxsize=1 << 16)  # a trail names the same Users and Devices over and over
def eui64(value: str) -> str:
    """Normalise an EUI-64 (any case accepted) to its upper-case form."""
    text = value.strip(ASCII_SPACE) if isinstance(value, str) else ""
    if not _EUI64.match(text):
        raise InvalidValue(f"not an EUI-64 (8 hex octets joined by '-'): {shown_code(value)}")
    return text.upper()


class RepeatedKeys(InvalidValue):
    """A JSON object that names a key twice: JSON readers keep the last value, and the first
    is lost without a word. `keys`: the repeated ones, sorted."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"a JSON object names {', '.join(map(repr, keys))} twice")
        self.keys = keys


def keys_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object_pairs_hook for json.loads refusing a key named twice (RepeatedKeys), in one
    pass: a count per key took 30 s for 60,000 keys (audit 21c)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        raise RepeatedKeys(sorted(key for key, n in counts.items() if n > 1))
    return found


SHOWN_LIMIT = 60  # characters of a rejected value's repr() a reason may quote


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """A value from outside as a reason may quote it: repr() (quotes, escaped control and
    invisible characters, so it stays one line and cannot start a spreadsheet formula),
    truncated so that no value makes a reason long."""
    if not isinstance(value, str):
        return "nothing" if value is None else f"a value of type {type(value).__name__}"
    if not value:
        return "an empty value"
    head = value[:limit]
    while len(repr(head)) > limit and len(head) > 1:
        head = head[:-1]
    return repr(value) if head == value else f"{head!r}... ({len(value)} characters)"


def shown_code(value: object) -> str:
    """`shown` for a value that must be ASCII (an ID or a code), naming its first character
    that is not: repr() leaves a Kelvin sign or a Greek capital Omicron as they are, and a
    refused 'KS' read as valid (review 47e)."""
    text = shown(value)
    if isinstance(value, str) and not value.isascii():
        odd = next(c for c in value if not c.isascii())
        text += f" (U+{ord(odd):04X} {unicodedata.name(odd, 'an unnamed character')} is not ASCII)"
    return text


def is_eui64(value: str) -> bool:
    return isinstance(value, str) and bool(_EUI64.match(value.strip(ASCII_SPACE)))


@dataclass(frozen=True, slots=True)
class RequestId:
    """`originator:target:counter`, as DUIS writes it."""

    originator: str
    target: str
    counter: str

    @classmethod
    def parse(cls, value: str) -> RequestId:
        parts = value.strip(ASCII_SPACE).split(":") if isinstance(value, str) else []
        if len(parts) != 3 or not _COUNTER.match(parts[2]):
            raise InvalidValue(
                f"not a Request ID (originator:target:counter, the counter a decimal with "
                f"no leading zero, at most 2^64 - 1): {shown(value)}"
            )
        # white space around the whole ID is the schema's (xs:token collapses it), inside it
        # is not: `U :D:7` was stored as `U:D:7`, where the DCC's parser reads an originator
        # ending in a space (audit 45a). An EUI-64 is 23 characters: one that is longer and
        # passes eui64() (cached, on every ingested record) had white space stripped.
        if len(parts[0]) == EUI64_LENGTH == len(parts[1]):
            try:  # not suppress(): a context manager costs more than the rest of the parse
                return cls(eui64(parts[0]), eui64(parts[1]), parts[2])
            except InvalidValue:
                pass
        raise InvalidValue(
            f"not a Request ID (originator and target must be EUI-64s): {shown(value)}"
        )

    def __str__(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"


# Codes and numbers from outside are checked on exactly the text that is stored, in ASCII:
# str.upper(), str.isalnum() and int() know all of Unicode ('ı'.upper() is 'I', 'ß'.upper()
# is 'SS', fullwidth 'Ｅ４' is alphanumeric, int('٣') is 3, int('1_0') is 10), so checking
# an upper-cased or Unicode-aware form let other strings in beside the ones it meant.
_PARTY_ID = re.compile(r"[A-Z0-9_-]{1,32}")
_CODE = re.compile(r"[A-Za-z0-9]{1,16}")
# a future User Role's code (SPEC section 2: accepted, treated like OU): party_id's characters,
# within the column's 16
_ROLE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")  # 2**63 - 1 has 19 digits


# control, format (bidi overrides, zero-width), unassigned, surrogate and private-use
# characters: in a name they make it read differently from what it is, on a screen (a
# right-to-left override turned one Party's "(SI)" into "(IS)") or in a terminal
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Cs", "Co"})
# ... and the letters and marks that draw nothing though no category says so: the Hangul
# fillers, the Khmer inherent vowels, the blank braille pattern, the combining grapheme
# joiner. A watch's name or a search's SRV text (shown on every Who looked page) was taken
# with them, one text reading as another (audit 55f)
DRAWN_AS_NOTHING = "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"


def hidden_characters(text: str, allowed: str = "") -> bool:
    """Whether `text` holds a character of HIDDEN_CATEGORIES or DRAWN_AS_NOTHING other than
    those `allowed`."""
    return any(
        ch not in allowed
        and (unicodedata.category(ch) in HIDDEN_CATEGORIES or ch in DRAWN_AS_NOTHING)
        for ch in text
    )


# Combining marks one character may carry: scripts written with them stack two or three
# (Vietnamese, Devanagari); "Z" with 150 accents drew over the rows above it on every screen
# that named its Party (audit of the screen, session 18)
MOST_STACKED_MARKS = 4
ZERO_WIDTH_JOINERS = "\u200c\u200d"


def stacked_marks(text: str, most: int = MOST_STACKED_MARKS) -> bool:
    """Whether `text` has a character with more than `most` combining marks on it: by their
    category, not their combining class, which is 0 for the invisible COMBINING GRAPHEME
    JOINER that restarted the count between piles of four (review, session 18). A zero-width
    joiner or non-joiner, which a watch's name may hold, does not restart it either: like
    the grapheme joiner it draws nothing, and the marks after it pile on the same character."""
    run = 0
    for ch in text:
        if ch in ZERO_WIDTH_JOINERS:
            continue
        run = run + 1 if unicodedata.category(ch) in ("Mn", "Me") else 0
        if run > most:
            return True
    return False


def party_id(value: str) -> str:
    """A Party ID as SPEC section 4 gives it: 1-32 ASCII upper-case letters, digits, '_' or '-'."""
    if not isinstance(value, str) or not _PARTY_ID.fullmatch(value):
        raise InvalidValue(
            f"party_id must be 1-32 ASCII upper-case letters, digits, '-' or '_': "
            f"{shown_code(value)}"
        )
    return value


def party_case_hint(meant: str) -> str:
    """What a typed Party ID in the wrong case is told, `meant` (shown as the caller shows
    IDs) being the registered one: party ids are upper case (SPEC section 4), and a lower-case
    `northpower` was "no such Party", read as a Party the store lacks (audit 60f)."""
    return f"party ids are upper case: did you mean {meant}?"


def role_code(value: str) -> str:
    """A User Role code (IS, ED, OU, or a future one): 1-16 ASCII letters, digits, `_` or `-`,
    upper-cased."""
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise InvalidValue(
            f"role must be a User Role code of 1-16 ASCII letters, digits, _ or -, such as IS, "
            f"ED or OU: {shown_code(value)}"
        )
    return value.upper()


# numbers joined by dots, as every SRV of DUIS 5.4 is (two or three of them; four for one to
# come): the characters alone took `.`, `4..1` and `000000000000` (audit 28a)
_SRV_FORM = re.compile(r"[1-9][0-9]*(?:\.[0-9]+){1,3}", re.ASCII)


def is_srv_form(value: str) -> bool:
    """A Service Reference Variant's form (SAT JSON Lines and watches check no more): 4.1.1."""
    return len(value) <= 12 and bool(_SRV_FORM.fullmatch(value))


def is_response_code(value: str) -> bool:
    """1-16 ASCII letters and digits (SPEC section 4, SAT JSON Lines)."""
    return isinstance(value, str) and bool(_CODE.fullmatch(value))


MAX_ID = 2**63 - 1  # the largest id a BIGINT (PostgreSQL) or an INTEGER (SQLite) holds


def positive_id(value: str) -> int | None:
    """An id as a path or a cursor carries it: ASCII digits, 1..MAX_ID; None for anything
    else, which no row can have (and the driver would overflow on)."""
    if not isinstance(value, str) or not _WHOLE_NUMBER.fullmatch(value):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def whole_number(value: str) -> int:
    """A non-negative whole number written in ASCII digits, nothing else (no sign, '_' or space)."""
    if not isinstance(value, str) or not _WHOLE_NUMBER.fullmatch(value):
        if isinstance(value, str) and value.isascii() and value.isdigit():
            raise InvalidValue(f"too large (at most 19 digits): {value[:40]}")
        raise InvalidValue(f"not a whole number in the digits 0-9: {value[:40]!r}")
    return int(value)


# What a value of white space alone is refused as, by every parameter of the API and the
# command line: here, not in `search`, so that a command that takes a Party or a count but
# builds no search does not import the search's rules (the SRV catalogue and its patterns)
BLANK = "is blank (white space alone)"


def is_blank(value: object) -> bool:
    """White space alone: refused as a value, whichever parameter it is (`srv=%20` was no
    filter, `request_id=%20` a 422; review 47b). An empty value is the parameter not given
    (SPEC section 5's `?device_id=&request_id=&srv=...`), as a form's empty field sends it."""
    return isinstance(value, str) and value != "" and not value.strip()
