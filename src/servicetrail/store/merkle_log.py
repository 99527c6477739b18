"""The verifiable logs in the store (SPEC section 7): appending leaves, sealing them into
signed checkpoints, and storing the tiles proofs are folded from (store.log_tree reads them).

One log per (family, month). The record writer appends a batch's leaves straight to their
logs in the batch's transaction (`add_leaves`), just before it commits: on SQLite under the
write lock it holds already, on PostgreSQL under a transaction-scoped advisory lock of the
family (`_FAMILY_LOCK`), held to COMMIT (the record writer takes it before it reads the trail,
so that concurrent loaders see each other's records, store.writer). Either way one writer at a
time numbers leaves, each from the log's size as the previous holder committed it (READ
COMMITTED gives the statement after the lock a snapshot that sees that commit), so leaf
indexes are gap-free and follow the order entries became visible. Appending straight cost
half of what queueing did on PostgreSQL: a queued leaf was written twice and deleted once.

Entries written by other paths (the access log, queued from reads; migration 0009's
backfill) go to the queue, `log_pending`, in their own transactions (`queue_leaves`); the
seal appends every queued leaf to its log in id order under the same locks. A family whose
queue holds leaves keeps queueing until a seal has emptied it, so a log keeps stored order.
Whoever appends leaves stores the tiles they complete in the same transaction, from the
hashes in hand (the seal used to read every appended leaf back for them); `seal` then signs
a checkpoint of each log that grew: those queued, and those add_leaves listed in
log_unsealed in the same transaction as it appended to them.

Tiles: the roots of complete aligned subtrees at levels 4, 8, 12 ... (log_node), so every
subtree hash a proof or root needs folds from at most 15 stored hashes of one level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

from ..domain import merkle
from ..signing import Signer, log_prefix, signer_for, trust_first
from .driver_sql import parameter_mark
from .engine import waiting_at_most
from .log_copy import COLUMNS as LEAF_COPY_COLUMNS
from .log_copy import (
    SQLITE_RUN,
    LeafRun,
    leaf_copy_data,
    runs_by_salt,
    runs_of_columns,
    sqlite_parameters,
)
from .log_families import family_named
from .log_records import FAMILY as RECORD_FAMILY
from .log_tables import log_checkpoint, log_pending, log_verifier_key
from .log_tree import TILE, LogDamaged, StoredTree, latest_checkpoint, verifier_keys

log = logging.getLogger("servicetrail.store")

_SEAL_CHUNK = 20_000
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('servicetrail.logs'))"
# taken by whoever numbers a direct family's leaves (a batch, the seal, retention), always
# after _LOCK by those that take both
_FAMILY_KEY = "hashtext('servicetrail.logs.' || %s)"  # one key: the seal tries what others take
_FAMILY_LOCK = f"SELECT pg_advisory_xact_lock({_FAMILY_KEY})"
# the families whose writers append their leaves straight to the logs (add_leaves)
DIRECT_FAMILIES = (RECORD_FAMILY,)
# (entry id, month, leaf hash, salt or None)
QueuedLeaf = tuple[int, str, bytes, bytes | None]


# ------------------------------------------------------------------ writing


def _driver(conn: Connection) -> Any:
    """The DBAPI connection of the caller's transaction (for COPY and executemany)."""
    driver = conn.connection.driver_connection
    assert driver is not None, "the connection is closed"
    return driver


