"""The access log's monthly partitions on PostgreSQL (migration 0028): made ahead of the
entries, as the trail's are (store.partitions), and dropped whole by retention.

A month of the log at 700 reads a second is 1.8 billion entries: deleted row by row through
the append-only trigger (108,000 a second), it took some 5 hours in one transaction, every
seal waiting behind it (audit 51e). A partition goes in one DROP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from ..domain.times import months_from
from .log_partitions import (
    attach_log_months,
    existing_log_months,
    logs_partitioned,
    logs_holding_entries,
    retired_logs,
)
from .postgresql_errors import no_partition_for_row
from .remembered import remembered_by_url

AHEAD_MONTHS = 3
_NAME = re.compile(r"^access_log_p(\d{4})_(\d{2})$")
# per database URL: months (`YYYY-MM`) known to exist
_known: dict[str, set[str]] = remembered_by_url({})


def partition_name(month: str) -> str:
    return f"access_log_p{month[:4]}_{month[5:7]}"


def is_access_partition(name: str) -> bool:
    return bool(_NAME.match(name))


def _month_of(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return f"{at.year:04d}-{at.month:02d}"


def bounds(month: str) -> tuple[str, str]:
    """The month's first instant and the next month's, as PostgreSQL's literals (UTC: the
    access log's months are UTC's, as its logs name them)."""
    start, after = months_from(month, 2)
    return f"'{start}-01 00:00:00+00'", f"'{after}-01 00:00:00+00'"


def existing_access_months(conn: Connection) -> set[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE p.relname = 'access_log' AND n.nspname = current_schema()"
        )
    ).scalars()
    return {f"{m.group(1)}-{m.group(2)}" for m in map(_NAME.match, rows) if m}


def ensure_access_months(engine: Engine, times: Iterable[datetime]) -> None:
    """Make sure the months of these times have their partitions, and the next few months
    (so a read's entry never waits for DDL): a set look-up when all are known to exist, else
    a look-up of those that exist and, only if one is missing, one short transaction of its
    own that makes it, committed at once (see partitions.ensure_months, whose locks these
    are: attaching a month locks the log against other DDL only, not against the reads
    appending entries). `open_store` calls it, so a server's first read does not."""
    key = str(engine.url)
    known = _known.setdefault(key, set())
    wanted = {_month_of(at) for at in times}
    if wanted <= known:
        return
    wanted |= set(months_from(_month_of(datetime.now(timezone.utc)), AHEAD_MONTHS + 1))
    with engine.begin() as conn:
        made = existing_access_months(conn)
        if not wanted <= made:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('servicetrail.partitions'))"))
            made = existing_access_months(conn)
            retired = _retired(conn, wanted - made)
            for month in sorted(wanted - made - retired):
                attach_month(conn, month)
            # their logs' too: an entry's leaf goes into its month's (store.log_partitions)
            attach_log_months(conn, "access", wanted - retired)
            made |= wanted
    known |= made


def _retired(conn: Connection, months: set[str]) -> set[str]:
    """Those of the months, none with a partition, that retention dropped: their logs are
    retired (checkpoints and no leaves: log_partitions.retired_logs, as for the trail's and
    the seal's). Made again, they would take entries no seal could ever take in
    (merkle_log.seal skips a retired log), and retention would refuse them for ever
    (UnsealedAccessMonths).

    Told by their logs, not by their retirements (log_retirement), which a month dropped by
    hand lacks: a store restored from an older backup never holds checkpoints of a month
    without its leaves, so the months it lacks are made again. So is a month whose partition
    alone was dropped by hand, its log kept: taken for retired (checkpoints, no partition),
    it was made again by no read, and every read's entry then failed, each a 500 (API and
    web) or PostgreSQL's words (CLI). Made again, its reads go on, their leaves follow the
    log's, and `log verify` names each entry that went with the partition."""
    if not months:
        return set()
    return retired_logs(conn, "access", min(months)) & months


def access_months_dropped_by_hand(conn: Connection) -> list[str]:
    """The access log's months (`YYYY-MM`) whose partition is gone while their log still
    holds leaves, or entries queued for its first seal (62d: before, named by nothing, each
    entry "removed"; log_partitions.logs_holding_entries): dropped by hand, not by retention
    (which drops a month's leaves with its entries, and refuses one with entries queued).
    The next read of the current month makes its partition again (`_retired`); an earlier
    month's stays gone, and `log verify` named each of its entries removed, never the month
    (61b). Empty on SQLite."""
    if conn.dialect.name != "postgresql" or not logs_partitioned(conn):
        return []
    gone = existing_log_months(conn, "access") - existing_access_months(conn)
    return sorted(logs_holding_entries(conn, "access", gone))


def access_dropped_by_hand_said(month: str) -> str:
    """What is wrong with such a month, and what to do."""
    return (
        f"the access log's partition of {month} ({partition_name(month)}) is gone but its log "
        "still holds its entries' leaves: it was dropped by hand, not by retention (which "
        "drops a month's log with it); restore it from a backup, or let `servicetrail "
        "retention --access-log-keep-months` retire the month once it is past"
    )


def attach_month(conn: Connection, month: str) -> None:
    """The month's table, with the log's columns and defaults, attached: its indexes and
    row trigger come with the ATTACH, which locks the log against other DDL alone."""
    name = partition_name(month)
    start, after = bounds(month)
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {name} "
            "(LIKE access_log INCLUDING ALL EXCLUDING INDEXES EXCLUDING IDENTITY)"
        )
    )
    conn.execute(
        text(
            f"ALTER TABLE access_log ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({after})"
        )
    )


def forget_months(engine: Engine, months: Iterable[str]) -> None:
    """After retention dropped them (in a transaction that committed)."""
    _known.get(str(engine.url), set()).difference_update(months)


def forgot_if_unpartitioned(engine: Engine, error: BaseException) -> bool:
    """Whether no partition held an entry's row; if so, the store's months are forgotten, so
    that the next entry makes them again: a store restored from a backup older than the
    months a running server knows made every entry, and so every logged read, fail until a
    restart."""
    if not no_partition_for_row(error, ("access_log",)):
        return False
    _known.pop(str(engine.url), None)
    return True


def once_more_if_unpartitioned(engine: Engine, append: Callable[[bool], None]) -> None:
    """`append(False)`, and `append(True)` once if no partition held its row
    (`forgot_if_unpartitioned`); `append` makes the months (`ensure_access_months`) as it
    starts. Any other error is raised at once."""
    try:
        append(False)
        return
    except Exception as e:
        if not forgot_if_unpartitioned(engine, e):
            raise
    append(True)


__all__ = [
    "AHEAD_MONTHS",
    "access_dropped_by_hand_said",
    "access_months_dropped_by_hand",
    "attach_month",
    "ensure_access_months",
    "existing_access_months",
    "forget_months",
    "forgot_if_unpartitioned",
    "is_access_partition",
    "once_more_if_unpartitioned",
    "partition_name",
]
