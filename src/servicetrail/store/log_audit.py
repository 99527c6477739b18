"""`servicetrail log verify` (SPEC section 7): the server-side audit of every log.

Three passes, each streaming (memory stays flat at 10M records):
1. every stored entry's leaf, recomputed from the entry as stored, against the leaf hash the
   log (or the queue, for entries not yet sealed) holds: `<noun> <id> changed|removed|added`;
2. every log's leaves, folded in index order, against each checkpoint's root and the tiles;
3. every checkpoint's Ed25519 signature, by the verifier key it names, which must be one the
   caller trusts (signing.trusted_keys: kept beside the signing key, outside the store).

Checkpoints kept outside the store (`Kept`: an auditor's copies of /api/v1/logs) join pass 2:
each log must still have their leaves and root. The store's own checkpoints cannot show that
its newest entries were deleted with the checkpoints that held them (audit, session 19).

Passes 1 and 2 are cut into independent tasks (slices of ids, months), which a large store
hands to worker processes, one a core: recomputing leaves is Python's work, so one process
held `log verify` of 10M records to one core. Findings come out in the same order either way.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from ..domain import merkle
from ..domain.checkpoint import (
    NoteError,
    Verifier,
    parse_verifier_key,
    verify_checkpoint,
    verify_retirement,
)
from ..signing import ed25519_check
from .engine import make_engine
from .log_tree import TILE, StoredCheckpoint, all_checkpoints, verifier_keys
from .access_retention import access_month_dropped
from .access_writer import ACCESS_FAMILY
from .log_records import FAMILY as RECORD_FAMILY
from .log_records import records_with_derived_fields
from .log_kept import Kept
from .partitions import month_dropped
from .merkle_log import FAMILIES, family_named

_STREAM = 10_000
# below this many entries a worker process costs more (start-up, imports) than it saves
PARALLEL_FROM = 200_000
# id slices per worker: the roots of the months run beside the slices, so smaller tasks
# even out the workers' shares
_SLICES_PER_WORKER = 3


class Note(str):
    """Said, but not a finding: a state a running or stopped ingest also leaves."""


@dataclass
class Audit:
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0
    leaves: int = 0
    checkpoints: int = 0


@dataclass(frozen=True)
class _Entries:
    """Pass 1 over the entries of one family with ids in [low, high)."""

    family: str
    low: int
    high: int


@dataclass(frozen=True)
class _Roots:
    """Pass 2 over one log; `kept`: (size, root) of the checkpoints kept outside the store."""

    family: str
    month: str
    checkpoints: tuple[StoredCheckpoint, ...]
    kept: tuple[tuple[int, bytes], ...]
    origin: str
    # sizes of the stored checkpoints whose signature verifies, by a trusted key, over their
    # stored origin, size and root: only those may blame a leaf (see _Blamed)
    sound: frozenset[int] = frozenset()
    # (size, root) of each retirement of this origin signed by a trusted key
    retired_at: frozenset[tuple[int, bytes]] = frozenset()


_Task = _Entries | _Roots


def audit(
    engine: Engine,
    prefix: str,
    trusted: set[str] | None = None,
    workers: int | None = None,
    kept: Kept | None = None,
) -> Audit:
    """Every finding of the three passes. `trusted`: the verifier keys a checkpoint may be
    signed with (None: any the store lists). `workers`: processes for passes 1 and 2 (None:
    one a core for a store of PARALLEL_FROM entries or more, else this process alone).
    `kept`: checkpoints kept outside the store, which the logs must still hold."""
    kept = kept or Kept()
    result = Audit(findings=list(kept.findings))
    with engine.connect() as conn, _any_text(conn):
        bounds = {
            family.family: _id_bounds(conn, family.family, family.table) for family in FAMILIES
        }
        checkpoints = all_checkpoints(conn)
        known_keys = set(verifier_keys(conn))
        months = {
            (str(f), str(m))
            for f, m in conn.exec_driver_sql("SELECT DISTINCT family, month FROM log_leaf")
        }
        queued = conn.exec_driver_sql(
            "SELECT family, count(*) FROM log_pending GROUP BY family ORDER BY family"
        ).all()
        retirements = conn.exec_driver_sql(
            "SELECT family, month, note FROM log_retirement WHERE note IS NOT NULL"
        ).all()
    if queued:
        # not findings, but not checked either: a store read only by commands without its
        # key had its access-log entries wait unsigned, and this said nothing (review 29f)
        counts = ", ".join(f"{count} of the {family} logs" for family, count in queued)
        result.notes.append(
            f"entries queued and not yet in a signed checkpoint: {counts} (the next seal by "
            "the store's key takes them: `serve`, `deliver`, an ingest, or a read with the key)"
        )
    by_log: dict[tuple[str, str], list[StoredCheckpoint]] = {}
    for checkpoint in checkpoints:
        by_log.setdefault((checkpoint.family, checkpoint.month), []).append(checkpoint)
    if workers is None:
        size = sum(high - low for low, high in bounds.values())
        workers = min(2, os.cpu_count() or 1) if size >= PARALLEL_FROM else 1
    slices = workers * _SLICES_PER_WORKER if workers > 1 else 1
    tasks: list[_Task] = [
        _Entries(family.family, low, high)
        for family in FAMILIES
        for low, high in _split(*bounds[family.family], slices)
    ]
    signature_findings = {
        id(checkpoint): list(_signature_findings(checkpoint, known_keys, trusted))
        for checkpoint in checkpoints
    }
    retired_at = _signed_retirements(
        retirements, prefix, _verifiers(trusted if trusted is not None else known_keys)
    )
    tasks += [
        _Roots(
            family,
            month,
            tuple(by_log.get((family, month), [])),
            tuple(kept.by_log.get((family, month), [])),
            family_named(family).origin(prefix, month),
            frozenset(
                c.size for c in by_log.get((family, month), []) if not signature_findings[id(c)]
            ),
            frozenset(retired_at.get((family, month), ())),
        )
        for family, month in sorted(months | set(by_log) | set(kept.by_log) | set(retired_at))
    ]
    for findings, entries in _run(engine, tasks, workers):
        result.findings += [f for f in findings if not isinstance(f, Note)]
        result.notes += [str(f) for f in findings if isinstance(f, Note)]
        result.entries += entries
    result.checkpoints = len(checkpoints)
    for checkpoint in checkpoints:
        result.findings += signature_findings[id(checkpoint)]
    return result


# what DUIS ingest derives from a payload and its time: (execution_at, subject_device_id), or
# None for a payload it does not read (ingest.duis.derived_fields, given by the caller)
Deriver = Callable[[str, datetime], "tuple[datetime | None, str] | None"]


def derived_field_findings(engine: Engine, derive: Deriver, found: list[str]) -> list[str]:
    """`record <id> changed` for each record whose execution_at or subject_device_id is not
    what its payload gives (those of `found` aside, already named): no leaf holds them, and
    an intruder's future date or Device passed every check (audit 27a). A field emptied is
    not seen: a SAT JSON Lines record's are empty whatever its payload holds."""
    named = set(found)
    findings = []
    with engine.connect() as conn, _small_cache(conn):
        for record in records_with_derived_fields(conn):
            derived = derive(record.payload, record.logged_at)
            stored = (record.execution_at, record.subject_device_id)
            finding = f"record {record.record_id} changed"
            if derived != stored and finding not in named:
                findings.append(finding)
    return findings


