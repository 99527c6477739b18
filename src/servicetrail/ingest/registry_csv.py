"""The registry files: users.csv, devices.csv, responsibilities.csv (SPEC section 4)."""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import IO, cast

from ..domain.ids import (
    ASCII_SPACE,
    EUI64_SHAPE,
    MOST_STACKED_MARKS,
    InvalidValue,
    eui64,
    hidden_characters,
    party_id,
    role_code,
    shown,
    stacked_marks,
)
from ..domain.intervals import IntervalKey, IntervalRow
from ..domain.model import DEVICE_TYPES, Device, Relation, Responsibility, User
from ..domain.times import parse_bound, parse_time
from .csv_records import (
    MOST_LINE_BYTES,
    CsvRecord,
    Lines,
    LongLine,
    RunsOn,
    csv_complaint,
    has_surrogates,
    records_of,
)

_DEVICE_TYPES = {t.upper(): t for t in DEVICE_TYPES}
_RELATIONS = frozenset(r.value for r in Relation)


# A registry's times and Party IDs repeat (intervals start and end on a few thousand days,
# among a few hundred Parties): each distinct text is checked once per run. Invalid ones
# raise, and exceptions are not cached.
@lru_cache(maxsize=1 << 16)
def _time(text: str) -> datetime:
    """An interval's end, `[valid_from, valid_to)`, read as a search reads its bounds: a time
    between two microseconds (the stored grain) rounded up to the next. Cut, a change of
    supplier at `12:00:00.0000005` began at 12:00:00, and a record logged at 12:00:00, before
    it, fell to the new supplier (audit 48f). Past 9999's last microsecond no time follows:
    that one is cut, as it always was, not refused."""
    try:
        return parse_bound(text)
    except InvalidValue:
        return parse_time(text)  # its own words for a text that is no time at all


@lru_cache(maxsize=1 << 12)
def _party(text: str) -> str:
    return party_id(text)


@dataclass(frozen=True)
class RegistryFile:
    columns: tuple[str, ...]
    parse: Callable[[Mapping[str, str]], object]
    # given the header, a parse of one record's values by position: what the loader runs
    parser: Callable[[list[str]], Callable[[list[str]], object]]


# The padding a cell's ID, code or time may come with (a no-break space is none): spaces and
# tabs, as typed or aligned. A line break, vertical tab or form feed gets into a cell only
# inside quotes, and none of those values holds one: trimmed, `"00-DB-...-A0\n"` loaded as
# the Device, when the cell held something else than was meant (review 47e).
_PADDING = " \t"
_NO_PADDING = {
    "\n": "a line break (U+000A)",
    "\r": "a line break (U+000D)",
    "\x0b": "a vertical tab (U+000B)",
    "\x0c": "a form feed (U+000C)",
}


def _field(
    row: Mapping[str, str], name: str, required: bool = True, padding: str = _PADDING
) -> str:
    raw = row.get(name) or ""
    value = raw.strip(padding)
    if value and (value[0] in _NO_PADDING or value[-1] in _NO_PADDING):
        end, odd = ("begins", value[0]) if value[0] in _NO_PADDING else ("ends", value[-1])
        raise InvalidValue(f"{name} {end} with {_NO_PADDING[odd]}: {shown(raw)}")
    if required and not value:
        raise InvalidValue(f"{name} is empty")
    return value


def _ascii(row: Mapping[str, str], name: str) -> str:
    """A code field, refused unless ASCII before it is compared case-blind: 'ſ'.upper() is 'S'."""
    value = _field(row, name)
    if not value.isascii():
        raise InvalidValue(f"{name} must be ASCII: {shown(value)}")
    return value


def parse_user(row: Mapping[str, str]) -> tuple[User, str | None]:
    user = User(
        eui64(_field(row, "user_id")),
        party_id(_field(row, "party_id")),
        role_code(_field(row, "role")),
    )
    # a file without the column leaves each known Party's name as it is, and names a new
    # one by its ID (store.registry.load_users); one with the column must give the name
    if "party_name" not in row:
        return user, None
    # a name may break its line, and is trimmed of any ASCII white space at its ends; one
    # spelling of a look
    name = unicodedata.normalize("NFC", _field(row, "party_name", padding=ASCII_SPACE))
    if name.isspace():  # no-break or em spaces alone: a Party named by nothing one can see
        raise InvalidValue(f"party_name has no visible character: {shown(name)}")
    if len(name) > 200 or hidden_characters(name, allowed=_SPACING) or stacked_marks(name):
        # a quoted name may break its line (issue 12); other control characters (a NUL, ESC,
        # BEL) are no part of a name, and ESC would reach a terminal; a direction override
        # or a zero-width character made one Party's name read as another's
        raise InvalidValue(
            "party_name must be at most 200 characters of printable text (tab and line "
            "breaks aside): no control, direction, zero-width or private-use characters, "
            f"and at most {MOST_STACKED_MARKS} combining marks on a character"
        )
    return user, name


