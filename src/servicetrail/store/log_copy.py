"""Leaf rows as the stream of a binary `COPY log_leaf ... FROM STDIN (FORMAT BINARY)`.

psycopg's `write_row` adapts each of a row's six values on its own, two of them bytea; a
leaf row is fixed-width but for its family and month, which a batch repeats, so one struct
call a row packs it for less than half the client CPU (BENCHMARKS.md, "The index's and the
logs' cost to ingest (session 8 helper)"). The layout is PostgreSQL's documented binary COPY
format: a signature and header, then per row a field count and each field as its length
(-1: NULL) and bytes, then a trailer.

On SQLite an executemany binds six values a row through the driver, 3 us a leaf of which the
B-trees take a third; one statement for a run of a log's leaves takes the entry ids as a
JSON array and the hashes and salts each as one blob it cuts up, 1.1 us a leaf
(BENCHMARKS.md, session 9).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

COLUMNS = ("family", "month", "leaf_index", "entry_id", "leaf_hash", "salt")
HASH_BYTES = 32
SALT_BYTES = 16
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = struct.pack(">h", -1)
# leaf_index and entry_id (int8), leaf_hash and salt (bytea), each after its length
_SALTED = struct.Struct(f">iqiqi{HASH_BYTES}si{SALT_BYTES}s")
_UNSALTED = struct.Struct(f">iqiqi{HASH_BYTES}si")  # an access-log leaf: salt NULL


def _head(family: str, month: str) -> bytes:
    """A row's field count, family and month (one per log, reused by its rows)."""
    texts = [family.encode(), month.encode()]
    return struct.pack(">h", len(COLUMNS)) + b"".join(
        struct.pack(">i", len(text)) + text for text in texts
    )


class LeafRun(NamedTuple):
    """Leaves of one log with consecutive indexes from `first`, all salted (`salts` given) or
    all not: the bulk writer's unit, one statement on SQLite."""

    family: str
    month: str
    first: int
    entry_ids: Sequence[int]
    leaves: Sequence[bytes]
    salts: Sequence[bytes] | None


def runs_of(rows: Iterable[tuple[Any, ...]]) -> Iterator[LeafRun]:
    """log_leaf rows (family, month, leaf_index, entry_id, leaf_hash, salt or None) as runs,
    a new run wherever the log changes, an index is skipped or a salt's presence changes."""
    run: list[tuple[Any, ...]] = []
    for row in rows:
        if run and not _continues(run[-1], row):
            yield _run_of(run)
            run = []
        run.append(row)
    if run:
        yield _run_of(run)


def _continues(last: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    same_log = row[:2] == last[:2]
    return same_log and row[2] == last[2] + 1 and (row[5] is None) == (last[5] is None)


def _run_of(run: list[tuple[Any, ...]]) -> LeafRun:
    family, month, first = run[0][:3]
    salts = None if run[0][5] is None else [row[5] for row in run]
    return LeafRun(family, month, first, [row[3] for row in run], [row[4] for row in run], salts)


def runs_by_salt(
    family: str, month: str, first: int, leaves: Sequence[tuple[int, bytes, bytes | None]]
) -> Iterator[LeafRun]:
    """One log's leaves (entry id, leaf hash, salt or None) from index `first` on, as runs:
    one, unless salted and unsalted leaves mix."""
    if leaves:
        ids, hashes, salts = map(list, zip(*leaves))
        yield from runs_of_columns(family, month, first, ids, hashes, salts)


def runs_of_columns(
    family: str,
    month: str,
    first: int,
    ids: list[int],
    hashes: list[bytes],
    salts: list[bytes | None],
) -> Iterator[LeafRun]:
    """runs_by_salt for leaves given as columns (entry ids, leaf hashes, salts or None)."""
    if not ids:
        return
    unsalted = salts.count(None)
    if 0 < unsalted < len(salts):
        rows = zip(ids, hashes, salts)
        yield from runs_of((family, month, first + i, *leaf) for i, leaf in enumerate(rows))
        return
    yield LeafRun(family, month, first, ids, hashes, None if unsalted else cast(list[bytes], salts))


def _check(run: LeafRun) -> None:
    """A hash or salt of another length is refused: struct would pad or cut it, and a run's
    blob would shift every later leaf."""
    if len(run.leaves) != len(run.entry_ids) or (
        run.salts is not None and len(run.salts) != len(run.entry_ids)
    ):
        raise ValueError(f"a run of {len(run.entry_ids)} entries with other counts of hashes")
    for values, size, name in (
        (run.leaves, HASH_BYTES, "leaf hash"),
        (run.salts, SALT_BYTES, "salt"),
    ):
        if values is not None and set(map(len, values)) - {size}:
            at = next(i for i, value in enumerate(values) if len(value) != size)
            raise ValueError(f"a {name} of {len(values[at])} bytes for entry {run.entry_ids[at]}")


def leaf_copy_data(runs: Iterable[LeafRun]) -> bytearray:
    """The COPY stream of log_leaf rows, run after run."""
    salted, unsalted = _SALTED.pack, _UNSALTED.pack
    data = bytearray(_SIGNATURE)
    for run in runs:
        _check(run)
        head = _head(run.family, run.month)
        if run.salts is None:
            for index, (entry_id, leaf) in enumerate(zip(run.entry_ids, run.leaves), run.first):
                data += head
                data += unsalted(8, index, 8, entry_id, HASH_BYTES, leaf, -1)
        else:
            rows = zip(run.entry_ids, run.leaves, run.salts)
            for index, (entry_id, leaf, salt) in enumerate(rows, run.first):
                data += head
                data += salted(8, index, 8, entry_id, HASH_BYTES, leaf, SALT_BYTES, salt)
    data += _TRAILER
    return data


# a run's leaf k: index ?3 + k, entry id the array's item k, hash and salt the blobs' slice k
# (a NULL blob: no salts)
SQLITE_RUN = (
    f"INSERT INTO log_leaf ({', '.join(COLUMNS)}) "
    f"SELECT ?1, ?2, ?3 + j.key, j.value, substr(?5, j.key * {HASH_BYTES} + 1, {HASH_BYTES}), "
    f"substr(?6, j.key * {SALT_BYTES} + 1, {SALT_BYTES}) FROM json_each(?4) AS j"
)


def sqlite_parameters(run: LeafRun) -> tuple[Any, ...]:
    """SQLITE_RUN's parameters for a run."""
    _check(run)
    entry_ids = "[" + ",".join(map(str, map(int, run.entry_ids))) + "]"
    salts = None if run.salts is None else b"".join(run.salts)
    return run.family, run.month, run.first, entry_ids, b"".join(run.leaves), salts
