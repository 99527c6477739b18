"""Lines of a responsibilities file that wait for its end, on disk rather than in memory.

A line that overlaps what the store holds (a change of supplier's new start before the old
supplier's end has moved) waits with every later line of its Device and relation, to be
judged with them once the file is in (ingest.load, store.registry). Held in memory, at most
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

# Lines of one Device and relation judged together at the file's end, at most: they are one
# batch, held in memory. A Device has a handful of suppliers in its life; a group larger than
# this is a file built to exhaust the loader, and is refused whole (never half applied).
MOST_IN_A_GROUP = 10_000


class WaitingLines:
    def __init__(self) -> None:
        self._db: sqlite3.Connection | None = None
        # which groups wait, by hash: a set of (Device, relation) tuples kept each Device's
        # text alive too, about 170 bytes a group; this takes about 80. Two groups with one
        # hash (the hash of str is keyed per process: 1 in 2**64 a pair, not something a file
        # can aim at) would only make the second group's later lines wait for the file's end
        # too, where they are judged as in one batch.
        self._groups: set[int] = set()
        self._unwritten: list[tuple[object, ...]] = []  # written a thousand at a time
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    def holds(self, row: IntervalRow, origin: Origin) -> bool:
        """Whether the row waits with an earlier one of its Device and relation (it is kept
        then): so that they are judged together, as in one batch, whatever the batch size.
        With only the overlapping line waiting, a line after it took the gap first in batches
        of two, and the file gave the Device another supplier than in one batch (audit 20a)."""
        if hash((row[0], row[2])) not in self._groups:
            return False
        self.add(row, origin)
        return True

    def add(self, row: IntervalRow, origin: Origin) -> None:
        device_id, party_id, relation, start, end = row
        self._groups.add(hash((device_id, relation)))
        if self._db is None:
            # "": a private database on disk, deleted when closed
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.execute(
                "CREATE TABLE waiting (device_id TEXT, relation TEXT, line INTEGER, "
                "party_id TEXT, valid_from TEXT, valid_to TEXT, raw BLOB)"
            )
        line, raw = origin
        self._unwritten.append(
            (device_id, relation, line, party_id, start.isoformat(), _text(end), raw)
        )
        if len(self._unwritten) >= 1000:
            self._write()
        self.count += 1

    def _write(self) -> None:
        assert self._db is not None
        self._db.executemany("INSERT INTO waiting VALUES (?, ?, ?, ?, ?, ?, ?)", self._unwritten)
        self._unwritten.clear()

    def groups(self) -> Iterator[tuple[list[Waiting], bool]]:
        """Each group's lines in the file's order, the groups in order of Device and relation,
        with whether they are to be judged: a group of more than MOST_IN_A_GROUP lines comes
        in parts of that many, not to be."""
        if self._db is None:
            return
        self._write()
        too_large = set(
            self._db.execute(
                "SELECT device_id, relation FROM waiting GROUP BY device_id, relation "
                "HAVING count(*) > ?",
                (MOST_IN_A_GROUP,),
            ).fetchall()
        )
        group: list[Waiting] = []
        judged = True
        for device_id, relation, line, party_id, start, end, raw in self._db.execute(
            "SELECT device_id, relation, line, party_id, valid_from, valid_to, raw FROM waiting "
            "ORDER BY device_id, relation, line"
        ):
            if group and (
                (group[0][0][0], group[0][0][2]) != (device_id, relation)
                or len(group) == MOST_IN_A_GROUP
            ):
                yield group, judged
                group = []
            judged = (device_id, relation) not in too_large
            row = (device_id, party_id, relation, datetime.fromisoformat(start), _time(end))
            group.append((row, (line, raw)))
        if group:
            yield group, judged

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _text(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