_SPACING = "\t\n\r"


def parse_device(row: Mapping[str, str]) -> Device:
    raw_type = _ascii(row, "device_type")
    device_type = _DEVICE_TYPES.get(raw_type.upper())
    if device_type is None:
        raise InvalidValue(
            f"device_type must be one of {', '.join(DEVICE_TYPES)}: {shown(raw_type)}"
        )
    smets = _ascii(row, "smets").upper().removeprefix("SMETS")
    if smets not in ("1", "2"):
        raise InvalidValue(f"smets must be 1 or 2: {shown(row.get('smets'))}")
    return Device(eui64(_field(row, "device_id")), device_type, int(smets))


# a time's fraction past the microsecond, which the store does not keep
_FINER_THAN_STORED = re.compile(r"[.,][0-9]{7}")


def parse_responsibility(row: Mapping[str, str]) -> Responsibility:
    relation = _ascii(row, "relation").lower()
    if relation not in _RELATIONS:
        raise InvalidValue(f"relation must be supplier or network_operator: {shown(relation)}")
    raw_from = _field(row, "valid_from")
    valid_from = _time(raw_from)
    raw_to = _field(row, "valid_to", required=False)
    valid_to = _time(raw_to) if raw_to else None
    if valid_to is not None and valid_to <= valid_from:
        # `...00.0000002Z` after `...00.0000001Z` was refused in words that read as untrue:
        # both are read to the stored times' grain (review 47e); only then is it said (the
        # same time typed twice was told of a grain it never met; review 47j)
        finer = any(_FINER_THAN_STORED.search(raw) for raw in (raw_from, raw_to))
        grain = " (times are kept to the microsecond)" if valid_to == valid_from and finer else ""
        raise InvalidValue(f"valid_to {raw_to} is not after valid_from{grain}")
    return Responsibility(
        eui64(_field(row, "device_id")),
        _party(_field(row, "party_id")),
        relation,
        valid_from,
        valid_to,
    )


# a record's values parsed: a Device, (User, party name), or an IntervalRow (a Responsibility
# as the store's bulk writer takes it, domain.intervals)
RowParser = Callable[[list[str]], object]


def _by_mapping(parse: Callable[[Mapping[str, str]], object]) -> Callable[[list[str]], RowParser]:
    def parser(header: list[str]) -> RowParser:
        return lambda values: parse(dict(zip(header, values)))

    return parser


def _positions(header: list[str], names: tuple[str, ...]) -> tuple[list[int | None], int]:
    """Where each named column is (the last of that name, as dict(zip(header, values)) has
    it; None if absent), and how many values a record needs to hold all of them."""
    at = {name: i for i, name in enumerate(header)}
    found = [at.get(name) for name in names]
    return found, 1 + max(i for i in found if i is not None)


def _device_parser(header: list[str]) -> RowParser:
    """parse_device on a record's values by position. Values already in their stored form
    (nearly all) are taken as they are; any other record goes through parse_device, which
    normalises it or refuses it with its reason."""
    (i_device, i_type, i_smets), width = _positions(header, DEVICES.columns)
    assert i_device is not None and i_type is not None and i_smets is not None  # read_header
    smets_of = {"1": 1, "2": 2}

    def parse(values: list[str]) -> Device:
        if len(values) >= width:
            device_id, device_type = values[i_device], values[i_type]
            smets = smets_of.get(values[i_smets])
            if smets and device_type in _DEVICE_TYPE_NAMES and EUI64_SHAPE.match(device_id):
                return Device(device_id.upper(), device_type, smets)
        return parse_device(dict(zip(header, values)))

    return parse


def _interval_parser(header: list[str]) -> RowParser:
    """parse_responsibility on a record's values by position, as an IntervalRow. The texts of
    times and Party IDs repeat: each is validated once (by parse_responsibility) and then
    looked up; a record holding any text not seen valid before goes through it whole, so
    its reasons and their order stay that function's."""
    (i_device, i_party, i_relation, i_from, i_to), width = _positions(
        header, RESPONSIBILITIES.columns
    )
    assert i_device is not None and i_party is not None and i_relation is not None
    assert i_from is not None
    times: dict[str, datetime] = {}
    parties: dict[str, str] = {}

    def parse(values: list[str]) -> IntervalRow:
        if len(values) >= width:
            device_id, raw_from = values[i_device], values[i_from]
            raw_to = "" if i_to is None else values[i_to]
            relation = _RELATION_TEXTS.get(values[i_relation])
            party = parties.get(values[i_party])
            start = times.get(raw_from)
            end = times.get(raw_to) if raw_to else None
            if (
                relation
                and party
                and start
                and (end or not raw_to)
                and (end is None or start < end)
                and EUI64_SHAPE.match(device_id)
            ):
                return device_id.upper(), party, relation, start, end
        row = parse_responsibility(dict(zip(header, values)))
        if len(times) > _REMEMBERED or len(parties) > _REMEMBERED:
            times.clear()
            parties.clear()
        parties[values[i_party]] = row.party_id  # both present: parse_responsibility took them
        times[values[i_from]] = row.valid_from
        if row.valid_to is not None and i_to is not None:
            times[values[i_to]] = row.valid_to
        return row.device_id, row.party_id, row.relation, row.valid_from, row.valid_to

    return parse


