"""The registry files: users.csv, devices.csv, responsibilities.csv (SPEC section 4)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import IO

from ..domain.ids import InvalidValue, eui64, party_id, role_code
from ..domain.model import DEVICE_TYPES, Device, Relation, Responsibility, User
from ..domain.times import parse_time

_DEVICE_TYPES = {t.upper(): t for t in DEVICE_TYPES}
_RELATIONS = frozenset(r.value for r in Relation)


# A registry's times and Party IDs repeat (intervals start and end on a few thousand days,
# among a few hundred Parties): each distinct text is checked once per run. Invalid ones
# raise, and exceptions are not cached.
@lru_cache(maxsize=1 << 16)
def _time(text: str) -> datetime:
    return parse_time(text)


@lru_cache(maxsize=1 << 12)
def _party(text: str) -> str:
    return party_id(text)


@dataclass(frozen=True)
class RegistryFile:
    columns: tuple[str, ...]
    parse: Callable[[Mapping[str, str]], object]


def _field(row: Mapping[str, str], name: str, required: bool = True) -> str:
    value = (row.get(name) or "").strip()
    if required and not value:
        raise InvalidValue(f"{name} is empty")
    return value


def _ascii(row: Mapping[str, str], name: str) -> str:
    """A code field, refused unless ASCII before it is compared case-blind: 'ſ'.upper() is 'S'."""
    value = _field(row, name)
    if not value.isascii():
        raise InvalidValue(f"{name} must be ASCII: {value!r}")
    return value


def parse_user(row: Mapping[str, str]) -> tuple[User, str]:
    user = User(
        eui64(_field(row, "user_id")),
        party_id(_field(row, "party_id")),
        role_code(_field(row, "role")),
    )
    name = _field(row, "party_name", required=False) or user.party_id
    if len(name) > 200 or "\x00" in name:
        raise InvalidValue("party_name must be at most 200 characters of text")
    return user, name


def parse_device(row: Mapping[str, str]) -> Device:
    raw_type = _ascii(row, "device_type")
    device_type = _DEVICE_TYPES.get(raw_type.upper())
    if device_type is None:
        raise InvalidValue(f"device_type must be one of {', '.join(DEVICE_TYPES)}: {raw_type!r}")
    smets = _ascii(row, "smets").upper().removeprefix("SMETS")
    if smets not in ("1", "2"):
        raise InvalidValue(f"smets must be 1 or 2: {row.get('smets')!r}")
    return Device(eui64(_field(row, "device_id")), device_type, int(smets))


def parse_responsibility(row: Mapping[str, str]) -> Responsibility:
    relation = _ascii(row, "relation").lower()
    if relation not in _RELATIONS:
        raise InvalidValue(f"relation must be supplier or network_operator: {relation!r}")
    valid_from = _time(_field(row, "valid_from"))
    raw_to = _field(row, "valid_to", required=False)
    valid_to = _time(raw_to) if raw_to else None
    if valid_to is not None and valid_to <= valid_from:
        raise InvalidValue(f"valid_to {raw_to} is not after valid_from")
    return Responsibility(
        eui64(_field(row, "device_id")),
        _party(_field(row, "party_id")),
        relation,
        valid_from,
        valid_to,
    )


USERS = RegistryFile(("user_id", "party_id", "party_name", "role"), parse_user)
DEVICES = RegistryFile(("device_id", "device_type", "smets"), parse_device)
RESPONSIBILITIES = RegistryFile(
    ("device_id", "party_id", "relation", "valid_from", "valid_to"), parse_responsibility
)


class BadHeader(ValueError):
    """A registry file whose first line is not a header naming the columns SPEC section 4 gives
    it."""


@dataclass(frozen=True, slots=True)
class CsvRecord:
    """One record of a registry file: the line it starts on, its bytes as they came (several
    lines when a quoted field holds a line break), and its fields, or why it has none."""

    line: int
    raw: bytes
    values: list[str] | None
    problem: str = ""


class _Lines:
    """The file's lines as text for the csv module, keeping the bytes and the count of the
    lines it has handed out, so that every record can be rejected as it came, with its line.

    Bytes that are not UTF-8 are carried through as surrogates (a record holding any is
    refused), so one bad line never stops the file being read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0
        self.taken: list[bytes] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self._stream:
            self.count += 1
            self.taken.append(raw)
            yield raw.decode("utf-8", "surrogateescape")

    def take(self) -> bytes:
        taken, self.taken = self.taken, []
        return taken[0] if len(taken) == 1 else b"".join(taken)


def _has_surrogates(values: list[str]) -> bool:
    joined = "".join(values)  # one C call answers for the common all-ASCII record
    return not joined.isascii() and any("\udc80" <= ch <= "\udcff" for ch in joined)


def read_header(
    stream: IO[bytes], what: RegistryFile, name: str
) -> tuple[list[str], Iterator[CsvRecord]]:
    """The header's column names (lower case) and the records after it; BadHeader, with one
    clear reason, for a first line that is not a UTF-8 header naming the required columns."""
    lines = _Lines(stream)
    reader = csv.reader(lines)
    try:
        header = next(reader, [])
    except csv.Error as e:
        raise BadHeader(f"{name}: the first line is not a CSV header ({e})") from None
    header = [h.strip().lower() for h in header]
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a byte order mark, as spreadsheets write it
    if _has_surrogates(header):
        raise BadHeader(f"{name}: the header is not UTF-8 text")
    missing = [c for c in what.columns if c not in header and c not in ("party_name", "valid_to")]
    if missing:
        raise BadHeader(
            f"{name}: header must name the columns {','.join(what.columns)}; missing {missing}"
        )
    lines.take()
    return header, _records(reader, lines)


def _records(reader: Iterator[list[str]], lines: _Lines) -> Iterator[CsvRecord]:
    while True:
        start = lines.count + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # e.g. a field over the csv module's 131,072 characters
            yield CsvRecord(start, lines.take(), None, f"not a CSV record: {e}")
            continue
        raw = lines.take()
        if not raw.strip():
            continue  # a blank line: nothing to load or reject
        if _has_surrogates(values):
            yield CsvRecord(start, raw, None, "not UTF-8 text")
            continue
        yield CsvRecord(start, raw, values)
