"""Reading the verifiable logs (SPEC section 7): the stored hashes a proof or a root is
folded from (`StoredTree`), the signed checkpoints, the verifier keys that signed them, and
where a leaf sits. store.merkle_log writes what this reads.

Tiles: the roots of complete aligned subtrees at levels 4, 8, 12 ... (log_node), so every
subtree hash a proof or root needs folds from at most 15 stored hashes of one level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection, Engine

from ..domain import merkle
from .compiled_statements import driver_in_transaction, fetch_all
from .log_tables import log_checkpoint, log_leaf, log_verifier_key

# levels between stored tiles: each tile folds 2**4 hashes of the level below, so a proof
# reads at most 15 hashes a stored level (at 10M leaves: 6 levels, under 100 rows), and the
# tiles add 1/15 to the leaves' rows
TILE = 4

# Every span a proof or root needs, as arrays (leaves, then tiles): each span one primary-key
# range scan. OFFSET 0 keeps each lateral subquery a subquery run once a span: flattened, the
# planner hash-joined the spans with every tile of the month (48 ms at 10M, not 0.07)
_POSTGRES_SPANS = (
    "SELECT 0::int2, l.leaf_index, l.leaf_hash "
    "FROM unnest(%(leaf_from)s::int8[], %(leaf_to)s::int8[]) AS s(low, high) "
    "CROSS JOIN LATERAL (SELECT leaf_index, leaf_hash FROM log_leaf "
    "WHERE family = %(family)s AND month = %(month)s "
    "AND leaf_index >= s.low AND leaf_index < s.high OFFSET 0) AS l "
    "UNION ALL "
    "SELECT s.level, n.node_index, n.hash "
    "FROM unnest(%(levels)s::int2[], %(node_from)s::int8[], %(node_to)s::int8[]) "
    "AS s(level, low, high) "
    "CROSS JOIN LATERAL (SELECT node_index, hash FROM log_node "
    "WHERE family = %(family)s AND month = %(month)s AND level = s.level "
    "AND node_index >= s.low AND node_index < s.high OFFSET 0) AS n"
)


class StoredTree:
    """The hashes of one stored log: leaves and tiles, fetched in as few reads as a proof
    needs, and the subtree hashes folded from them."""

    def __init__(self, conn: Connection, family: str, month: str) -> None:
        self.conn, self.family, self.month = conn, family, month
        self._known: dict[tuple[int, int], bytes] = {}

    def fetch(self, level: int, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        """The stored hashes of one stored level (0: leaves) over [start, end) spans, in order."""
        self.fetch_levels({level: list(spans)})
        return [self._known[(level, i)] for a, b in spans for i in range(a, b)]

    def fetch_levels(self, spans: dict[int, list[tuple[int, int]]]) -> None:
        """Read the stored hashes of several levels' spans in one statement: one primary-key
        range scan a span (an OR of the ranges let PostgreSQL's generic plan filter the whole
        log). Written as SQL text: building the expression with SQLAlchemy cost more than
        running it."""
        asked = [(level, a, b) for level, pairs in spans.items() for a, b in pairs if a < b]
        if asked:
            if self.conn.dialect.name == "postgresql":
                rows = self._postgres_spans(asked)
            else:
                rows = self._sqlite_spans(asked)
            self._known.update(((int(level), int(i)), bytes(h)) for level, i, h in rows)
        for level, wanted in spans.items():
            for a, b in wanted:
                missing = next((i for i in range(a, b) if (level, i) not in self._known), None)
                if missing is not None:
                    raise LogDamaged(
                        f"log {self.family}/{self.month} lacks stored hashes at level {level} "
                        f"(first missing index {missing})"
                    )

    def _postgres_spans(self, wanted: list[tuple[int, int, int]]) -> list[Any]:
        """The spans as arrays of one statement whose text never changes, through the driver:
        a UNION ALL of one branch a span had a different text (and 60-70 parameters) for
        nearly every proof, which psycopg parsed afresh each time (its cache stops at 50
        parameters) and PostgreSQL prepared again; SQLAlchemy's row handling of a proof's
        ~100 hashes cost more than reading them (profiled at 10M)."""
        leaves = [(a, b) for level, a, b in wanted if level == 0]
        nodes = [(level, a, b) for level, a, b in wanted if level != 0]
        cursor = driver_in_transaction(self.conn).execute(
            _POSTGRES_SPANS,
            {
                "family": self.family,
                "month": self.month,
                "leaf_from": [a for a, _ in leaves],
                "leaf_to": [b for _, b in leaves],
                "levels": [level for level, _, _ in nodes],
                "node_from": [a for _, a, _ in nodes],
                "node_to": [b for _, _, b in nodes],
            },
        )
        return cursor.fetchall()

    def _sqlite_spans(self, wanted: list[tuple[int, int, int]]) -> Any:
        leaf_range = (
            "SELECT 0, leaf_index, leaf_hash FROM log_leaf WHERE family = ? "
            "AND month = ? AND leaf_index >= ? AND leaf_index < ?"
        )
        node_range = (
            "SELECT level, node_index, hash FROM log_node WHERE family = ? "
            "AND month = ? AND level = ? AND node_index >= ? AND node_index < ?"
        )
        parts: list[str] = []
        values: list[Any] = []
        for level, a, b in wanted:
            if level == 0:
                parts.append(leaf_range)
                values += [self.family, self.month, a, b]
            else:
                parts.append(node_range)
                values += [self.family, self.month, level, a, b]
        return self.conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(values))

    def hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """MTH of each leaf range (aligned, as proofs' ranges are)."""
        spans: dict[int, list[tuple[int, int]]] = {}
        for level, index in merkle.needed_perfect(ranges):
            stored = level - level % TILE
            shift = level - stored
            spans.setdefault(stored, []).append((index << shift, (index + 1) << shift))
        self.fetch_levels({stored: _merged(wanted) for stored, wanted in spans.items()})

        def perfect(level: int, index: int) -> bytes:
            stored = level - level % TILE
            shift = level - stored
            return merkle.perfect_from(
                [self._known[(stored, i)] for i in range(index << shift, (index + 1) << shift)]
            )

        return [merkle.range_hash(lo, hi, perfect) for lo, hi in ranges]

    def root(self, size: int) -> bytes:
        return self.hashes([(0, size)])[0] if size else merkle.EMPTY_ROOT

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.hashes(merkle.inclusion_ranges(index, size))

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return self.hashes(merkle.consistency_ranges(old_size, new_size))


class LogDamaged(RuntimeError):
    """A log's stored hashes are not all there (an intruder, or a broken store)."""


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


@dataclass(frozen=True)
class StoredCheckpoint:
    origin: str
    family: str
    month: str
    size: int
    root: bytes
    note: str
    verifier_key: str


_CHECKPOINT_COLUMNS = (
    log_checkpoint.c.origin,
    log_checkpoint.c.family,
    log_checkpoint.c.month,
    log_checkpoint.c.tree_size,
    log_checkpoint.c.root_hash,
    log_checkpoint.c.note,
    log_checkpoint.c.verifier_key,
)


def _checkpoint(row: Any) -> StoredCheckpoint:
    origin, family, month, size, root, note, key = row  # in _CHECKPOINT_COLUMNS' order
    return StoredCheckpoint(origin, family, month, int(size), bytes(root), note, key)


# built once, run through compiled_statements: a seal asks it of every log, and building and
# keying the statement each time cost more than running it (session 63)
_LATEST_CHECKPOINT = (
    select(*_CHECKPOINT_COLUMNS)
    .where(
        log_checkpoint.c.family == bindparam("family"),
        log_checkpoint.c.month == bindparam("month"),
    )
    .order_by(log_checkpoint.c.tree_size.desc())
    .limit(1)
)


def latest_checkpoint(conn: Connection, family: str, month: str) -> StoredCheckpoint | None:
    found = fetch_all(conn, _LATEST_CHECKPOINT, {"family": family, "month": month})
    return _checkpoint(found[0]) if found else None


def checkpoint_at(conn: Connection, origin: str, size: int) -> StoredCheckpoint | None:
    row = conn.execute(
        select(*_CHECKPOINT_COLUMNS).where(
            log_checkpoint.c.origin == origin, log_checkpoint.c.tree_size == size
        )
    ).first()
    return _checkpoint(row) if row else None


def all_checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    rows = conn.execute(
        select(*_CHECKPOINT_COLUMNS).order_by(log_checkpoint.c.origin, log_checkpoint.c.tree_size)
    ).all()
    return [_checkpoint(row) for row in rows]


def latest_checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    """Each log's newest checkpoint (a retired month's too), by origin."""
    newest = (
        select(log_checkpoint.c.origin, func.max(log_checkpoint.c.tree_size).label("size"))
        .group_by(log_checkpoint.c.origin)
        .subquery()
    )
    rows = conn.execute(
        select(*_CHECKPOINT_COLUMNS)
        .join(
            newest,
            and_(
                newest.c.origin == log_checkpoint.c.origin,
                newest.c.size == log_checkpoint.c.tree_size,
            ),
        )
        .order_by(log_checkpoint.c.origin)
    ).all()
    return [_checkpoint(row) for row in rows]


def verifier_keys(conn: Connection) -> list[str]:
    """Every verifier key that has signed a checkpoint, oldest first."""
    return list(
        conn.execute(
            select(log_verifier_key.c.verifier_key).order_by(
                log_verifier_key.c.first_used_at, log_verifier_key.c.verifier_key
            )
        ).scalars()
    )


@dataclass(frozen=True)
class LeafPlace:
    month: str
    index: int
    salt: bytes | None


def leaf_place(conn: Connection, family: str, entry_id: int) -> LeafPlace | None:
    row = conn.execute(
        select(log_leaf.c.month, log_leaf.c.leaf_index, log_leaf.c.salt).where(
            log_leaf.c.family == family, log_leaf.c.entry_id == entry_id
        )
    ).first()
    return LeafPlace(row.month, int(row.leaf_index), row.salt) if row else None


def listed_verifier_keys(engine: Engine) -> list[str]:
    """The verifier keys the store lists, as `log verify` reads them: one that is not UTF-8
    text is no key (the checkpoints naming it are findings), and is left out. Here, not
    in store.log_audit: a read's seal asks it, and importing the audit cost it 0.005 s."""
    with engine.connect() as conn, any_text(conn):
        return [key for key in verifier_keys(conn) if key.isprintable()]


def _text_as_stored(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@contextmanager
def any_text(conn: Connection) -> Iterator[None]:
    """SQLite: text that is not UTF-8 read as it is (its bad bytes as lone surrogates): a
    column holding any stopped `log verify` with the driver's "Could not decode to UTF-8"
    and a traceback (audit 27a). The entry's leaf then cannot be computed, and it is named
    changed. (PostgreSQL stores no such text.)"""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver: Any = conn.connection.driver_connection
    before = driver.text_factory
    driver.text_factory = _text_as_stored
    try:
        yield
    finally:
        driver.text_factory = before
