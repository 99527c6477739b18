"""`servicetrail log verify` (SPEC section 7): the server-side audit of every log.

Three passes, each streaming (memory stays flat at 10M records):
1. every stored entry's leaf, recomputed from the entry as stored, against the leaf hash the
   log (or the queue, for entries not yet sealed) holds: `<noun> <id> changed|removed|added`;
2. every log's leaves, folded in index order, against each checkpoint's root and the tiles
   (store.log_roots: one `Roots` task a log);
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from ..domain.checkpoint import (
    BY_HAND,
    NoteError,
    Retirement,
    parse_verifier_key,
    verify_checkpoint,
)
from ..signing import ed25519_check
from .access_partitions import access_dropped_by_hand_said, access_months_dropped_by_hand
from .access_writer import ACCESS_FAMILY
from .driver_sql import parameter_mark
from .engine import make_engine
from .log_tree import StoredCheckpoint, all_checkpoints, any_text, verifier_keys
from .log_records import FAMILY as RECORD_FAMILY
from .log_records import records_with_derived_fields
from .log_kept import Kept
from .log_retirement import signed_retirements, verifiers_of
from .log_families import FAMILIES, family_named
from .log_roots import ROWS_A_FETCH, Note, Roots, roots
from .partitions import dropped_by_hand_said, months_dropped_by_hand

# below this many entries a worker process costs more (start-up, imports) than it saves
PARALLEL_FROM = 200_000
# id slices per worker: the roots of the months run beside the slices, so smaller tasks
# even out the workers' shares
_SLICES_PER_WORKER = 3


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


_Task = _Entries | Roots


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
    with engine.connect() as conn, any_text(conn):
        # first: each of their records is named removed below, a line each, and this says why
        records = family_named(RECORD_FAMILY)
        result.findings += [
            f"log {records.origin(prefix, month)}: {dropped_by_hand_said(month)}"
            for month in months_dropped_by_hand(conn)
        ] + [
            f"log {family_named(ACCESS_FAMILY).origin(prefix, month)}: "
            + access_dropped_by_hand_said(month)
            for month in access_months_dropped_by_hand(conn)
        ]
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
    retired_at = signed_retirements(
        retirements, prefix, verifiers_of(trusted if trusted is not None else known_keys)
    )
    tasks += [
        Roots(
            family,
            month,
            tuple(by_log.get((family, month), [])),
            tuple(kept.by_log.get((family, month), [])),
            family_named(family).origin(prefix, month),
            frozenset(
                c.size for c in by_log.get((family, month), []) if not signature_findings[id(c)]
            ),
            frozenset((r.size, r.root) for r in retired_at.get((family, month), ())),
        )
        for family, month in sorted(months | set(by_log) | set(kept.by_log) | set(retired_at))
    ]
    result.notes += _how_retired(retired_at)
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


def _id_bounds(conn: Connection, family: str, table: str) -> tuple[int, int]:
    """[low, high) holding every id of the family's entries and of its leaves and queue."""
    mark = parameter_mark(conn)
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
    # imported here: `log verify` with one worker never needs them
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
        return list(roots(conn, task)), 0


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
        with any_text(conn):
            yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")


def _entries_against_leaves(conn: Connection, task: _Entries, counted: list[int]) -> Iterator[str]:
    """Merge the family's entries, in id order, with the leaf hashes held for them."""
    family = family_named(task.family)
    mark = parameter_mark(conn)
    held_sql = " UNION ALL ".join(
        f"SELECT entry_id, leaf_hash FROM {table} WHERE family = {mark} "
        f"AND entry_id >= {mark} AND entry_id < {mark}"
        for table in ("log_leaf", "log_pending")
    )
    # a second connection: the entries and the leaves stream side by side
    with conn.engine.connect() as other, _small_cache(other):
        held = iter(
            other.exec_driver_sql(
                held_sql + " ORDER BY entry_id",
                (task.family, task.low, task.high) * 2,
                execution_options={"stream_results": True, "yield_per": ROWS_A_FETCH},
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


_GONE = {
    RECORD_FAMILY: "records had been dropped by hand: their partitions were",
    ACCESS_FAMILY: "entries had been dropped by hand: their partition was",
}


def _how_retired(retired: dict[tuple[str, str], set[Retirement]]) -> list[str]:
    """What the signed retirements say of how the logs' records went, where it is not the
    plain case (removed by the retention that retired the log, said by nothing): records
    dropped by hand before it (61b), or not recorded (signed before 62d). Once retired, the
    two were alike: only that retention's output had told them apart."""
    origins = {key: next(iter(signed)).origin for key, signed in retired.items()}
    hows = {key: {r.how for r in signed} for key, signed in retired.items()}
    # a count and the span, not every origin: a store retiring since before 62d has one a
    # month for years, on one line (63d); `log retirements` lists them
    unrecorded = sorted(month for (_, month), said in hows.items() if said == {None})
    return [
        f"log {origins[key]} was retired after its {_GONE[key[0]]} gone before the retention "
        "that retired it ran, which did not remove them (its signed retirement says so)"
        for key in sorted(retired)
        if BY_HAND in hows[key]
    ] + (
        [
            f"the signed retirements of {len(unrecorded)} log(s), of {_span(unrecorded)}, "
            "do not say whether retention removed their records or found them dropped by "
            "hand (signed before servicetrail recorded it; `servicetrail log retirements` "
            "lists them)"
        ]
        if unrecorded
        else []
    )


def _span(months: list[str]) -> str:
    """Sorted months as `2024-01` or `2024-01 to 2025-06`."""
    first, last = months[0], months[-1]
    return first if first == last else f"{first} to {last}"


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