def queue_leaves(conn: Connection, family: str, rows: Sequence[QueuedLeaf]) -> None:
    """Queue entries' leaves for the next seal, in the caller's (the entries') transaction.
    The raw driver, as the record writer: this runs once per ingested record."""
    if not rows:
        return
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            with cursor.copy(
                "COPY log_pending (family, entry_id, month, leaf_hash, salt) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["varchar", "int8", "varchar", "bytea", "bytea"])
                for entry_id, month, leaf, salt in rows:
                    copy.write_row((family, entry_id, month, leaf, salt))
        return
    driver.executemany(
        "INSERT INTO log_pending (family, entry_id, month, leaf_hash, salt) VALUES (?, ?, ?, ?, ?)",
        [(family, entry_id, month, leaf, salt) for entry_id, month, leaf, salt in rows],
    )


def add_leaves(conn: Connection, family: str, rows: Sequence[QueuedLeaf]) -> None:
    """Append entries' leaves to their logs in the caller's (the entries') transaction, which
    must commit next: on PostgreSQL the family's lock taken here is held to that COMMIT, and
    every other writer of the family waits for it (see the module's note). Through the queue
    when it already holds leaves of this family, which must go first."""
    if not rows:
        return
    lock_family(conn, family)
    if _family_queued(conn, family):
        queue_leaves(conn, family, rows)
        return
    by_log = _by_log(rows)
    sizes: dict[str, int] = {}
    for month in list(by_log):
        size = _size(conn, family, month)
        if size == 0 and latest_checkpoint(conn, family, month) is not None:
            queue_leaves(conn, family, by_log.pop(month))  # see seal
            continue
        # leaves a writer before this one left untiled (one that appended without tiling)
        _tile_appended(conn, family, month, _tiled(conn, family, month), size)
        sizes[month] = size
    # each log's leaves one run for the bulk writer, its columns taken whole (a tuple a leaf
    # regrouped, then split into columns, cost as much as the tiles)
    runs: list[LeafRun] = []
    hashes: dict[str, list[bytes]] = {}
    for month, leaves in by_log.items():
        hashes[month] = list(map(_LEAF_HASH, leaves))
        ids, salts = list(map(_ENTRY_ID, leaves)), list(map(_SALT, leaves))
        runs += runs_of_columns(family, month, sizes[month], ids, hashes[month], salts)
    _write_leaves(conn, runs)
    # the tiles now, from the hashes in hand: the seal would have to read every leaf back
    for month, added in hashes.items():
        _grow_tiles(conn, family, month, sizes[month], sizes[month] + len(added), added)
    list_for_seal(conn, [(family, month) for month in hashes])


def list_for_seal(
    conn: Connection, logs: Sequence[tuple[str, str]], *, returning: bool = False
) -> list[tuple[str, str]]:
    """List the logs (family, month) for the next seal (log_tables.log_unsealed) in one
    statement; a log listed already stays as it is. With `returning`, the logs this call
    listed; without, nothing is asked back: add_leaves lists each batch's logs so, on
    ingest's hot path, under the family's lock, which the seal takes before it reads the
    list (store.log_sizes lists those an older servicetrail left, and asks)."""
    if not logs:
        return []
    mark = parameter_mark(conn)
    listed = conn.exec_driver_sql(
        "INSERT INTO log_unsealed (family, month) VALUES "
        f"{', '.join([f'({mark}, {mark})'] * len(logs))} ON CONFLICT DO NOTHING"
        + (" RETURNING family, month" if returning else ""),
        tuple(value for log in logs for value in log),
    )
    return sorted((str(family), str(month)) for family, month in listed) if returning else []


_ENTRY_ID, _MONTH, _LEAF_HASH, _SALT = (itemgetter(i) for i in range(4))  # of a QueuedLeaf


def _by_log(rows: Sequence[QueuedLeaf]) -> dict[str, Sequence[QueuedLeaf]]:
    """The leaves of each month's log, in order: a batch's are mostly of one month."""
    months = dict.fromkeys(map(_MONTH, rows))
    if len(months) == 1:
        return {month: rows for month in months}
    by_log: dict[str, list[QueuedLeaf]] = {month: [] for month in months}
    for row in rows:
        by_log[row[1]].append(row)
    return dict(by_log)


def _family_queued(conn: Connection, family: str) -> bool:
    return (
        conn.exec_driver_sql(
            f"SELECT 1 FROM log_pending WHERE family = {parameter_mark(conn)} LIMIT 1", (family,)
        ).first()
        is not None
    )


def lock_family(conn: Connection, family: str) -> None:
    """PostgreSQL: the family's advisory lock, to the end of the transaction. (SQLite's
    writers hold its write lock already.)"""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_FAMILY_LOCK, (family,))


@dataclass(frozen=True)
class Sealed:
    origin: str
    size: int
    checkpoint: str


# one statement object for every seal of the process: SQLAlchemy keys its compiled form by
# it, where one built with the values each time was built and keyed afresh
_CHECKPOINT_INSERT = log_checkpoint.insert()


