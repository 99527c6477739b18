"""The kinds of entry that have monthly verifiable logs (SPEC section 7): each family's
origin, the word `log verify` names its entries with, the table they are stored in, and its
leaf source, which recomputes an entry's leaf hash from its stored row (what an audit of
the logs compares the stored leaves with; store.merkle_log appends and seals them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ..domain import merkle
from ..domain.access_log import leaf_data
from .access_log import entries_after
from .access_writer import ACCESS_FAMILY
from .log_records import FAMILY as RECORD_FAMILY
from .log_records import RECORD_TABLE, record_leaf_hashes

# (entry id, its leaf hash recomputed from the stored entry, or None when it cannot have one)
LeafSource = Callable[[Connection, int, int], Iterator[tuple[int, bytes | None]]]


@dataclass(frozen=True)
class LogFamily:
    """A kind of entry that has monthly logs: its `family` key, its origin's part after the
    prefix ("" for records: `<prefix>/<YYYY-MM>`; "access/": `<prefix>/access/<YYYY-MM>`),
    the word `log verify` names an entry with, the table its entries are stored in, and its
    leaf source: the stored entries with ids in [low, high), in id order."""

    family: str
    infix: str
    noun: str
    table: str
    leaves: LeafSource

    def origin(self, prefix: str, month: str) -> str:
        return f"{prefix}/{self.infix}{month}"


def access_leaves(conn: Connection, low: int, high: int) -> Iterator[tuple[int, bytes | None]]:
    """Every stored access-log entry's leaf hash in [low, high), recomputed from its row."""
    after = low - 1
    while entries := entries_after(conn, after, 10_000):
        for entry in entries:
            if entry.id >= high:
                return
            try:
                leaf: bytes | None = merkle.leaf_hash(leaf_data(entry))
            except (TypeError, ValueError):  # a column that is not UTF-8 text (log_audit)
                leaf = None
            yield entry.id, leaf
        after = entries[-1].id


FAMILIES: tuple[LogFamily, ...] = (
    LogFamily(RECORD_FAMILY, "", "record", RECORD_TABLE, record_leaf_hashes),
    LogFamily(ACCESS_FAMILY, "access/", "access-entry", "access_log", access_leaves),
)


def family_named(name: str) -> LogFamily:
    for each in FAMILIES:
        if each.family == name:
            return each
    raise KeyError(f"no log family {name!r}")
