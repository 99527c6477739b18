"""Leaf rows as the stream of a binary `COPY log_leaf ... FROM STDIN (FORMAT BINARY)`.

psycopg's `write_row` adapts each of a row's six values on its own, two of them bytea; a
leaf row is fixed-width but for its family and month, which a batch repeats, so one struct
call a row packs it for less than half the client CPU (BENCHMARKS.md, "The index's and the
logs' cost to ingest (session 8 helper)"). The layout is PostgreSQL's documented binary COPY
format: a signature and header, then per row a field count and each field as its length
(-1: NULL) and bytes, then a trailer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
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


def leaf_copy_data(rows: Iterable[tuple[Any, ...]]) -> bytearray:
    """The COPY stream of log_leaf rows (family, month, leaf_index, entry_id, leaf_hash, salt
    or None). A hash or salt of another length is refused: struct would pad or cut it."""
    heads: dict[tuple[str, str], bytes] = {}
    salted, unsalted = _SALTED.pack, _UNSALTED.pack
    data = bytearray(_SIGNATURE)
    for family, month, index, entry_id, leaf, salt in rows:
        head = heads.get((family, month))
        if head is None:
            head = heads[(family, month)] = _head(family, month)
        if len(leaf) != HASH_BYTES:
            raise ValueError(f"a leaf hash of {len(leaf)} bytes for entry {entry_id}")
        data += head
        if salt is None:
            data += unsalted(8, index, 8, entry_id, HASH_BYTES, leaf, -1)
        elif len(salt) == SALT_BYTES:
            data += salted(8, index, 8, entry_id, HASH_BYTES, leaf, SALT_BYTES, salt)
        else:
            raise ValueError(f"a salt of {len(salt)} bytes for entry {entry_id}")
    data += _TRAILER
    return data