def seal(conn: Connection, signer: Signer, prefix: str) -> list[Sealed]:
    """Append every queued leaf to its log and sign a checkpoint of each log that grew, in the
    caller's transaction (commit it before reporting). The queue is read a chunk at a time,
    so a seal of millions of leaves runs in flat memory."""
    lock_sealing(conn)
    queued = _logs_listed(conn, "SELECT DISTINCT family, month FROM log_pending")
    # the logs add_leaves appended to: read under every direct family's lock (lock_sealing),
    # so none is appended to until this commits. The logs looked at are these alone, a few
    # probes each of its own partitions: a look at every log opened every month's (63j)
    marked = _logs_listed(conn, "SELECT family, month FROM log_unsealed")
    now = datetime.now(timezone.utc)
    free: dict[str, bool] = {}
    sealed: list[Sealed] = []
    for family, month in sorted(queued | marked):
        if family not in free:
            free[family] = _family_free(conn, family)
        if not free[family]:
            continue  # its retention under way: its leaves stay queued for the next seal
        # read once its family's lock is held (or SQLite's write lock), so it holds to the end
        size, newest = _size(conn, family, month), _newest(conn, family, month)
        if (family, month) in marked:
            conn.exec_driver_sql(_UNMARK.format(mark=parameter_mark(conn)), (family, month))
            if (family, month) not in queued and size <= (newest or 0):
                continue  # nothing past its newest checkpoint: sealed before, or retired
        if size == 0 and newest is not None:
            # retired by retention: its leaves are gone, so a new tree under the same origin
            # would contradict the checkpoints kept; entries for it stay queued (unsealed)
            continue
        if not sealed:
            remember_key(conn, signer, now)
        _tile_appended(conn, family, month, _tiled(conn, family, month), size)
        for chunk in _queued(conn, family, month):
            _write_leaves(conn, list(runs_by_salt(family, month, size, chunk)))
            _grow_tiles(conn, family, month, size, size + len(chunk), [row[1] for row in chunk])
            _unqueue(conn, family, month, [row[0] for row in chunk])
            size += len(chunk)
        root = StoredTree(conn, family, month).root(size)
        origin = family_named(family).origin(prefix, month)
        note = signer.checkpoint(origin, size, root)
        conn.execute(
            _CHECKPOINT_INSERT,
            {
                "origin": origin,
                "family": family,
                "month": month,
                "tree_size": size,
                "root_hash": root,
                "note": note,
                "verifier_key": signer.verifier_key,
                "created_at": now,
            },
        )
        sealed.append(Sealed(origin, size, note))
    return sealed


_UNMARK = "DELETE FROM log_unsealed WHERE family = {mark} AND month = {mark}"


def _logs_listed(conn: Connection, statement: str) -> set[tuple[str, str]]:
    return {(str(family), str(month)) for family, month in conn.exec_driver_sql(statement)}


def _newest(conn: Connection, family: str, month: str) -> int | None:
    """The size of the log's newest checkpoint, None if it has none."""
    last = latest_checkpoint(conn, family, month)
    return None if last is None else last.size


def unsealed(conn: Connection, family: str, month: str) -> bool:
    """Whether the log holds leaves in no signed checkpoint yet: appended past its newest
    checkpoint, or still queued (an ingest's, or migration 0009's for the records before it)."""
    last = latest_checkpoint(conn, family, month)
    if _size(conn, family, month) > (last.size if last is not None else 0):
        return True
    queued = select(log_pending.c.entry_id).where(
        log_pending.c.family == family, log_pending.c.month == month
    )
    return conn.execute(queued.limit(1)).first() is not None


def _tiled(conn: Connection, family: str, month: str) -> int:
    """How many leaves the stored tiles cover: the tiles of every level inside [0, this) are
    stored (whoever stores tiles stores them all, up to the log's size then)."""
    mark = parameter_mark(conn)
    top = conn.exec_driver_sql(
        f"SELECT node_index FROM log_node WHERE family = {mark} AND month = {mark} "
        f"AND level = {TILE} ORDER BY node_index DESC LIMIT 1",  # see _size
        (family, month),
    ).scalar()
    return 0 if top is None else (int(top) + 1) << TILE


def _tile_appended(conn: Connection, family: str, month: str, tiled: int, size: int) -> None:
    """Grow the tiles over the leaves in [tiled, size), stored without them (by a writer
    that did not tile: add_leaves before it did, or the seal's since its last checkpoint),
    given that those of [0, tiled) are stored."""
    if size >> TILE <= tiled >> TILE:
        return  # no tile completed: so after add_leaves, which tiles what it appends
    mark = parameter_mark(conn)
    statement = (
        f"SELECT leaf_hash FROM log_leaf WHERE family = {mark} AND month = {mark} "
        f"AND leaf_index >= {mark} AND leaf_index < {mark} ORDER BY leaf_index"
    )
    for start in range(tiled, size, _SEAL_CHUNK):
        end = min(size, start + _SEAL_CHUNK)
        read = _driver(conn).execute(statement, (family, month, start, end))
        hashes = [bytes(h) for (h,) in read.fetchall()]
        if len(hashes) != end - start:
            raise LogDamaged(f"log {family}/{month} lacks leaves between {start} and {end}")
        _grow_tiles(conn, family, month, start, end, hashes)


