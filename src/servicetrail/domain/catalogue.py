"""The SRV catalogue: every record shows its SRV's title."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .srv_data import SRV_ROWS


@dataclass(frozen=True, slots=True)
class Srv:
    srv: str
    title: str
    eligible_roles: tuple[str, ...]
    critical: bool
    non_device: bool
    target_device_types: tuple[str, ...]


CATALOGUE: dict[str, Srv] = {
    row[0]: Srv(
        row[0],
        row[1],
        tuple(filter(None, row[2].split(";"))),
        row[3],
        row[4],
        tuple(filter(None, row[5].split(";"))),
    )
    for row in SRV_ROWS
}


# the label of an SRV the catalogue lacks, around its number (the report builds it in SQL too)
UNKNOWN_SRV_PREFIX, UNKNOWN_SRV_SUFFIX = "SRV ", " (not in the DUIS 5.x catalogue)"


def srv_title(srv: str) -> str:
    """The title DUIS gives an SRV; an SRV the catalogue lacks still gets a readable label."""
    if not srv:
        return ""
    known = CATALOGUE.get(srv)
    return known.title if known else UNKNOWN_SRV_PREFIX + srv + UNKNOWN_SRV_SUFFIX


def is_non_device(srv: str) -> bool:
    known = CATALOGUE.get(srv)
    return bool(known and known.non_device)


# Every dash an analyst may type (or paste from a DUIS document): hyphen, non-breaking
# hyphen, figure dash, en dash, em dash, horizontal bar, minus sign, small hyphen-minus.
_DASH = re.compile("[\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63]")
_SPACED_DASH = re.compile(r"\s*-\s*")


def _searchable(text: str) -> str:
    """Case, width, dash style and spacing folded away: `Update – Fault` finds `update-fault`."""
    folded = _DASH.sub("-", unicodedata.normalize("NFKC", text)).casefold()
    return _SPACED_DASH.sub("-", " ".join(folded.split()))


_SEARCHABLE_TITLES = tuple((s.srv, _searchable(s.title)) for s in CATALOGUE.values())


_SRV_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)*")
# `\d` as Python reads a str pattern: the decimal digits of every script, 0-9 among them
_NUMBER_IN_ANY_DIGITS = re.compile(r"\d+(\.\d+)*")


def typed_srv(text: str) -> str:
    """An SRV as a person types it, width folded (NFKC: a full-width `８.１.１` is 8.1.1) and
    trimmed: the one reading the search's `srv` and a watch's `srvs` share, for a watch
    refused the number the search had just found records by (audit 67b)."""
    return unicodedata.normalize("NFKC", text).strip()


def number_in_other_digits(text: str) -> str | None:
    """The leading word of an SRV search if it is a number written in another script's
    digits (Arabic-Indic `٤.١.١`), else None. An SRV number is the digits 0-9, as every number
    the server reads is, and NFKC folds full width to them but no other script's digits: such
    a number was looked for as a title's word, and found nothing with no word said."""
    words = _searchable(text).split()
    if words and _NUMBER_IN_ANY_DIGITS.fullmatch(words[0]):
        return None if _SRV_NUMBER.fullmatch(words[0]) else words[0]
    return None


def search_srvs(text: str) -> list[str]:
    """SRV numbers matching a number, a family (`4.1`), a run of a title's words, or else
    every word given, in any order (`firmware read`), after an SRV number or family if one
    leads (`11.2 firmware`, or a row as the screen shows it: `4.1.1 Read Instantaneous
    Import Registers`). The search box's and the API's `srv`."""
    needle = _searchable(text)
    if not needle:
        return []
    if needle in CATALOGUE:
        return [needle]
    as_written = [
        srv for srv, title in _SEARCHABLE_TITLES if needle in title or srv.startswith(needle + ".")
    ]
    if as_written:
        return as_written
    words = needle.replace("-", " ").split()
    number = words.pop(0) if _SRV_NUMBER.fullmatch(words[0]) else None
    return [
        srv
        for srv, title in _SEARCHABLE_TITLES
        if (number is None or srv == number or srv.startswith(number + "."))
        and all(word in title for word in words)
    ]
