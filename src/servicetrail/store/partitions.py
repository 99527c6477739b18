"""PostgreSQL monthly partitions: created ahead of the data, dropped whole by retention."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .access_partitions import is_access_partition
from .engine import StoreError
from .log_partitions import (
    LOCK_LOGS,
    attach_log_months,
    drop_log_month,
    existing_log_months,
    is_log_partition,
    logs_holding_entries,
    retired_logs,
)
from .limits import StoreBusy
from .postgresql_errors import no_partition_for_row, psycopg_error
from .remembered import remembered_by_url
from .log_records import FAMILY as RECORD_FAMILY
from ..signing import Signer, log_prefix
from ..domain.times import seconds_text
from .log_tree import latest_checkpoint
from .log_retirement import NoSigner, retire_month
from .merkle_log import lock_family, unsealed
from .watch_tables import watch_event

T = TypeVar("T")
PARTITIONED = ("sat_record", "sat_payload", "sat_visibility")
AHEAD_MONTHS = 3
_NAME = re.compile(r"^(sat_record|sat_payload|sat_visibility)_p(\d{4})_(\d{2})$")
# Per database URL: months known to exist. Filled by the record writers alone (a load: `ingest`,
# `generate --into-store`; no server writes records) for the whole of a run, which may last
# hours: a store restored meanwhile from an older backup lost months still believed in, and
# the run stopped at its next batch of one (now forgotten, and made again by the batch's
# replay: `forgot_if_unpartitioned`)
_known: dict[str, set[tuple[int, int]]] = remembered_by_url({})


def _next(year: int, month: int) -> tuple[int, int]:
    return (year + month // 12, month % 12 + 1)


def _month_start(year: int, month: int) -> str:
    """A month's first instant as PostgreSQL's literal. Text, not a Python date: December
    9999, a time the input formats accept, ends in the year 10000, past Python's dates but
    not PostgreSQL's."""
    return f"'{year:04d}-{month:02d}-01 00:00:00+00'"


