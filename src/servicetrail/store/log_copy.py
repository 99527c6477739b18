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
from collections.abc import Iterable, Iterator
from typing import Any

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


def _check(entry_id: int, leaf: bytes, salt: bytes | None) -> None:
    """A hash or salt of another length is refused: struct would pad or cut it, and a run's
    blob would shift every later leaf."""
    if len(leaf) != HASH_BYTES:
        raise ValueError(f"a leaf hash of {len(leaf)} bytes for entry {entry_id}")
    if salt is not None and len(salt) != SALT_BYTES:
        raise ValueError(f"a salt of {len(salt)} bytes for entry {entry_id}")


def leaf_copy_data(rows: Iterable[tuple[Any, ...]]) -> bytearray:
    """The COPY stream of log_leaf rows (family, month, leaf_index, entry_id, leaf_hash, salt
    or None)."""
    heads: dict[tuple[str, str], bytes] = {}
    salted, unsalted = _SALTED.pack, _UNSALTED.pack
    data = bytearray(_SIGNATURE)
    for family, month, index, entry_id, leaf, salt in rows:
        head = heads.get((family, month))
        if head is None:
            head = heads[(family, month)] = _head(family, month)
        _check(entry_id, leaf, salt)
        data += head
        if salt is None:
            data += unsalted(8, index, 8, entry_id, HASH_BYTES, leaf, -1)
        else:
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


def sqlite_runs(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The parameters of SQLITE_RUN for log_leaf rows, a statement a run: rows of one log
    with consecutive leaf indexes, all salted or all not."""
    run: list[tuple[Any, ...]] = []
    for row in rows:
        _check(row[3], row[4], row[5])
        if run and not _continues(run[-1], row):
            yield _run_parameters(run)
            run = []
        run.append(row)
    if run:
        yield _run_parameters(run)


def _continues(last: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    same_log = row[:2] == last[:2]
    return same_log and row[2] == last[2] + 1 and (row[5] is None) == (last[5] is None)


def _run_parameters(run: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    family, month, first = run[0][:3]
    entry_ids = "[" + ",".join(str(int(row[3])) for row in run) + "]"
    salts = None if run[0][5] is None else b"".join(row[5] for row in run)
    return family, month, first, entry_ids, b"".join(row[4] for row in run), salts
