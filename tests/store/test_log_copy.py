"""Leaf rows as written by the logs' bulk writer (store.log_copy on PostgreSQL, executemany on
SQLite): every value reads back as given, salted or not, on both engines; a hash or salt of
the wrong length is refused instead of being padded or cut to fit."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from servicetrail.store.log_copy import leaf_copy_data
from servicetrail.store.log_tables import log_leaf
from servicetrail.store.merkle_log import _write_leaves


def leaf_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for family, month in (("sat", "2025-01"), ("sat", "2025-02"), ("access", "2025-02")):
        for index in range(3):
            entry_id = 2**40 + len(rows)  # beyond 32 bits: int8 on the wire
            leaf = hashlib.sha256(f"{family}{month}{index}".encode()).digest()
            salt = None if family == "access" else bytes([index]) * 15 + b"\xff"
            rows.append((family, month, index, entry_id, leaf, salt))
    return rows


def test_leaf_rows_read_back_as_written(engine) -> None:
    rows = leaf_rows()
    with engine.begin() as conn:
        _write_leaves(conn, rows)
    with engine.connect() as conn:
        c = log_leaf.c
        stored = conn.execute(
            select(c.family, c.month, c.leaf_index, c.entry_id, c.leaf_hash, c.salt).order_by(
                c.entry_id
            )
        ).all()
    assert [
        (f, m, i, e, bytes(h), None if s is None else bytes(s)) for f, m, i, e, h, s in stored
    ] == rows


@pytest.mark.parametrize(
    "leaf, salt, refused",
    [(b"\x01" * 31, b"\x02" * 16, "leaf hash of 31"), (b"\x01" * 32, b"\x02" * 17, "salt of 17")],
)
def test_a_value_of_the_wrong_length_is_refused(leaf: bytes, salt: bytes, refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        leaf_copy_data([("sat", "2025-01", 0, 1, leaf, salt)])
