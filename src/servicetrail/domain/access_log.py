"""Who looked (SPEC section 8): an access-log entry, what it counts, and its bytes as a leaf of
the access family of Merkle logs. Pure: the store keeps entries, this says what they hold."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .times import fixed_time

INTERFACES = ("api", "web", "cli", "webhook")
ACTIONS = (
    "search",
    "record",
    "why",
    "triggers",
    "proof",
    "report",
    "watch_events",
    "stream",
    "deliver",
)
MAX_DEVICE_IDS = 100
# Filters are kept as asked, but a hostile client must not make one entry large: a few
# dozen parameters of a few hundred characters each bound an entry to about 16 KB.
MAX_FILTERS = 24
MAX_FILTER_NAME = 64
MAX_FILTER_VALUE = 512
# characters of names and values in all of an entry's filters: 24 parameters the screen
# ignores, of 500 characters each, made every entry 11.7 KB, and one session grew the store
# by 6 GB an hour (audit 27b). The read's own come first (web.params.asked), then the rest.
MAX_FILTERS_TEXT = 2048
MAX_ACTOR = 64
MP141 = "mp141"


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads, and through what: the Party (None for an auditor or a system reader), the
    account's name (or "cli", "webhook") and the interface."""

    party_id: str | None
    actor: str
    interface: str

    def __post_init__(self) -> None:
        if self.interface not in INTERFACES:
            raise ValueError(f"unknown interface {self.interface!r}")


@dataclass(slots=True)
class Tally:
    """What one read returned: every record, the MP141 ones, and their distinct Devices
    (the first MAX_DEVICE_IDS met, sorted when the entry is made)."""

    records_returned: int = 0
    mp141_records_returned: int = 0
    device_ids: dict[str, None] = field(default_factory=dict)  # ordered set

    def count_own(self, records: int) -> None:
        """Records of the viewer's own traffic, known by their number only (a report)."""
        self.records_returned += records

    def count(self, items: Iterable[Mapping[str, Any]]) -> None:
        for found in items:
            self.records_returned += 1
            if found.get("access") == MP141:
                self.mp141_records_returned += 1
                device = found.get("device_id") or ""
                if device and len(self.device_ids) < MAX_DEVICE_IDS:
                    self.device_ids[device] = None


@dataclass(frozen=True, slots=True)
class AccessEntry:
    id: int
    at: datetime | str  # str: a stored time that is not one (see store.access_log._entry)
    party_id: str | None
    actor: str
    interface: str
    action: str
    filters: dict[str, Any]
    records_returned: int
    mp141_records_returned: int
    device_ids: tuple[str, ...]


def entry_time(value: datetime | str) -> str:
    """§7's time form, always with microseconds: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC); a
    stored time that is not one as it was stored."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("access-log times are UTC-aware")
    # isoformat, not strftime: every logged read formats its entry's time twice (its leaf and
    # its month), and strftime took 5.4 us a call against 1.8 (timeit, session 57)
    return fixed_time(value)


def entry_json(entry: AccessEntry) -> dict[str, Any]:
    """The entry as the API and the CLI show it, and as its leaf commits to it."""
    return {
        "id": entry.id,
        "at": entry_time(entry.at),
        "party_id": entry.party_id,
        "actor": entry.actor,
        "interface": entry.interface,
        "action": entry.action,
        "filters": entry.filters,
        "records_returned": entry.records_returned,
        "mp141_records_returned": entry.mp141_records_returned,
        # a str: stored text that is not a list (store.access_log._entry), shown as stored
        "device_ids": (
            entry.device_ids if isinstance(entry.device_ids, str) else list(entry.device_ids)
        ),
    }


def canonical_json(value: Any) -> str:
    """§7's encoding: keys sorted, no whitespace, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_data(entry: AccessEntry) -> bytes:
    """The entry's leaf in its monthly access log (origin `<prefix>/access/<YYYY-MM>`)."""
    return canonical_json(entry_json(entry)).encode("utf-8")


def log_month(entry: AccessEntry) -> str:
    """The `YYYY-MM` of the access log the entry belongs to (the month of `at`, UTC)."""
    return entry_time(entry.at)[:7]


def _safe_text(value: str, limit: int) -> str:
    """Text that encodes as UTF-8 and fits: lone surrogates (a command line can carry
    them) become U+FFFD, NUL (which PostgreSQL text refuses) is dropped, and the text is
    cut to `limit` characters, normalised first so a cut never splits what NFC joins."""
    return _cleaned(value)[:limit]


def _cleaned(value: str) -> str:
    cleaned = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return unicodedata.normalize("NFC", cleaned)


CUT = "\u2026"  # where a filter's value too long to keep lost its middle


def _kept_value(value: str, most: int = MAX_FILTER_VALUE) -> str:
    """A filter's value as the readers read it, bounded: white space around it taken off (the
    search ignores it), and a value still too long kept by its two ends. Cut at its start,
    520 spaces before a Device ID kept the spaces alone, and the entry named no Device while
    the search found its records (audit 24b)."""
    text = _cleaned(value).strip()
    if len(text) <= most:
        return text
    if most <= len(CUT):
        return CUT
    head = (most - len(CUT)) // 2
    return text[:head] + CUT + text[len(text) - (most - len(CUT) - head) :]


def bounded_filters(asked: Mapping[str, Any]) -> dict[str, Any]:
    """The filters as asked, bounded: at most MAX_FILTERS, names and text values cut down,
    MAX_FILTERS_TEXT characters in all. Numbers and booleans stay as they are; anything else
    is kept as its text."""
    kept: dict[str, Any] = {}
    room = MAX_FILTERS_TEXT
    for name, value in asked.items():
        if len(kept) >= MAX_FILTERS or room <= 0:
            break  # the rest are not kept
        if value is None:
            continue
        key = _safe_text(str(name), min(MAX_FILTER_NAME, room))
        shown: Any
        if isinstance(value, bool | int) and abs(int(value)) < 2**63:
            shown, size = value, len(str(value))
        else:
            shown = _kept_value(str(value), min(MAX_FILTER_VALUE, room - len(key)))
            size = len(shown)
        if len(key) + size > room:
            break
        kept[key] = shown
        room -= len(key) + size
    return kept


def bounded_actor(actor: str) -> str:
    return _safe_text(actor, MAX_ACTOR)