def _queued(conn: Connection, family: str, month: str) -> Iterator[Sequence[Any]]:
    """A log's queued leaves, (entry id, leaf hash, salt), in id order, a chunk at a time,
    through the driver (SQLAlchemy's row processing cost more than the read). An entry
    committed by a concurrent writer meanwhile with a lower id than one already taken waits
    in the queue for the next seal."""
    if conn.dialect.name == "postgresql":
        yield from _queued_by_cursor(conn, family, month)
        return
    statement = (
        "SELECT entry_id, leaf_hash, salt FROM log_pending "
        f"WHERE family = ? AND month = ? AND entry_id > ? ORDER BY entry_id LIMIT {_SEAL_CHUNK}"
    )
    after = -1
    while True:
        chunk = conn.exec_driver_sql(statement, (family, month, after)).fetchall()
        if chunk:
            yield chunk
        if len(chunk) < _SEAL_CHUNK:  # the last: no one else writes under the seal's lock
            return
        after = chunk[-1][0]


def _queued_by_cursor(conn: Connection, family: str, month: str) -> Iterator[Sequence[Any]]:
    """PostgreSQL: one statement a log, read through a cursor. The queue fills and empties
    between autovacuum's visits, so its statistics are of an empty table: a chunk a statement
    (`entry_id > last ORDER BY entry_id LIMIT n`) was planned as a few rows, by bitmap scan
    and sort of every queued row past `last`, each chunk again (5.5 s of server CPU for a
    seal of 1M). A cursor is planned for its first rows, on the index in id order; on any
    plan it reads the queue once. Its snapshot is its DECLARE's: entries committed later
    wait for the next seal, and the seal's own deletes do not disturb it."""
    with _driver(conn).cursor(name="servicetrail_queued", scrollable=False) as cursor:
        cursor.execute(
            "SELECT entry_id, leaf_hash, salt FROM log_pending "
            "WHERE family = %s AND month = %s ORDER BY entry_id",
            (family, month),
        )
        while chunk := cursor.fetchmany(_SEAL_CHUNK):
            yield chunk


def _family_free(conn: Connection, family: str) -> bool:
    """Whether the seal may append to a queued family's logs: on PostgreSQL, whether it has
    the family's lock, which the access log's retention holds while it retires months (and
    while it waits for the log's lock behind reads, a minute at most; its leaves went by
    DELETE, over an hour for a month at 700 reads a second, before migration 0029). Not
    waited for, so that the seal, holding its own lock, goes on with the other families'
    logs; every seal waited for that retention (audit 51e). A direct family's lock is
    lock_sealing's."""
    if conn.dialect.name != "postgresql" or family in DIRECT_FAMILIES:
        return True
    taken = conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_FAMILY_KEY})", (family,))
    return bool(taken.scalar())


