"""Retention of the access log (PostgreSQL): whole months of entries go with their monthly
logs' leaves and tiles; each month's checkpoints stay, with the retirement of the last one
signed, so `log verify` tells a month retention dropped from one deleted by hand.

Every read appends an entry, and at 700 reads a second the log grew some 24 GB a day with
nothing ever removing it (audit 49d). A month's entries are a partition of the log
(migration 0028), and its leaves and tiles partitions of theirs (0029), all dropped in the one
transaction that retires its logs, so no state in between (entries gone and leaves left, or
the reverse) is ever committed for `log verify` to name. (Deleted row by row through the
append-only trigger, as 0027 let them, a month at that rate took some 5 hours: audit 51e;
its leaves alone, some 80 minutes: finding 52b 1.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine

from ..signing import Signer, log_prefix
from .access_partitions import existing_access_months, forget_months, partition_name
from .access_tables import EVERY_PARTYS_ENTRIES, access_log
from .access_writer import ACCESS_FAMILY
from .log_partitions import LOCK_LOGS, drop_log_month
from .log_retirement import NoSigner, retire_month
from .log_tables import log_checkpoint, log_pending, log_retirement
from .log_tree import latest_checkpoint
from .merkle_log import lock_family, unsealed
from .partitions import RETENTION_LOCK_WAIT, patiently


@dataclass(frozen=True)
class AccessMonth:
    """A month of the access log retention drops (or would): `entries`, those it removed (a
    dry run: its last checkpoint's size, every entry sealed); `by_hand`: its partition was
    gone already, dropped by hand (retention drops it in the transaction that retires the
    log), and those entries with it."""

    month: str
    entries: int
    by_hand: bool = False


class UnsealedAccessMonths(Exception):
    """Months of the access log retention would drop that hold entries in no signed
    checkpoint."""

    def __init__(self, months: list[str]) -> None:
        super().__init__(", ".join(months))
        self.months = months


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = int(month[:4]), int(month[5:7])
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    after = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=timezone.utc)
    return start, after


def _cutoff(keep_months: int) -> str:
    """The first month kept: `keep_months` whole months before the current one are kept."""
    now = datetime.now(timezone.utc)
    index = now.year * 12 + now.month - 1 - keep_months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _months_before(conn: Connection, cutoff: str) -> list[str]:
    """The access log's months before `cutoff` not yet retired: those with checkpoints (a
    small table) or queued entries, less those with a retirement already."""
    checkpointed = select(log_checkpoint.c.month).where(
        log_checkpoint.c.family == ACCESS_FAMILY, log_checkpoint.c.month < cutoff
    )
    queued = select(log_pending.c.month).where(
        log_pending.c.family == ACCESS_FAMILY, log_pending.c.month < cutoff
    )
    retired = {
        str(m)
        for m in conn.execute(
            select(log_retirement.c.month).where(log_retirement.c.family == ACCESS_FAMILY)
        ).scalars()
    }
    found = {str(m) for m in conn.execute(checkpointed.union(queued)).scalars()}
    return sorted(found - retired)


def drop_access_months(
    engine: Engine,
    keep_months: int,
    dry_run: bool = False,
    signer: Signer | None = None,
    committing: Callable[[list[AccessMonth]], None] | None = None,
) -> list[AccessMonth]:
    """`drop_access_older_than` in a transaction of its own; `committing` as for
    partitions.drop_months."""
    with engine.begin() as conn:
        dropped = drop_access_older_than(conn, keep_months, dry_run, signer)
        if committing is not None and dropped and not dry_run:
            committing(dropped)
    if not dry_run:
        forget_months(engine, [month.month for month in dropped])
    return dropped


def _lock_log(conn: Connection) -> None:
    """The log and its leaves and tiles to this transaction alone, for its drops: asked for
    RETENTION_LOCK_WAIT at a time, in a savepoint, so that a try a read is in the way of
    undoes nothing done before it, and a read, a batch's leaves or a seal waits behind a try
    no longer than that. StoreBusy after RETENTION_PATIENCE_SECONDS: the transaction must
    then roll back, and nothing is dropped."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{RETENTION_LOCK_WAIT}'"))

    def in_a_savepoint() -> None:
        with conn.begin_nested():
            conn.execute(text(f"LOCK TABLE access_log, {LOCK_LOGS} IN ACCESS EXCLUSIVE MODE"))

    patiently(in_a_savepoint, "the access log", "reads held it")


def drop_access_older_than(
    conn: Connection, keep_months: int, dry_run: bool = False, signer: Signer | None = None
) -> list[AccessMonth]:
    """Drop the access log's months that ended more than `keep_months` months ago: their
    partitions, leaves, tiles and queue; their checkpoints stay, the last one's retirement
    signed by `signer` (NoSigner without it). A month with entries in no signed checkpoint
    is refused (UnsealedAccessMonths), as retention refuses the trail's: its checkpoints are
    all that stays of it. The retirements first; then the log and the logs' tables are
    locked (`_lock_log`) for the drops alone, the month's entries, leaves and tiles each a
    partition (store.log_partitions), and the commit follows at once. Seals meanwhile leave
    the access log's queue as it is."""
    if conn.dialect.name != "postgresql":
        raise ValueError("retention of the access log is PostgreSQL's only")
    # asked under the family's lock, which a seal takes to append the family's leaves: a seal
    # under way may be appending to an old month's log what this would not see, and its
    # leaves then outlived the retirement (`log verify`: "retired at size N, but has M
    # leaves"). Seals that begin meanwhile seal the other families' logs and leave this
    # one's queued (merkle_log._family_free)
    lock_family(conn, ACCESS_FAMILY)
    months = _months_before(conn, _cutoff(keep_months))
    sizes = {month: latest_checkpoint(conn, ACCESS_FAMILY, month) for month in months}
    held = existing_access_months(conn)
    # every entry of a month dropped is in its last checkpoint (an unsealed month is
    # refused): its size is the count, which a partition dropped whole is never scanned for
    counted = [AccessMonth(m, c.size if c else 0, m not in held) for m, c in sizes.items()]
    if dry_run or not months:  # (a run seals first, with the key: retention_cmd)
        return counted
    open_logs = [month for month in months if unsealed(conn, ACCESS_FAMILY, month)]
    if open_logs:
        raise UnsealedAccessMonths(open_logs)
    unsigned = [month for month, last in sizes.items() if last is not None]
    if unsigned and signer is None:
        raise NoSigner(unsigned)
    for found in counted:
        retire_month(conn, ACCESS_FAMILY, found.month, signer, log_prefix(), found.by_hand)
    _lock_log(conn)
    for month in months:
        if month in held:
            conn.execute(text(f"DROP TABLE {partition_name(month)}"))
        drop_log_month(conn, ACCESS_FAMILY, month)
    return counted


def access_month_dropped(conn: Connection, month: str) -> bool:
    """Whether the access log's month (`YYYY-MM`) went as retention removes one: no entry of
    it nor of any earlier month is left, as retention drops every month before a cutoff. A
    month emptied while an earlier one still has entries was deleted by hand. The signed
    retirement (log_audit) is what tells retention from someone doing as much."""
    _, after = _month_bounds(month)
    earlier = select(access_log.c.id).where(EVERY_PARTYS_ENTRIES, access_log.c.at < after)
    return conn.execute(earlier.limit(1)).first() is None


__all__ = [
    "AccessMonth",
    "UnsealedAccessMonths",
    "access_month_dropped",
    "drop_access_months",
    "drop_access_older_than",
]
