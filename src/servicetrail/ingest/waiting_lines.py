"""Lines of a responsibilities file that wait for its end, on disk rather than in memory.

A line that overlaps what the store holds (a change of supplier's new start before the old
supplier's end has moved) waits with every later line of its Device and relation, to be
judged with them once the file is in (ingest.registry_load, store.registry). Held in memory, at most
100,000 could wait: past them a line was refused at once, and where the other half of its
change of supplier had been applied the Device was left with a gap (audit 38e). They wait in
a private temporary SQLite database instead (deleted when closed), and come back a Device and
relation at a time, so the file's end judges them in batches of whole groups: a group's
lines are applied together, in one transaction, whatever else waits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime

from ..store.registry import IntervalRow

Origin = tuple[int, bytes]  # the line's number and its raw record, for the reject file
Waiting = tuple[IntervalRow, Origin]

# Lines of one Device and relation judged together at the file's end, at most (whole groups
# share a batch up to the batch's size): held in memory, in one transaction, about 2 KB a line
# all told (300 MB at 100,000: bench/one_device.py). A Device has a handful of suppliers in its
# life; a larger group (a file built to exhaust the loader) is judged this many lines at a
# time, in the file's order, each part committed before the next is judged (so a change of
# supplier cut by a part's end shows a gap between the two commits). 10,000 while a Device's
# intervals were scanned for every line (domain.held_intervals: 20,000 lines took 40-80 s).
MOST_IN_A_GROUP = 100_000

# Which groups wait, as a Bloom filter of this many bytes: a set of their hashes grew by 76 MB
# a million groups, and the loader passed 300 MB at a million Devices changing supplier
# (audit 39a). A false "waits" (about 1 in a million lines at a million groups, 1 in 200 at
# ten million) only makes a group's later lines wait for the file's end too, where they are
# judged as in one batch: the registry is the same (a file's lines judged in any cut of
# batches are), they are applied later.
_FILTER_BYTES = 1 << 24
_FILTER_BITS = _FILTER_BYTES * 8
_PROBES = 4


class CannotWait(OSError):
    """The temporary database of the waiting lines cannot be written (its folder is full)."""


class WaitingLines:
    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        self._groups = bytearray()  # the filter, made with the first line that waits
        self._unwritten: list[tuple[object, ...]] = []  # written a thousand at a time
        self.count = 0
        self.judged = 0  # of them, by the file's end (ingest.registry_load)

    def __bool__(self) -> bool:
        return self.count > 0

    def holds(self, row: IntervalRow, origin: Origin) -> bool:
        """Whether the row waits with an earlier one of its Device and relation (it is kept
        then): so that they are judged together, as in one batch, whatever the batch size.
        With only the overlapping line waiting, a line after it took the gap first in batches
        of two, and the file gave the Device another supplier than in one batch (audit 20a)."""
        if not self._groups or not all(
            self._groups[bit >> 3] & (1 << (bit & 7)) for bit in _bits(row)
        ):
            return False
        self.add(row, origin)
        return True

    def add(self, row: IntervalRow, origin: Origin) -> None:
        device_id, party_id, relation, start, end = row
        if not self._groups:
            self._groups = bytearray(_FILTER_BYTES)
        for bit in _bits(row):
            self._groups[bit >> 3] |= 1 << (bit & 7)
        line, raw = origin
        self._unwritten.append(
            (device_id, relation, line, party_id, start.isoformat(), _text(end), raw)
        )
        self.count += 1
        if len(self._unwritten) >= 1000:
            self._write()

    def _write(self) -> None:
        try:
            if self._db is None:
                # "": a private database on disk (SQLITE_TMPDIR, else TMPDIR, else /var/tmp
                # or /tmp), deleted when closed
                self._db = sqlite3.connect("", isolation_level=None)
                self._db.execute("PRAGMA journal_mode = OFF")
                self._db.execute("PRAGMA synchronous = OFF")
                self._db.execute(
                    "CREATE TABLE waiting (device_id TEXT, relation TEXT, line INTEGER, "
                    "party_id TEXT, valid_from TEXT, valid_to TEXT, raw BLOB)"
                )
            self._db.executemany(
                "INSERT INTO waiting VALUES (?, ?, ?, ?, ?, ?, ?)", self._unwritten
            )
        except sqlite3.Error as e:
            if _the_folders(e):
                raise _cannot_wait(e) from None
            raise  # any other error of SQLite's is a bug
        self._unwritten.clear()

    def groups(self) -> Iterator[list[Waiting]]:
        """Each group's lines in the file's order, the groups in order of Device and relation;
        a group of more than MOST_IN_A_GROUP lines in parts of that many."""
        if not self.count:
            return
        self._write()
        assert self._db is not None
        group: list[Waiting] = []
        try:
            for device_id, relation, line, party_id, start, end, raw in self._db.execute(
                "SELECT device_id, relation, line, party_id, valid_from, valid_to, raw "
                "FROM waiting ORDER BY device_id, relation, line"
            ):
                if group and (
                    (group[0][0][0], group[0][0][2]) != (device_id, relation)
                    or len(group) == MOST_IN_A_GROUP
                ):
                    yield group
                    group = []
                row = (device_id, party_id, relation, datetime.fromisoformat(start), _time(end))
                group.append((row, (line, raw)))
        except sqlite3.Error as e:  # its sort spills to a temporary file of its own
            if _the_folders(e):
                raise _cannot_wait(e) from None
            raise
        if group:
            yield group

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _bits(row: IntervalRow) -> Iterator[int]:
    """The filter's bits for the row's Device and relation (double hashing of the hash of str,
    which is keyed per process: not something a file can aim at)."""
    mixed = hash((row[0], row[2])) & 0xFFFF_FFFF_FFFF_FFFF
    first, step = mixed % _FILTER_BITS, (mixed >> 32) | 1
    return ((first + i * step) % _FILTER_BITS for i in range(_PROBES))


def _the_folders(error: sqlite3.Error) -> bool:
    """Whether the error is the temporary folder's: full, failing or not to be opened."""
    return str(getattr(error, "sqlite_errorname", "")).startswith(_THE_FOLDERS)


def _cannot_wait(error: sqlite3.Error) -> CannotWait:
    return CannotWait(
        f"cannot keep the lines that wait for the file's end ({error}): they go to a "
        "temporary file in SQLITE_TMPDIR, else TMPDIR, else /var/tmp or /tmp, about 2.5 times "
        "their size; point one of those at a folder with room"
    )


_THE_FOLDERS = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN")


def _text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