def lock_sealing(conn: Connection) -> None:
    """One sealer at a time, and no leaf appended while it seals: PostgreSQL by advisory
    locks held to the end of the transaction (the seal's, then each direct family's),
    SQLite by taking its write lock before the queue is read."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(_LOCK))
        for family in DIRECT_FAMILIES:
            lock_family(conn, family)
        return
    driver = _driver(conn)
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")


def remember_key(conn: Connection, signer: Signer, now: datetime) -> None:
    """The store's list of the keys that signed in it, and, the first time a key signs here,
    its trust file (signing.trust_first)."""
    known = conn.exec_driver_sql(
        f"SELECT 1 FROM log_verifier_key WHERE verifier_key = {parameter_mark(conn)}",
        (signer.verifier_key,),
    ).first()
    if known is None:
        earlier = verifier_keys(conn)
        if earlier:  # a mistyped key file name is a new key, and a rotation: said, not refused
            log.warning(
                "signing with a key this store has not used before (%s); its checkpoints so "
                "far are signed by %d other key(s). A rotation: publish the new verifier key "
                "(servicetrail log key). If you meant none, SERVICETRAIL_SIGNING_KEY names "
                "the wrong file, or SERVICETRAIL_LOG_ORIGIN changed (a key is named for the "
                "logs' origin).",
                signer.path or "a key given in code",
                len(earlier),
            )
        if signer.path is not None:
            trust_first(signer.path, earlier, signer.verifier_key)
        conn.execute(
            log_verifier_key.insert().values(verifier_key=signer.verifier_key, first_used_at=now)
        )


def _size(conn: Connection, family: str, month: str) -> int:
    """The log's leaf count, by one backward step on the primary key, whatever PostgreSQL's
    statistics say: `max(leaf_index)` was planned as a read of every leaf of the month
    whenever its statistics predated the month (a month's leaves are new until the next
    ANALYZE, which on a large table autovacuum runs after a tenth of it has changed)."""
    mark = parameter_mark(conn)
    top = conn.exec_driver_sql(
        f"SELECT leaf_index FROM log_leaf WHERE family = {mark} AND month = {mark} "
        "ORDER BY leaf_index DESC LIMIT 1",
        (family, month),
    ).scalar()
    return 0 if top is None else int(top) + 1


def _write_leaves(conn: Connection, runs: Sequence[LeafRun]) -> None:
    """log_leaf rows, a run of one log's consecutive leaves at a time, in bulk."""
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            with cursor.copy(
                f"COPY log_leaf ({', '.join(LEAF_COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(leaf_copy_data(runs))
        return
    for run in runs:
        driver.execute(SQLITE_RUN, sqlite_parameters(run))


def _grow_tiles(
    conn: Connection,
    family: str,
    month: str,
    old_size: int,
    new_size: int,
    new_leaves: list[bytes],
) -> None:
    """Store the tiles the new leaves completed, level by level; `new_leaves` are the hashes
    of leaves old_size.. and each level's new tiles feed the next."""
    tree = StoredTree(conn, family, month)
    level, fresh = 0, new_leaves
    while True:
        upper = level + TILE
        first, last = old_size >> upper, new_size >> upper
        if first == last:
            return
        had = old_size >> level  # hashes of this level below `had` are stored already
        below = tree.fetch(level, [(first << TILE, had)]) + fresh
        tiles = merkle.perfect_roots(below[: (last - first) << TILE], TILE)
        _write_tiles(
            conn, [(family, month, upper, first + i, tile) for i, tile in enumerate(tiles)]
        )
        level, fresh = upper, tiles


def _write_tiles(conn: Connection, values: Sequence[tuple[Any, ...]]) -> None:
    """log_node rows (family, month, level, node_index, hash), in bulk: on PostgreSQL by COPY,
    as an executemany there ran one INSERT a tile (a tile for every 15 leaves)."""
    driver = _driver(conn)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            with cursor.copy(
                "COPY log_node (family, month, level, node_index, hash) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["varchar", "varchar", "int2", "int8", "bytea"])
                for value in values:
                    copy.write_row(value)
        return
    driver.executemany(
        "INSERT INTO log_node (family, month, level, node_index, hash) VALUES (?, ?, ?, ?, ?)",
        values,
    )


def _unqueue(conn: Connection, family: str, month: str, entry_ids: list[int]) -> None:
    """Remove sealed entries from the queue. On SQLite the write lock keeps every other
    writer out, so the month's queued ids in the chunk's range are exactly those read; on
    PostgreSQL an entry of a concurrent writer may commit inside that range meanwhile, so
    the ids are named (one array parameter), inside the chunk's range. The queue's
    statistics are of an empty table (see _queued_by_cursor), so the plan may be a scan of
    every queued entry of the family filtered by the ids: bounded to the chunk's range, it
    reads the chunk's rows whatever the plan; and a bigint[], the element type of entry_id,
    so that filter probes a hash of the ids (int[] against int8 searched the array for
    each row: 2.6 s to seal 40,000 leaves)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            "DELETE FROM log_pending WHERE family = ? AND month = ? AND entry_id BETWEEN ? AND ?",
            (family, month, entry_ids[0], entry_ids[-1]),
        )
        return
    with _driver(conn).cursor() as cursor:
        cursor.execute(
            "DELETE FROM log_pending WHERE family = %s AND entry_id BETWEEN %s AND %s "
            "AND entry_id = ANY(%s::bigint[])",
            (family, entry_ids[0], entry_ids[-1], entry_ids),
        )


def seal_store(engine: Engine, lock_wait: float | None = None) -> list[Sealed]:
    """Seal every queued leaf of this store with its signing key, and commit; `lock_wait`:
    seconds to wait at most for another writer's or sealer's lock (else the usual)."""
    signer = signer_for(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        with waiting_at_most(conn, lock_wait) if lock_wait is not None else nullcontext():
            return seal(conn, signer, log_prefix())
