"""Leaf rows as written by the logs' bulk writer (store.log_copy: a binary COPY on PostgreSQL, a
statement a run of consecutive leaves on SQLite): every value reads back as given, salted or
not, whatever breaks a run, on both engines; a hash or salt of the wrong length is refused
instead of being padded, cut or shifting the leaves after it."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from servicetrail.store.log_copy import leaf_copy_data, runs_by_salt, runs_of
from servicetrail.store.log_tables import log_leaf
from servicetrail.store.merkle_log import _write_leaves
from tests.store.log_fixtures import logs_made


def leaf_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for family, month in (("sat", "2025-01"), ("sat", "2025-02"), ("access", "2025-02")):
        for index in range(3):
            entry_id = 2**40 + len(rows)  # beyond 32 bits: int8 on the wire
            leaf = hashlib.sha256(f"{family}{month}{index}".encode()).digest()
            salt = None if family == "access" else bytes([index]) * 15 + b"\xff"
            rows.append((family, month, index, entry_id, leaf, salt))
    # runs broken by a gap in the indexes and by a salt's presence changing within one log
    for index, salted in ((5, True), (6, False), (7, True), (9, True)):
        leaf = hashlib.sha256(f"later{index}".encode()).digest()
        rows.append(
            ("sat", "2025-03", index, 2**40 + len(rows), leaf, b"s" * 16 if salted else None)
        )
    return rows


def test_leaf_rows_read_back_as_written(engine) -> None:
    rows = leaf_rows()
    logs_made(engine, "sat", "2025-01", "2025-02", "2025-03")
    logs_made(engine, "access", "2025-02")
    with engine.begin() as conn:
        _write_leaves(conn, list(runs_of(rows)))
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
def test_a_value_of_the_wrong_length_is_refused(
    engine, leaf: bytes, salt: bytes, refused: str
) -> None:
    good = ("sat", "2025-01", 0, 1, b"\x03" * 32, b"\x04" * 16)
    with pytest.raises(ValueError, match=refused):
        leaf_copy_data(runs_of([good, ("sat", "2025-01", 1, 2, leaf, salt)]))
    with pytest.raises(ValueError, match=refused), engine.begin() as conn:
        _write_leaves(conn, list(runs_of([good, ("sat", "2025-01", 1, 2, leaf, salt)])))
    with engine.connect() as conn:
        assert conn.execute(select(log_leaf.c.entry_id)).all() == []


def test_one_logs_leaves_mixing_salted_and_unsalted_are_written_as_given(engine) -> None:
    """A log's leaves from one index on: one run when all are salted or all not, and runs
    that split where a salt's presence changes when they mix."""
    leaves = [
        (100 + i, hashlib.sha256(bytes([i])).digest(), None if i in (2, 3) else bytes([i]) * 16)
        for i in range(6)
    ]
    assert [len(run.entry_ids) for run in runs_by_salt("sat", "2025-04", 7, leaves)] == [2, 2, 2]
    assert len(list(runs_by_salt("sat", "2025-04", 7, leaves[:2]))) == 1
    logs_made(engine, "sat", "2025-04")
    with engine.begin() as conn:
        _write_leaves(conn, list(runs_by_salt("sat", "2025-04", 7, leaves)))
    with engine.connect() as conn:
        c = log_leaf.c
        stored = conn.execute(
            select(c.leaf_index, c.entry_id, c.leaf_hash, c.salt).order_by(c.leaf_index)
        ).all()
    assert [(i, e, bytes(h), None if s is None else bytes(s)) for i, e, h, s in stored] == [
        (7 + k, *leaf) for k, leaf in enumerate(leaves)
    ]
