#!/usr/bin/env python3
"""What a leaf row costs to write, by its shape (issue 14's ingest ratio, session 55).

    .venv/bin/python bench/leaf_rows.py                              # both engines, 200k, 4 rounds
    .venv/bin/python bench/leaf_rows.py --engines postgresql --months 12 --shapes shipped,tile16

N leaves (hash and salt made beforehand) go into a scratch table of each shape, in batches
of 20,000 a transaction as the ingest writes them; one untimed round, then --rounds rounds
with the shapes in a rotating order. PostgreSQL: a throwaway server (1 GB of shared buffers),
binary COPY through the partitioned parent, one partition a log (migration 0029), --months
logs with the leaves dealt out over them in turn (or, --in-order, each log's leaves
together, as the ingest's come in time order: a batch touches one or two logs), the
backend's CPU from /proc (the client's is the same stream in every leaf shape). SQLite:
executemany into a WAL file, the process's CPU.
The shapes, against `shipped` (log_leaf as 0009 and 0029 build it):
- local_keys: the same columns; the keys a partition's own, (leaf_index) and (entry_id),
  without (family, month), which are one value a partition;
- local_pk_only: local_keys without the entry-id index (a proof finds its leaf by entry id:
  the record row would have to carry its leaf index instead);
- local_brin: local_keys with a BRIN index for the entry ids;
- log_id: a smallint log id in place of (family, month) (LIST partitions);
- pk_only, brin: the shipped primary key, with no or a BRIN entry-id index;
- keys_last: the shipped keys, still the parent's, with (family, month) last: (leaf_index,
  family, month) and (entry_id, family), so a B-tree compares an int8 first (session 58);
- entry_only: the shipped primary key and the entry ids' index on (entry_id) alone, the
  parent's (a plain index need not hold the partition key);
- heap: no index at all (the floor);
- tile16, tile256: a row a tile of 16 or 256 leaves (entry ids, hashes and salts packed in
  bytea, keyed by the tile and its first entry id); partial tiles are not modelled.
Prints the median CPU microseconds a leaf with the rounds' range.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from devsupport.pg_server import PgServer  # noqa: E402

BATCH = 20_000
FIRST_ID = 5_000_000
_TICK = os.sysconf("SC_CLK_TCK")
_LEAF = (
    "family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index bigint NOT NULL, "
    "entry_id bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea"
)
_TILE = (
    "family varchar(16) NOT NULL, month varchar(7) NOT NULL, tile bigint NOT NULL, "
    "first_entry bigint NOT NULL, entry_ids bytea NOT NULL, hashes bytea NOT NULL, salts bytea"
)
_BY_LOG = "PARTITION BY RANGE (family, month)"
# each shape: the parent's DDL, then a partition's ({p} its name) after it is made
PG_SHAPES: dict[str, tuple[list[str], list[str]]] = {
    "shipped": (
        [
            f"CREATE TABLE t ({_LEAF}) {_BY_LOG}",
            "ALTER TABLE t ADD PRIMARY KEY (family, month, leaf_index)",
            "CREATE INDEX ON t (family, entry_id)",
        ],
        [],
    ),
    "local_keys": (
        [f"CREATE TABLE t ({_LEAF}) {_BY_LOG}"],
        ["ALTER TABLE {p} ADD PRIMARY KEY (leaf_index)", "CREATE INDEX ON {p} (entry_id)"],
    ),
    "local_pk_only": (
        [f"CREATE TABLE t ({_LEAF}) {_BY_LOG}"],
        ["ALTER TABLE {p} ADD PRIMARY KEY (leaf_index)"],
    ),
    "local_brin": (
        [f"CREATE TABLE t ({_LEAF}) {_BY_LOG}"],
        [
            "ALTER TABLE {p} ADD PRIMARY KEY (leaf_index)",
            "CREATE INDEX ON {p} USING brin (entry_id) WITH (pages_per_range = 4)",
        ],
    ),
    "log_id": (
        [
            "CREATE TABLE t (log_id smallint NOT NULL, leaf_index bigint NOT NULL, entry_id "
            "bigint NOT NULL, leaf_hash bytea NOT NULL, salt bytea) PARTITION BY LIST (log_id)",
            "ALTER TABLE t ADD PRIMARY KEY (log_id, leaf_index)",
            "CREATE INDEX ON t (log_id, entry_id)",
        ],
        [],
    ),
    "pk_only": (
        [
            f"CREATE TABLE t ({_LEAF}) {_BY_LOG}",
            "ALTER TABLE t ADD PRIMARY KEY (family, month, leaf_index)",
        ],
        [],
    ),
    "brin": (
        [
            f"CREATE TABLE t ({_LEAF}) {_BY_LOG}",
            "ALTER TABLE t ADD PRIMARY KEY (family, month, leaf_index)",
            "CREATE INDEX ON t USING brin (family, entry_id) WITH (pages_per_range = 4)",
        ],
        [],
    ),
    "keys_last": (
        [
            f"CREATE TABLE t ({_LEAF}) {_BY_LOG}",
            "ALTER TABLE t ADD PRIMARY KEY (leaf_index, family, month)",
            "CREATE INDEX ON t (entry_id, family)",
        ],
        [],
    ),
    "entry_only": (
        [
            f"CREATE TABLE t ({_LEAF}) {_BY_LOG}",
            "ALTER TABLE t ADD PRIMARY KEY (family, month, leaf_index)",
            "CREATE INDEX ON t (entry_id)",
        ],
        [],
    ),
    "heap": ([f"CREATE TABLE t ({_LEAF}) {_BY_LOG}"], []),
    **{
        f"tile{width}": (
            [
                f"CREATE TABLE t ({_TILE}) {_BY_LOG}",
                "ALTER TABLE t ADD PRIMARY KEY (family, month, tile)",
                "CREATE INDEX ON t (family, first_entry)",
            ],
            # past 2 KB a row is TOASTed: stored as it is, not compressed in vain
            []
            if width == 16
            else [
                "ALTER TABLE {p} ALTER entry_ids SET STORAGE EXTERNAL, "
                "ALTER hashes SET STORAGE EXTERNAL, ALTER salts SET STORAGE EXTERNAL"
            ],
        )
        for width in (16, 256)
    },
}
SQLITE_SHAPES = {
    "shipped": (
        "CREATE TABLE t (family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index "
        "bigint NOT NULL, entry_id integer NOT NULL, leaf_hash blob NOT NULL, salt blob, "
        "PRIMARY KEY (family, month, leaf_index), UNIQUE (family, entry_id)) WITHOUT ROWID",
        "INSERT INTO t VALUES ('sat', '2026-01', ?, ?, ?, ?)",
    ),
    "log_id": (
        "CREATE TABLE t (log_id integer NOT NULL, leaf_index bigint NOT NULL, entry_id integer "
        "NOT NULL, leaf_hash blob NOT NULL, salt blob, PRIMARY KEY (log_id, leaf_index), "
        "UNIQUE (entry_id)) WITHOUT ROWID",
        "INSERT INTO t VALUES (1, ?, ?, ?, ?)",
    ),
    "pk_only": (
        "CREATE TABLE t (family varchar(16) NOT NULL, month varchar(7) NOT NULL, leaf_index "
        "bigint NOT NULL, entry_id integer NOT NULL, leaf_hash blob NOT NULL, salt blob, "
        "PRIMARY KEY (family, month, leaf_index)) WITHOUT ROWID",
        "INSERT INTO t VALUES ('sat', '2026-01', ?, ?, ?, ?)",
    ),
    "tile16": (
        "CREATE TABLE t (family varchar(16) NOT NULL, month varchar(7) NOT NULL, tile bigint "
        "NOT NULL, first_entry integer NOT NULL, entry_ids blob NOT NULL, hashes blob NOT NULL, "
        "salts blob, PRIMARY KEY (family, month, tile), UNIQUE (family, first_entry)) "
        "WITHOUT ROWID",
        "INSERT INTO t VALUES ('sat', '2026-01', ?, ?, ?, ?, ?)",
    ),
}
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_LEAF_ROW = struct.Struct(">iqiqi32si16s")


def _month(m: int) -> str:
    return f"2026-{m + 1:02d}"


class Leaves:
    def __init__(self, n: int, months: int, in_order: bool = False) -> None:
        self.n, self.months, self.in_order = n, months, in_order
        self.hashes = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
        self.salts = [h[:16] for h in self.hashes]

    def copy_stream(self, lo: int, hi: int, shape: str) -> bytearray:
        """A batch's rows, a run a log, as the ingest's binary COPY sends them: leaf i is
        log i % months' leaf i // months (--in-order: log m holds leaves m*n/months on)."""
        out = bytearray(_SIGNATURE)
        for m in range(self.months):
            if shape == "log_id":
                head = struct.pack(">hih", 5, 2, m + 1)
            else:
                head = struct.pack(">hi3si7s", 6, 3, b"sat", 7, _month(m).encode())
            for index, i in self._places(m, lo, hi):
                out += head + _LEAF_ROW.pack(
                    8, index, 8, FIRST_ID + i, 32, self.hashes[i], 16, self.salts[i]
                )
        return out + struct.pack(">h", -1)

    def _places(self, m: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """(leaf index in log m, leaf number) of log m's leaves among leaves [lo, hi)."""
        if not self.in_order:
            return [
                (i // self.months, i) for i in range(lo + (m - lo) % self.months, hi, self.months)
            ]
        first = m * self.n // self.months
        end = (m + 1) * self.n // self.months
        return [(i - first, i) for i in range(max(lo, first), min(hi, end))]

    def tile_stream(self, lo: int, hi: int, width: int) -> bytearray:
        """A batch's leaves as rows of `width` (one log: a tile's packing is the same)."""
        out = bytearray(_SIGNATURE)
        head = struct.pack(">hi3si7s", 7, 3, b"sat", 7, _month(0).encode())
        for first in range(lo, hi, width):
            ids, hashes, salts = self._tile(first, min(hi, first + width))
            out += head + struct.pack(">iqiq", 8, first, 8, FIRST_ID + first)
            for packed in (ids, hashes, salts):
                out += struct.pack(">i", len(packed)) + packed
        return out + struct.pack(">h", -1)

    def _tile(self, lo: int, hi: int) -> tuple[bytes, bytes, bytes]:
        ids = b"".join(struct.pack(">q", FIRST_ID + i) for i in range(lo, hi))
        return ids, b"".join(self.hashes[lo:hi]), b"".join(self.salts[lo:hi])


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _pg_round(url: str, shape: str, leaves: Leaves) -> float:
    parent, each = PG_SHAPES[shape]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        for statement in parent:
            conn.execute(statement)
        for m in range(leaves.months if not shape.startswith("tile") else 1):
            name = f"t_p{m}"
            bounds = (
                f"IN ({m + 1})"
                if shape == "log_id"
                else f"FROM ('sat', '{_month(m)}') TO ('sat', '{_month(m + 1)}')"
            )
            conn.execute(f"CREATE TABLE {name} PARTITION OF t FOR VALUES {bounds}")
            for statement in each:
                conn.execute(statement.format(p=name))
        conn.execute("CHECKPOINT")
        width = int(shape[4:]) if shape.startswith("tile") else 0
        streams = [
            leaves.tile_stream(lo, min(leaves.n, lo + BATCH), width)
            if width
            else leaves.copy_stream(lo, min(leaves.n, lo + BATCH), shape)
            for lo in range(0, leaves.n, BATCH)
        ]
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        before = _backend_cpu(pid)
        for data in streams:
            with conn.transaction(), conn.cursor().copy("COPY t FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(data)
        return _backend_cpu(pid) - before


def _sqlite_round(work: Path, shape: str, leaves: Leaves) -> float:
    path = work / f"{shape}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    create, insert = SQLITE_SHAPES[shape]
    conn.execute(create)
    batches: list[list[tuple[Any, ...]]] = []
    for lo in range(0, leaves.n, BATCH):
        hi = min(leaves.n, lo + BATCH)
        if shape == "tile16":
            batches.append(
                [
                    (first, FIRST_ID + first, *leaves._tile(first, min(hi, first + 16)))
                    for first in range(lo, hi, 16)
                ]
            )
        else:
            batches.append(
                [(i, FIRST_ID + i, leaves.hashes[i], leaves.salts[i]) for i in range(lo, hi)]
            )
    began = time.process_time()
    for batch in batches:
        conn.execute("BEGIN")
        conn.executemany(insert, batch)
        conn.execute("COMMIT")
    spent = time.process_time() - began
    conn.close()
    return spent


def _rotated(names: list[str], rounds: int) -> list[tuple[int, str]]:
    return [
        (r, name)
        for r in range(rounds + 1)
        for name in names[r % len(names) :] + names[: r % len(names)]
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument(
        "--months", type=int, default=1, help="PostgreSQL: logs the leaves spread over"
    )
    parser.add_argument(
        "--in-order", action="store_true", help="each log's leaves together, as the ingest's"
    )
    parser.add_argument("--shapes", default="", help="a comma-separated subset (default: all)")
    parser.add_argument(
        "--port", type=int, default=0, help="the throwaway server's (default: free)"
    )
    a = parser.parse_args()
    leaves = Leaves(a.leaves, a.months, a.in_order)
    for engine in filter(None, a.engines.split(",")):
        known = PG_SHAPES if engine == "postgresql" else SQLITE_SHAPES
        names = [s for s in a.shapes.split(",") if s in known] if a.shapes else list(known)
        spent: dict[str, list[float]] = {name: [] for name in names}
        if engine == "postgresql":
            server = PgServer(shared_buffers="1GB")
            server.port = a.port or server.port
            server.start()
            try:
                for r, name in _rotated(names, a.rounds):
                    cpu = _pg_round(server.url(), name, leaves)
                    if r:  # the first round warms the server up
                        spent[name].append(cpu)
            finally:
                server.stop()
        else:
            with tempfile.TemporaryDirectory() as work:
                for r, name in _rotated(names, a.rounds):
                    cpu = _sqlite_round(Path(work), name, leaves)
                    if r:
                        spent[name].append(cpu)
        order = ", in order" if a.in_order else ""
        print(
            f"{engine}, {a.leaves} leaves, {a.months} log(s){order}: CPU us a leaf, median (range)"
        )
        for name, runs in spent.items():
            runs.sort()
            median = (runs[len(runs) // 2] + runs[(len(runs) - 1) // 2]) / 2
            scale = 1e6 / a.leaves
            print(
                f"  {name:14s} {median * scale:5.2f} ({runs[0] * scale:.2f}-{runs[-1] * scale:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