def listed_verifier_keys(engine: Engine) -> list[str]:
    """The verifier keys the store lists, as `log verify` reads them: one that is not UTF-8
    text is no key (the checkpoints naming it are findings), and is left out."""
    with engine.connect() as conn, _any_text(conn):
        return [key for key in verifier_keys(conn) if key.isprintable()]


def _id_bounds(conn: Connection, family: str, table: str) -> tuple[int, int]:
    """[low, high) holding every id of the family's entries and of its leaves and queue."""
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    row = conn.exec_driver_sql(
        f"SELECT min(id), max(id) FROM {table} UNION ALL "
        f"SELECT min(entry_id), max(entry_id) FROM log_leaf WHERE family = {mark} UNION ALL "
        f"SELECT min(entry_id), max(entry_id) FROM log_pending WHERE family = {mark}",
        (family, family),
    ).all()
    lows = [int(low) for low, _ in row if low is not None]
    highs = [int(high) for _, high in row if high is not None]
    return (min(lows), max(highs) + 1) if lows else (0, 0)


def _split(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    if high <= low:
        return []
    step = -(-(high - low) // parts)
    return [(start, min(high, start + step)) for start in range(low, high, step)]


def _run(engine: Engine, tasks: list[_Task], workers: int) -> Iterator[tuple[list[str], int]]:
    """Each task's (findings, entries checked), in the order of the tasks."""
    if workers <= 1:
        for task in tasks:
            with engine.connect() as conn:
                yield _perform(conn, task)
        return
    # imported here: a read's seal imports this module for listed_verifier_keys alone
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    url = engine.url.render_as_string(hide_password=False)
    # spawned, not forked: a fork would share the caller's open connections and threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(_perform_at, [url] * len(tasks), tasks)


_engines: dict[str, Engine] = {}


def _perform_at(url: str, task: _Task) -> tuple[list[str], int]:
    """A task in a worker process, on the worker's own engine."""
    engine = _engines.get(url) or _engines.setdefault(url, make_engine(url, pool_size=1))
    with engine.connect() as conn:
        return _perform(conn, task)


def _perform(conn: Connection, task: _Task) -> tuple[list[str], int]:
    with _small_cache(conn):
        if isinstance(task, _Entries):
            counted = [0]
            return list(_entries_against_leaves(conn, task, counted)), counted[0]
        return list(_roots(conn, task)), 0


# A pass reads each page once: SQLite's page cache (64 MB a connection, for the searches)
# kept what it had read, and at 1M records `log verify` held 490 MB across its processes,
# two connections each (audit 24c)
_AUDIT_CACHE_KIB = 8192


@contextmanager
def _small_cache(conn: Connection) -> Iterator[None]:
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{_AUDIT_CACHE_KIB}")
    try:
        with _any_text(conn):
            yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


def _text_as_stored(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


@contextmanager
def _any_text(conn: Connection) -> Iterator[None]:
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


def _entries_against_leaves(conn: Connection, task: _Entries, counted: list[int]) -> Iterator[str]:
    """Merge the family's entries, in id order, with the leaf hashes held for them."""
    family = family_named(task.family)
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    held_sql = " UNION ALL ".join(
        f"SELECT entry_id, leaf_hash FROM {table} WHERE family = {mark} "
        f"AND entry_id >= {mark} AND entry_id < {mark}"
        for table in ("log_leaf", "log_pending")
    )
    # a second connection: the entries and the leaves stream side by side
    with conn.engine.connect() as other, _small_cache(other):
        held = iter(
            other.execution_options(stream_results=True, yield_per=_STREAM).exec_driver_sql(
                held_sql + " ORDER BY entry_id", (task.family, task.low, task.high) * 2
            )
        )
        leaf = next(held, None)
        for entry_id, computed in family.leaves(conn, task.low, task.high):
            counted[0] += 1
            while leaf is not None and leaf[0] < entry_id:
                yield f"{family.noun} {leaf[0]} removed"
                leaf = next(held, None)
            if leaf is None or leaf[0] != entry_id:
                yield f"{family.noun} {entry_id} added"
                continue
            if computed is None or computed != bytes(leaf[1]):
                yield f"{family.noun} {entry_id} changed"
            leaf = next(held, None)
        while leaf is not None:
            yield f"{family.noun} {leaf[0]} removed"
            leaf = next(held, None)


def _verifiers(keys: set[str]) -> list[Verifier]:
    verifiers = []
    for key in sorted(keys):  # one that is no key (a stored one not UTF-8) verifies nothing
        try:
            verifiers.append(parse_verifier_key(key))
        except NoteError:
            continue
    return verifiers


def _signed_retirements(
    rows: Sequence[Any], prefix: str, verifiers: list[Verifier]
) -> dict[tuple[str, str], set[tuple[int, bytes]]]:
    """(size, root) of each log's retirements that a trusted key signed, over the log's own
    origin: an unsigned, forged or edited one, or one of another log, retires nothing."""
    retired: dict[tuple[str, str], set[tuple[int, bytes]]] = {}
    for family, month, note in rows:
        try:
            signed = verify_retirement(str(note), verifiers, ed25519_check)
        except NoteError:
            continue
        if family in {f.family for f in FAMILIES}:
            if signed.origin == family_named(family).origin(prefix, month):
                retired.setdefault((family, month), set()).add((signed.size, signed.root))
    return retired


def _signature_findings(
    checkpoint: StoredCheckpoint, known_keys: set[str], trusted: set[str] | None
) -> Iterator[str]:
    where = f"log {checkpoint.origin} checkpoint {checkpoint.size}"
    if checkpoint.verifier_key not in known_keys:
        yield f"{where} names a verifier key the store never recorded"
    if trusted is not None and checkpoint.verifier_key not in trusted:
        yield f"{where} is signed by a key that is not trusted: {checkpoint.verifier_key}"
    try:
        signed = verify_checkpoint(
            checkpoint.note, parse_verifier_key(checkpoint.verifier_key), ed25519_check
        )
    except NoteError as e:
        yield f"{where} signature does not verify ({e})"
        return
    if (signed.origin, signed.size, signed.root) != (
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
    ):
        yield f"{where} note differs from its stored origin, size or root"


def _roots(conn: Connection, task: _Roots) -> Iterator[str]:
    """Fold the month's leaves in index order (a stack of perfect subtrees), comparing each
    completed tile with the stored one and each checkpointed size's root with its checkpoint,
    stored or kept. Leaves past the newest checkpoint may not have their tiles yet (the next
    seal adds them)."""
    kept: dict[int, list[bytes]] = {}
    for size, root in task.kept:
        kept.setdefault(size, []).append(root)
    wanted = {c.size: c for c in task.checkpoints}
    tiles = _stored_tiles(conn, task.family, task.month)
    count = yield from _folded_leaves(conn, task, tiles, wanted, kept)
    if count is None:  # a leaf missing: nothing past it can be judged
        return
    if count == 0:
        yield from _without_leaves(conn, task, wanted, kept)
        return
    yield from _beyond_the_leaves(conn, task, count, wanted, kept, tiles)


def _mark(conn: Connection) -> str:
    """The driver's parameter mark."""
    return "?" if conn.dialect.name == "sqlite" else "%s"


def _stored_tiles(conn: Connection, family: str, month: str) -> dict[tuple[int, int], bytes]:
    """The month's stored tiles, by (level, index)."""
    mark = _mark(conn)
    return {
        (int(level), int(index)): bytes(h)
        for level, index, h in conn.exec_driver_sql(
            "SELECT level, node_index, hash FROM log_node "
            f"WHERE family = {mark} AND month = {mark}",
            (family, month),
        )
    }


def _folded_leaves(
    conn: Connection,
    task: _Roots,
    tiles: dict[tuple[int, int], bytes],
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
) -> Generator[str, None, int | None]:
    """What the leaves, folded in index order, say against the tiles (each one met is taken
    out of `tiles`) and the checkpoints; returns how many leaves there were, or None when one
    was missing (said, with the entries removed with it)."""
    origin, sealed = task.origin, max(wanted, default=0)
    mark = _mark(conn)
    rows = conn.execution_options(stream_results=True, yield_per=_STREAM).exec_driver_sql(
        "SELECT leaf_index, leaf_hash, entry_id FROM log_leaf "
        f"WHERE family = {mark} AND month = {mark} ORDER BY leaf_index",
        (task.family, task.month),
    )
    stack: list[tuple[int, bytes]] = []
    count = 0
    previous: int | None = None  # the entry id of the leaf before
    last_tile: deque[int] = deque(maxlen=1 << TILE)  # the entry ids of the lowest tile's leaves
    matched = 0  # the largest checkpointed size whose root the leaves gave
    blamed: _Blamed | None = None
    for index, leaf_hash, entry_id in rows:
        if index != count:
            yield from _removed_with_their_leaves(
                conn, task.family, previous, entry_id, index - count
            )
            yield f"log {origin} leaf {count} missing"
            return None
        previous = entry_id
        last_tile.append(entry_id)
        count += 1
        for at in _folded(stack, bytes(leaf_hash), count):
            tile = tiles.pop(at, None)
            if tile != stack[-1][1] and (tile is not None or count <= sealed):
                yield f"log {origin} tile {at[0]}/{at[1]} does not match its leaves" + (
                    _suspects(task.family, count, last_tile) if at[0] == TILE else ""
                )
        if count in wanted or count in kept:
            root = _root_of(stack)
            failed = count in wanted and root != wanted[count].root
            if failed:
                yield f"log {origin} checkpoint {count} does not match its leaves"
            if any(root != held for held in kept.get(count, ())):
                yield f"log {origin} does not match the checkpoint of size {count} kept"
            # blame by the store's sound checkpoints alone: one whose own row was edited (its
            # signature then fails), or a kept one of another store, named an untouched
            # record (review 27f)
            if count in task.sound and not failed:
                matched, blamed = count, None  # one that failed before was changed itself
            elif count in task.sound and blamed is None:
                blamed = _Blamed(matched, count, tuple(last_tile)[-(count - matched) :])
    if blamed is not None and len(blamed.entry_ids) == blamed.end - blamed.start:
        yield blamed.said(origin, family_named(task.family).noun)
    return count


def _folded(stack: list[tuple[int, bytes]], leaf: bytes, count: int) -> Iterator[tuple[int, int]]:
    """`leaf`, the `count`th, pushed on the stack of perfect subtrees and merged as far as it
    goes; the (level, index) of each tile completed, as it completes (at the stack's top)."""
    stack.append((0, leaf))
    while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
        (level, right), (_, left) = stack.pop(), stack.pop()
        stack.append((level + 1, merkle.node_hash(left, right)))
        if (level + 1) % TILE == 0:
            yield (level + 1, (count >> (level + 1)) - 1)


def _root_of(stack: list[tuple[int, bytes]]) -> bytes:
    """The root of the tree whose perfect subtrees the stack holds."""
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = merkle.node_hash(left, root)
    return root


def _without_leaves(
    conn: Connection,
    task: _Roots,
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
) -> Iterator[str]:
    """A log with no leaves: retired by retention (its checkpoints stay; their signatures are
    checked), or deleted: a month's records gone with their leaves and tiles passed as
    retired, kept checkpoints and all, on SQLite too, which has no retention (review, session
    19)."""
    origin, last = task.origin, max(wanted, default=0)
    if last and not _retired(conn, task.family, task.month):
        yield f"log {origin} has no leaves, but checkpoints up to size {last}"
    elif last and not _retirement_signed(task, wanted[last]):
        # dropped as retention drops a month, which an intruder can do too (audit 46d)
        yield (
            f"log {origin} has no leaves, but checkpoints up to size {last}, "
            "and no signed retirement"
        )
    retired = max((size for size, _ in task.retired_at), default=0)
    if retired > last:
        # a retirement signed at a size no stored checkpoint reaches: checkpoints deleted
        # after retention, which only kept checkpoints (--checkpoints) told (audit 46j)
        yield f"log {origin} was retired at size {retired}, but " + (
            f"its checkpoints reach only size {last}" if last else "has no checkpoint"
        )
    for size in sorted(kept):
        if size > last:
            yield f"log {origin} has no leaves nor checkpoint of size {size}, which was kept"
        elif size not in wanted:
            # retention keeps every checkpoint of the month: one kept and gone from the
            # store was deleted, as a month with leaves has it said (_checkpoints_gone)
            yield f"log {origin} checkpoint {size}, kept, is no longer in the store (deleted)"
        elif size in wanted and any(root != wanted[size].root for root in kept[size]):
            yield f"log {origin} does not match the checkpoint of size {size} kept"


def _beyond_the_leaves(
    conn: Connection,
    task: _Roots,
    count: int,
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
    tiles: dict[tuple[int, int], bytes],
) -> Iterator[str]:
    """What the `count` leaves cannot reach: checkpoints and retirements past them, and the
    tiles no leaf made."""
    origin = task.origin
    if task.retired_at:
        # retention signs a month's retirement and removes its leaves in one transaction, and
        # seals no retired log: leaves beside a signed retirement are the month brought back
        # by hand, and records added to it then had a checkpoint past the retirement signed
        # by the next seal (audit 46l)
        retired = max(size for size, _ in task.retired_at)
        yield f"log {origin} was retired at size {retired}, but has {count} leaves"
    for size in sorted(s for s in kept if s > count):
        yield f"log {origin} has {count} leaves, fewer than the checkpoint of size {size} kept"
    unseen = sorted(s for s in kept if s not in wanted)
    yield from _checkpoints_gone(conn, task, count, unseen)
    for size in sorted(s for s in wanted if s > count):
        yield f"log {origin} checkpoint {size} has leaves missing"
    for level, index in sorted(tiles):
        yield f"log {origin} tile {level}/{index} has no leaves"


def _checkpoints_gone(
    conn: Connection, task: _Roots, count: int, unseen: list[int]
) -> Iterator[str]:
    """What the store's checkpoints of the log no longer show: a kept checkpoint (of a size
    its leaves still reach) that the store does not hold was deleted, as checkpoints are
    never removed from a log that has leaves; and leaves past the newest checkpoint are in no
    signed checkpoint, which an ingest running, or stopped before it sealed, leaves too (the
    next seal signs them), and so does deleting the newest checkpoints (audit 27a: silent,
    and the records' proofs answered "not yet sealed"). Read again now: a seal may have
    signed more since the pass began."""
    origin, mark = task.origin, "?" if conn.dialect.name == "sqlite" else "%s"
    held = {
        int(size)
        for (size,) in conn.exec_driver_sql(
            f"SELECT tree_size FROM log_checkpoint WHERE family = {mark} AND month = {mark}",
            (task.family, task.month),
        )
    }
    for size in unseen:
        if size <= count and size not in held:
            yield f"log {origin} checkpoint {size}, kept, is no longer in the store (deleted)"
    newest = max(held, default=0)
    if newest < count:
        leaves = f"leaf {newest} is" if count - newest == 1 else f"leaves {newest}-{count - 1} are"
        newest_said = f"the newest is of size {newest}" if newest else "it has none"
        yield Note(
            f"log {origin} {leaves} in no signed checkpoint ({newest_said}): an ingest is "
            "running or stopped before it sealed (the next seal signs them), or the "
            "checkpoints that held them were deleted"
        )


def _retired(conn: Connection, family: str, month: str) -> bool:
    """Whether the month went as retention removes one: the trail's logs with their month's
    partitions (PostgreSQL), the access log's with its entries of the month and of every
    earlier one. Someone with the database can do as much; the signed retirement
    (`_retirement_signed`) is what tells retention apart."""
    # retention drops only months before the current one: a current month gone with every
    # older one looked retired, and a trail wiped whole passed (audit 46d)
    now = datetime.now(UTC)
    if month >= f"{now.year:04d}-{now.month:02d}":
        return False
    if family == ACCESS_FAMILY:
        return access_month_dropped(conn, month)
    return family == RECORD_FAMILY and month_dropped(conn, month)


def _retirement_signed(task: _Roots, last: StoredCheckpoint) -> bool:
    """Whether a trusted retirement names the log's last stored checkpoint, and every
    checkpoint kept of it agrees (none past it, the same root at its size)."""
    if (last.size, last.root) not in task.retired_at:
        return False
    return all(
        size < last.size or (size == last.size and root == last.root) for size, root in task.kept
    )


@dataclass(frozen=True)
class _Blamed:
    """Leaves [start, end) of a log: the checkpoint of size `start` matched its leaves, and
    every one from `end` on did not, so one of them was rewritten (with its entry, which
    pass 1 then finds unchanged). Named when the last tile's ids still hold them all."""

    start: int
    end: int
    entry_ids: tuple[int, ...]

    def said(self, origin: str, noun: str) -> str:
        if len(self.entry_ids) == 1:
            before = f"checkpoint {self.start} holds the leaves before it, " if self.start else ""
            return (
                f"{noun} {self.entry_ids[0]} changed (rewritten with its leaf {self.start} "
                f"of log {origin}: {before}checkpoint {self.end} does not hold it)"
            )
        ids = ", ".join(map(str, self.entry_ids))
        return (
            f"log {origin}: one of leaves {self.start}-{self.end - 1} was rewritten with its "
            f"{noun} (between checkpoints {self.start} and {self.end}), one of {ids}"
        )


def _suspects(family: str, count: int, entry_ids: deque[int]) -> str:
    """A lowest tile whose leaves hash as stored but not to the stored tile: one of its
    leaves was rewritten with its entry (the leaf hash matches the edited entry), and which
    one the log cannot tell, so all its entries are named."""
    first = count - len(entry_ids)
    ids = ", ".join(str(i) for i in entry_ids)
    noun = family_named(family).noun
    return f": one of leaves {first}-{count - 1} was rewritten with its {noun}, one of {ids}"


# the widest run of ids between two leaves that is searched for the entries of missing ones
_GAP_SEARCHED = 100_000


def _removed_with_their_leaves(
    conn: Connection, family: str, after: int | None, before: int, missing: int
) -> Iterator[str]:
    """The entries whose leaves were deleted with them, named when they can be told: a log's
    leaves hold increasing entry ids, so the `missing` leaves between the leaf of entry `after`
    and that of `before` held ids between the two; those of them that are neither an entry
    nor any log's leaf nor queued are the ones gone. Only when exactly `missing` ids are such
    is each named (an id never given, a rolled-back one, would make the count differ). A
    log's first leaves have no leaf before them: then every id from 1 up is searched, if few."""
    after = 0 if after is None else after  # ids are positive
    if not missing <= before - after - 1 <= _GAP_SEARCHED:
        return
    found = family_named(family)
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    present = {
        int(entry_id)
        for (entry_id,) in conn.exec_driver_sql(
            f"SELECT id FROM {found.table} WHERE id > {mark} AND id < {mark} UNION ALL "
            f"SELECT entry_id FROM log_leaf WHERE family = {mark} "
            f"AND entry_id > {mark} AND entry_id < {mark} UNION ALL "
            f"SELECT entry_id FROM log_pending WHERE family = {mark} "
            f"AND entry_id > {mark} AND entry_id < {mark}",
            (after, before, family, after, before, family, after, before),
        )
    }
    gone = [entry_id for entry_id in range(after + 1, before) if entry_id not in present]
    if len(gone) == missing:
        for entry_id in gone:
            yield f"{found.noun} {entry_id} removed"