_DEVICE_TYPE_NAMES = frozenset(DEVICE_TYPES)
_RELATION_TEXTS = {r.value: r.value for r in Relation}
_REMEMBERED = 1 << 16  # distinct times or Party IDs kept per run: a registry has a few thousand

USERS = RegistryFile(
    ("user_id", "party_id", "party_name", "role"), parse_user, _by_mapping(parse_user)
)
DEVICES = RegistryFile(("device_id", "device_type", "smets"), parse_device, _device_parser)
RESPONSIBILITIES = RegistryFile(
    ("device_id", "party_id", "relation", "valid_from", "valid_to"),
    parse_responsibility,
    _interval_parser,
)


class BadHeader(ValueError):
    """A registry file whose first line is not a header naming the columns SPEC section 4 gives
    it."""


def read_header(
    stream: IO[bytes], what: RegistryFile, name: str
) -> tuple[list[str], Iterator[CsvRecord]]:
    """The header's column names (lower case) and the records after it; BadHeader, with one
    clear reason, for a first line that is not a UTF-8 header naming the required columns."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(2)[:2] == b"\x1f\x8b":
        raise BadHeader(f"{name}: is gzip-compressed; load reads plain CSV (gunzip it first)")
    if peek is not None and peek(2)[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadHeader(
            f"{name}: is UTF-16 text (Excel's \"Unicode Text\"); load reads UTF-8 CSV (save it as "
            "\"CSV UTF-8\")"
        )
    if peek is not None and peek(3)[:3] == b"\xef\xbb\xbf":
        # a byte order mark, as Excel and PowerShell write it, taken off before the csv module
        # reads: before a quoted name (`"user_id"`) it made the quotes part of the name
        stream.read(3)
    lines = Lines(stream)
    # strict: a quote out of place (`"a "b" c"`) is refused, not read as some other text
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, [])
    except csv.Error as e:
        raise BadHeader(
            f"{name}: the first line is not a CSV header ({csv_complaint(e)})"
        ) from None
    except RunsOn:
        raise BadHeader(
            f"{name}: the first line is not a CSV header (a quote opened in it is not closed)"
        ) from None
    except LongLine:
        raise BadHeader(
            f"{name}: the first line is not a CSV header (over {MOST_LINE_BYTES} bytes)"
        ) from None
    if not header and not lines.count:  # nothing at all, not even a line end
        raise BadHeader(
            f"{name}: is empty; its first line must be the header ({','.join(what.columns)})"
        )
    header = [h.strip().lower() for h in header]
    if has_surrogates(header):
        raise BadHeader(f"{name}: the header is not UTF-8 text")
    missing = [c for c in what.columns if c not in header and c not in ("party_name", "valid_to")]
    if missing:
        raise BadHeader(
            f"{name}: header must name the columns {','.join(what.columns)}; missing {missing}"
        )
    unknown = [c for c in header if c and c not in what.columns]
    if unknown:  # a misspelt optional column read as absent: `valid_until` opened every interval
        raise BadHeader(
            f"{name}: the header names {', '.join(map(repr, unknown))}, not a column of this "
            f"file (its columns: {','.join(what.columns)})"
        )
    twice = [c for c in what.columns if header.count(c) > 1]
    if twice:  # which of the two would hold the value? (the later one did, silently)
        raise BadHeader(f"{name}: the header names a column more than once: {', '.join(twice)}")
    lines.take()
    return header, records_of(reader, lines)


_FEWEST_SEEN_BYTES, _MOST_SEEN_BYTES = 1 << 12, 1 << 26


@dataclass(slots=True)
class LastWord:
    """What the look-ahead learnt of an interval a file gives on more than one line: the
    lines from `first_known` on (the second that gives it, or a chance meeting's own line)
    were read whole; the file's word for it is what its last line says (`said`: that row,
    compared whole, not by a hash that two rows could share), from the first of the lines at
    the end that all say it (`line`). Whether the first line giving it says the same too is
    for the load to tell, which reads it (`same_throughout`: every line from `first_known`
    on does)."""

    first_known: int
    line: int
    said: IntervalRow
    same_throughout: bool = True

    def heard(self, line: int, said: IntervalRow) -> None:
        if said != self.said:  # another word: it stands from here (the same again: a repeat)
            self.line, self.said, self.same_throughout = line, said, False


def field_left_unnamed(header: list[str], values: list[str]) -> int | None:
    """The first field (counting from 1) holding a value under a column the header leaves
    unnamed, if any: read as absent, a `valid_to` there opened the interval (review 28d).
    A trailing empty column with nothing in it, as Excel writes, holds none."""
    for i, name in enumerate(header):
        if not name and i < len(values) and values[i].strip():
            return i + 1
    return None


def field_past_header(header: list[str], values: list[str]) -> int | None:
    """The first field (counting from 1) past the header's last column that holds a value, if
    any. A trailing comma on each record but not on the header, as some exports write, holds
    none: such a record was refused as having a field more than the header (audit 61e)."""
    for i in range(len(header), len(values)):
        if values[i].strip():
            return i + 1
    return None


def repeated_intervals(
    stream: IO[bytes], name: str, parties: Container[str] | None = None
) -> dict[IntervalKey, LastWord]:
    """A responsibilities file read once ahead of its load: the last word on each interval
    that more than one of its records gives (and of a few that only one does), so that the
    load can skip every other line for it (store.registry.load_interval_rows), whatever
    lies between them and wherever its batches are cut. The word stands from the first line
    that says it with none different after: a line given again word for word is a duplicate,
    and moved the interval to where the copy was, past a line that overlapped it, which was
    then loaded instead (audit 44a). A later line counts only if the
    load would take it on its own: a whole record, valid, of a Party in `parties` (the
    store's). One it refused (`bad party`, an end before its start, an unknown Party) had
    the earlier line skipped, and neither loaded (audit 28a).

    A file of millions of intervals, nearly all given once, is not held in memory: a Bloom
    filter of the keys (two bits a key, half a bit a byte of the file, 64 MB at most) says
    which may have been seen before, and only those are kept, each with the line it was last
    seen on; a key that happens to share another's bits is kept with its own, only, line,
    which supersedes nothing. With one bit a key in at most 16 MB, chance meetings grew with
    the square of the file: 19.2M intervals kept 1.3M keys, 383 MB (audit 24c); now 28 bits
    a key there, and some tens of thousands. Records this pass cannot read are left to the
    load, which rejects them."""
    header, records = read_header(stream, RESPONSIBILITIES, name)
    (i_device, _, i_relation, i_from, _), _ = _positions(header, RESPONSIBILITIES.columns)
    assert i_device is not None and i_relation is not None and i_from is not None
    parse = RESPONSIBILITIES.parser(header)

    def taken_alone(values: list[str]) -> IntervalRow | None:
        if len(values) > len(header) and field_past_header(header, values) is not None:
            return None
        if field_left_unnamed(header, values) is not None:
            return None
        try:
            row = cast(IntervalRow, parse(values))
        except InvalidValue:
            return None
        return row if parties is None or row[1] in parties else None

    # the values that name an interval: a record that stops short of valid_to is an open
    # interval to the loader, and was left out here, so that an earlier word for it was
    # not skipped (review 26d)
    width = 1 + max(i_device, i_relation, i_from)
    size = os.fstat(stream.fileno()).st_size
    wanted = max(_FEWEST_SEEN_BYTES, 1 << (size // 16).bit_length())
    seen = bytearray(min(_MOST_SEEN_BYTES, wanted))
    mask = len(seen) * 8 - 1
    last: dict[IntervalKey, LastWord] = {}
    for line, _, values, _ in records:
        if values is None or len(values) < width:
            continue
        try:
            start = _time(values[i_from].strip(_PADDING))
        except InvalidValue:
            continue
        # stripped as the loader strips (a no-break space: another line to it; review 23f)
        key = (
            values[i_device].strip(_PADDING).upper(),
            values[i_relation].strip(_PADDING).lower(),
            start,
        )
        # two bits, from the two halves of one 64-bit hash (the filter has at most 2**29)
        both = hash(key)
        a, b = both & mask, (both >> 32) & mask
        fa, fb = 1 << (a & 7), 1 << (b & 7)
        a, b = a >> 3, b >> 3
        if seen[a] & fa and seen[b] & fb:
            row = taken_alone(values)  # a repeat is rare: checked whole only then
            if row is not None:
                word = last.get(key)
                if word is None:
                    last[key] = LastWord(line, line, row)
                else:
                    word.heard(line, row)
        else:
            seen[a] |= fa
            seen[b] |= fb
    return last