def _add_months(year: int, month: int, count: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + count
    return index // 12, index % 12 + 1


def existing_months(conn: Connection, table: str = "sat_record") -> set[tuple[int, int]]:
    """The months with a partition of `table`."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"
        ),
        {"table": table},
    ).scalars()
    return {(int(m.group(2)), int(m.group(3))) for m in map(_NAME.match, rows) if m}


def _tables(conn: Connection) -> list[str]:
    """The partitioned tables the store has: one at an older schema (a migration's test, or
    one mid-upgrade) lacks the newer ones."""
    return [
        t
        for t in PARTITIONED
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": t}).scalar() is not None
    ]


def _whole_months(conn: Connection, tables: list[str]) -> set[tuple[int, int]]:
    """The months with a partition of each of the tables: one of them dropped by hand
    (sat_payload's, say) left a month its records' rows could not all go into, and every
    load of it stopped with PostgreSQL's words alone (61b)."""
    held = [existing_months(conn, table) for table in tables]
    return set.intersection(*held) if held else set()


def ensure_months(engine: Engine, times: Iterable[datetime]) -> None:
    """Make sure every month these times fall in has its partitions (and the next few months,
    so live traffic never waits for DDL). A no-op when all are known to exist.

    Called by a loader before its batch reads the trail, on a connection of its own, in a
    short transaction that commits at once:
    - each partition is made as a table of its own and then attached, which locks the
      partitioned table only against other DDL (SHARE UPDATE EXCLUSIVE), where `CREATE TABLE
      ... PARTITION OF` locked it against everything: two loaders then deadlocked (each
      batch's reads held what the other's DDL waited for), and every reader waited for the
      batch that made a month to commit;
    - a month is remembered as made only once it is committed (a batch that rolled back
      left it remembered, and its replay failed on a month that was not there)."""
    key = str(engine.url)
    known = _known.setdefault(key, set())
    wanted = {(t.year, t.month) for t in times}
    if wanted <= known:
        return
    asked = set(wanted)
    now = datetime.now(timezone.utc)
    wanted |= {_add_months(now.year, now.month, i) for i in range(AHEAD_MONTHS + 1)}
    with engine.begin() as conn:
        # past this, a DDL lock that cannot be had (a retention run's, say) fails the batch,
        # which its loader replays, rather than leaving it waiting
        conn.execute(text("SET LOCAL lock_timeout = '5s'"))
        # one creator at a time: two loaders racing to create the same month would fail
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('servicetrail.partitions'))"))
        tables = _tables(conn)
        made = _whole_months(conn, tables)
        # neither a month retention dropped nor one dropped by hand is made again (see there)
        missing = wanted - made
        retired = _retired(conn, missing)
        by_hand = _dropped_by_hand(conn, missing - retired)
        _refuse_if_dropped_by_hand(asked & by_hand)
        gone = retired | by_hand
        for year, month in sorted(missing - gone):
            for table in tables:
                _attach_month(conn, table, year, month)
        # the months' logs too: a record's leaf goes into its month's (store.log_partitions)
        attach_log_months(conn, RECORD_FAMILY, {month_name(month) for month in wanted - gone})
        made |= wanted - gone
    known |= made


def forgot_if_unpartitioned(engine: Engine, error: BaseException) -> bool:
    """Whether no partition held a record's row; if so, the store's months are forgotten, so
    that the batch's replay (ingest.trail_load) makes them again: the batch is not tried
    again here, its transaction is aborted."""
    if not no_partition_for_row(error, PARTITIONED):
        return False
    _known.pop(str(engine.url), None)
    return True


def month_name(month: tuple[int, int]) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def _retired(conn: Connection, months: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of the months, not whole (a partition missing), that retention has dropped:
    their logs are retired (checkpoints and no leaves: log_partitions.retired_logs, the
    writer's rule and the seal's). Made again, they took the records of a loader that had
    checked for retired months before retention committed, records no seal could ever take
    in, and `log verify` failed for good (audit 25a). Those rows now fail, and are refused on
    the loader's replay."""
    if not months or conn.execute(text("SELECT to_regclass('log_checkpoint')")).scalar() is None:
        return set()  # a store mid-upgrade, before the logs
    names = {month_name(month): month for month in months}
    return {names[m] for m in retired_logs(conn, RECORD_FAMILY, min(names)) if m in names}


def _dropped_by_hand(conn: Connection, months: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those of the months, not whole (a partition missing), whose log still holds leaves
    or queued entries (log_partitions.logs_holding_entries): retention drops a month's
    leaves with its partitions, in one transaction, so they were dropped by hand. Not made
    again either: empty, they took the month's next records, and its ingest went on past
    the loss (only `log verify` named the records gone)."""
    if not months or conn.execute(text("SELECT to_regclass('log_leaf')")).scalar() is None:
        return set()
    names = {month_name(month): month for month in months}
    return {names[m] for m in logs_holding_entries(conn, RECORD_FAMILY, set(names))}


def months_dropped_by_hand(conn: Connection, before: str | None = None) -> list[str]:
    """The trail's months (`YYYY-MM`, before `before` if given) whose partitions are gone, all
    or some, while their log still holds leaves or queued entries: dropped by hand, not by
    retention. Empty on SQLite, which has no partitions."""
    if conn.dialect.name != "postgresql":
        return []
    logged = {
        (int(m[:4]), int(m[5:7])) for m in existing_log_months(conn, RECORD_FAMILY)
    } | _checkpointed(conn)
    missing = {
        month
        for month in logged - _whole_months(conn, _tables(conn))
        if before is None or month_name(month) < before
    }
    return sorted(month_name(month) for month in _dropped_by_hand(conn, missing))


def dropped_by_hand_between(
    conn: Connection, time_from: datetime | None, time_to: datetime | None
) -> list[str]:
    """Those of `months_dropped_by_hand` that [time_from, time_to) reaches into (None: no
    bound; aware UTC, as domain.times.parse_time gives them, the partitions' months being
    UTC's): a search over them finds none of their records, and said nothing of why."""
    first = (time_from.year, time_from.month) if time_from else (0, 0)
    last = (10_000, 1)
    if time_to is not None:
        # a bound on a month's first instant stops before that month (counted, not by
        # subtracting a microsecond: the year 1's first instant has none before it)
        last = (time_to.year, time_to.month)
        if time_to == time_to.replace(day=1, hour=0, minute=0, second=0, microsecond=0):
            last = _add_months(*last, -1)
    return [
        month
        for month in months_dropped_by_hand(conn)
        if first <= (int(month[:4]), int(month[5:7])) <= last
    ]


def _checkpointed(conn: Connection) -> set[tuple[int, int]]:
    """The trail's months with checkpoints (their logs' partitions may be gone, on a store
    whose logs are not partitioned yet)."""
    if conn.execute(text("SELECT to_regclass('log_checkpoint')")).scalar() is None:
        return set()
    sealed = conn.execute(
        text("SELECT DISTINCT month FROM log_checkpoint WHERE family = 'sat'")
    ).scalars()
    return {(int(m[:4]), int(m[5:7])) for m in sealed}


class MonthDroppedByHand(StoreError):
    """A month's partitions are gone and its log is not: not retention's doing."""


def dropped_by_hand_said(month: str) -> str:
    """What is wrong with such a month (`YYYY-MM`), and what to do."""
    return (
        f"the store's partitions of {month} are gone, all or some, but its log still holds "
        "their records' leaves: they were dropped by hand, not by retention (which drops a "
        f"month's log with them); restore those of {month}'s sat_record, sat_payload and "
        "sat_visibility partitions that are missing from a backup"
    )


def _refuse_if_dropped_by_hand(months: set[tuple[int, int]]) -> None:
    """MonthDroppedByHand for the first of these months (asked for, dropped by hand). The
    writer takes a month with leaves for not retired (store.writer), so its rows were
    written, found no partition, and the batch failed twice with PostgreSQL's words alone
    (60e)."""
    if months:
        raise MonthDroppedByHand(
            f"{dropped_by_hand_said(month_name(min(months)))}, then load again"
        )


def _attach_month(conn: Connection, table: str, year: int, month: int) -> None:
    """The month's table with the partitioned table's columns, defaults and constraints; its
    indexes and row triggers come with the ATTACH, named as PARTITION OF names them."""
    name = f"{table}_p{year:04d}_{month:02d}"
    attached = text("SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(:name)")
    if conn.execute(attached, {"name": name}).first() is not None:
        return  # the month's other tables' partitions were missing, not this one
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {name} "
            f"(LIKE {table} INCLUDING ALL EXCLUDING INDEXES EXCLUDING IDENTITY)"
        )
    )
    conn.execute(
        text(
            f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM "
            f"({_month_start(year, month)}) TO ({_month_start(*_next(year, month))})"
        )
    )


# Retention on a live server. Dropping a month takes the trail's tables whole, and reads
# lock them in another order than the drops did: with the reads behind it, retention waited
# without end on a long read, every Party's reads queued behind it until their statement
# limit, and then PostgreSQL broke the deadlock by killing a read or the retention (audit,
# session 19). Now it asks for every lock at once, waits a moment for them, and if reads
# hold them, lets go and tries again; waiting less than deadlock_timeout (1 s), it is never
# part of a deadlock. A read that comes while a try waits queues behind it (an ACCESS
# EXCLUSIVE waiter goes before later ACCESS SHARE), and so does an ingest batch or a seal:
# tries of half a second held each of them up that long (finding 53b 2), so a try is short
# and they come often (RETENTION_PAUSE_MOST apart at most), and retention starts at most that
# long after the long read ends, not 2 s.
RETENTION_LOCK_WAIT = "50ms"
RETENTION_PAUSE_MOST = 0.5
RETENTION_PATIENCE_SECONDS = 60.0


def unsealed_months(conn: Connection, months: list[str]) -> list[str]:
    """Those of the months (`YYYY-MM`) whose logs hold records in no signed checkpoint."""
    return [month for month in months if unsealed(conn, RECORD_FAMILY, month)]


class UnsealedMonths(Exception):
    """Months retention would drop whose logs hold records in no signed checkpoint."""

    def __init__(self, months: list[str]) -> None:
        super().__init__(", ".join(months))
        self.months = months


def drop_months(
    engine: Engine,
    keep_months: int,
    dry_run: bool = False,
    signer: Signer | None = None,
    committing: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """`drop_older_than` in a transaction of its own, tried again while reads hold the
    tables, for RETENTION_PATIENCE_SECONDS; then StoreBusy (nothing dropped). `committing`
    is told what goes just before the commit, for a stop from then on to say it may be gone."""

    def in_a_transaction() -> list[str]:
        with engine.begin() as conn:
            dropped = drop_older_than(conn, keep_months, dry_run, signer)
            # told even of no partition: a month dropped by hand whole has none, and its log
            # goes in this commit all the same
            if committing is not None and not dry_run:
                committing(dropped)
            return dropped

    return patiently(in_a_transaction, "the trail's tables", "reads or an ingest held them")


def patiently(attempt: Callable[[], T], tables: str, held_by: str) -> T:
    """`attempt`, tried again while another transaction holds a lock it asks for (each try
    waits RETENTION_LOCK_WAIT at most), pausing longer each time, for
    RETENTION_PATIENCE_SECONDS; then StoreBusy: the attempt must leave nothing done."""
    deadline = time.monotonic() + RETENTION_PATIENCE_SECONDS
    pause = 0.1
    while True:
        try:
            return attempt()
        except DBAPIError as e:
            if not psycopg_error(e.orig, "LockNotAvailable", "DeadlockDetected"):
                raise
            if time.monotonic() + pause > deadline:
                raise StoreBusy(
                    f"retention could not have {tables} to itself for "
                    f"{seconds_text(RETENTION_PATIENCE_SECONDS)} ({held_by}); nothing was dropped"
                ) from None
        time.sleep(pause)
        pause = min(RETENTION_PAUSE_MOST, pause * 2)


def retention_cutoff(keep_months: int) -> tuple[int, int]:
    """The first month retention keeps: `keep_months` whole months before the current one."""
    now = datetime.now(timezone.utc)
    return _add_months(now.year, now.month, -keep_months)


def drop_older_than(
    conn: Connection, keep_months: int, dry_run: bool = False, signer: Signer | None = None
) -> list[str]:
    """Drop whole months that ended more than `keep_months` months ago; returns what went
    (the partitions; those of a month dropped by hand went before: its log goes now).
    `signer`: the store's key, which signs each month's retirement (NoSigner without it).
    On PostgreSQL each lock is waited for RETENTION_LOCK_WAIT at most. The months' watch
    events go first, under no lock of the logs'; then, in a savepoint tried again while a
    batch, a seal or a read is in the way (`_retire_and_drop`), the records' lock, the
    months' retirements and the drops of their partitions, entries and logs alike: ingest
    and seals wait for those alone. (The leaves went by DELETE under the records' lock, and
    every batch's leaves and every seal waited for it, over an hour for a month at 700 reads
    a second; a lock missed then undid it all, and it began again: finding 52b 2.)"""
    if conn.dialect.name != "postgresql":  # it failed on SQLite as "no such table: pg_inherits"
        raise ValueError("retention of the SAT records is PostgreSQL's only")
    cutoff = retention_cutoff(keep_months)
    old = [(year, month) for year, month in sorted(existing_months(conn)) if (year, month) < cutoff]
    names = [f"{table}_p{year:04d}_{month:02d}" for year, month in old for table in PARTITIONED]
    # months whose partitions were dropped by hand before the cutoff: retention would have
    # dropped them, and their logs go as theirs would have; left, nothing ever removed them
    # and `log verify` named each of their records removed, run after run
    by_hand = months_dropped_by_hand(conn, before=month_name(cutoff))
    # those of their partitions left (one dropped by hand, the others not) go too
    left = {(int(month[:4]), int(month[5:7])) for month in by_hand} - set(old)
    names += [
        f"{table}_p{year:04d}_{month:02d}"
        for table in PARTITIONED
        for year, month in sorted(left & existing_months(conn, table))
    ]
    if dry_run or not (old or by_hand):
        return names
    conn.execute(text(f"SET LOCAL lock_timeout = '{RETENTION_LOCK_WAIT}'"))
    # the watches' events of those records, with their deliveries still to make (the
    # outbox's rows go with their events): left, the deliveries could never be made nor
    # given up, and every round of the webhook worker walked them again (audit 21a)
    first_kept = datetime(*cutoff, 1, tzinfo=timezone.utc)
    conn.execute(watch_event.delete().where(watch_event.c.record_logged_at < first_kept))
    months = sorted({month_name(month) for month in old} | set(by_hand))

    def in_a_savepoint() -> None:
        with conn.begin_nested():
            _retire_and_drop(conn, months, set(by_hand), names, signer)

    patiently(in_a_savepoint, "the trail's tables", "reads or an ingest held them")
    known = _known.get(str(conn.engine.url), set())
    known.difference_update(old)
    return names


def _retire_and_drop(
    conn: Connection, months: list[str], by_hand: set[str], names: list[str], signer: Signer | None
) -> None:
    """Under the records' lock, taken here: in a savepoint, a try that misses a lock lets
    go of it too (a batch that holds a partition and waits for it goes on)."""
    # its checkpoints are all that stays of a month: one whose records are not all in one
    # is kept, whole (audit 44d). Asked under the family's lock, which a batch appending
    # leaves takes too, so that none comes in between
    lock_family(conn, RECORD_FAMILY)
    open_logs = unsealed_months(conn, months)
    if open_logs:
        raise UnsealedMonths(open_logs)
    # unsigned, a retirement is what an intruder's drop looks like (audit 46d)
    unsigned = months_to_sign(conn, months)
    if unsigned and signer is None:
        raise NoSigner(unsigned)
    for month in months:  # each month's log goes with its records; its checkpoints stay
        retire_month(conn, RECORD_FAMILY, month, signer, log_prefix(), month in by_hand)
    conn.execute(text(f"LOCK TABLE {', '.join(PARTITIONED)}, {LOCK_LOGS} IN ACCESS EXCLUSIVE MODE"))
    for name in names:
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    for month_name in months:
        drop_log_month(conn, RECORD_FAMILY, month_name)


def months_to_sign(conn: Connection, months: list[str]) -> list[str]:
    """Those of the months (`YYYY-MM`) whose retirement retention signs: the sealed ones. A
    month never sealed (no records) has nothing to sign."""
    return [m for m in months if latest_checkpoint(conn, RECORD_FAMILY, m) is not None]


def month_dropped(conn: Connection, month: str) -> bool:
    """Whether retention has dropped the month (`YYYY-MM`): its partitions are gone, and so
    are every earlier month's, as retention drops all months before a cutoff. A month gone
    while an earlier one is still there was dropped by hand, whoever set the retiring
    setting to do it (audit 20a: such a month passed `log verify`). Never on SQLite, which
    keeps the trail whole."""
    if conn.dialect.name != "postgresql":
        return False
    year, number = int(month[:4]), int(month[5:7])
    kept = existing_months(conn)
    return (year, number) not in kept and all(held > (year, number) for held in kept)


def is_partition(name: str) -> bool:
    """The trail's monthly partitions, the access log's (store.access_partitions) or the
    logs' (store.log_partitions)."""
    return bool(_NAME.match(name)) or is_access_partition(name) or is_log_partition(name)
