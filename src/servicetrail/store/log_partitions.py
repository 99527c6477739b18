"""The logs' leaves and tiles on PostgreSQL, a partition of each table a log (family, month)
(migration 0029): made with the month's entries' partitions (store.partitions for the
records, store.access_partitions for the access log), dropped whole by retention.

Retention deleted a month's leaves and tiles row by row, some 370,000 a second: a month of
the access log at 700 reads a second (1.8 billion leaves) was some 80 minutes in one
transaction, and the trail's retention held the records' lock all that time, every ingest
batch's leaves and every seal waiting behind it (findings 52b 1, 2). A partition goes in
one DROP. SQLite keeps one table each: it has no retention.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ..domain.times import months_from

TABLES = ("log_leaf", "log_node")
# 0012's fresh statistics (a statement by leaf_index planned on statistics that predate the
# log's leaves read the whole family), now each partition's: a partitioned table takes no
# storage parameters, and it is a partition's statistics a log's statement is planned on
STATISTICS = {"log_leaf": 50_000, "log_node": 5_000}
_NAME = re.compile(r"^(log_leaf|log_node)_([a-z]+)_p(\d{4})_(\d{2})$")


def partition_name(table: str, family: str, month: str) -> str:
    return f"{table}_{family}_p{month[:4]}_{month[5:7]}"


def is_log_partition(name: str) -> bool:
    return bool(_NAME.match(name))


def bounds(family: str, month: str) -> str:
    """The partition's bounds on (family, month): the log's own key, and no other. December
    9999's next month, the year 10000, is past the column's seven characters: that log's
    partition ends with the family."""
    after = "MAXVALUE" if month == "9999-12" else f"'{months_from(month, 2)[1]}'"
    return f"FROM ('{family}', '{month}') TO ('{family}', {after})"


def logs_partitioned(conn: Connection) -> bool:
    """Whether the store's leaves are partitioned (migration 0029 has run): a store at an
    older schema (a migration's test, or one mid-upgrade) has the one table."""
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass('log_leaf')")
    ).scalar()
    return kind == "p"


def existing_log_months(conn: Connection, family: str) -> set[str]:
    """The months (`YYYY-MM`) of the family whose leaves have their partition."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE p.relname = 'log_leaf' AND n.nspname = current_schema()"
        )
    ).scalars()
    return {
        f"{m.group(3)}-{m.group(4)}" for m in map(_NAME.match, rows) if m and m.group(2) == family
    }


def attach_log_months(conn: Connection, family: str, months: set[str]) -> None:
    """The logs' partitions of these months of the family, those not made yet. Each is made
    as a table of its own and attached, which locks the leaves against other DDL alone (see
    partitions.ensure_months); the caller holds the partitions' advisory lock."""
    if not months or not logs_partitioned(conn):
        return
    for month in sorted(months - existing_log_months(conn, family)):
        for table in TABLES:
            name = partition_name(table, family, month)
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING ALL "
                    "EXCLUDING INDEXES) WITH (autovacuum_analyze_scale_factor = 0, "
                    f"autovacuum_analyze_threshold = {STATISTICS[table]})"
                )
            )
            conn.execute(
                text(
                    f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES "
                    f"{bounds(family, month)}"
                )
            )


def drop_log_month(conn: Connection, family: str, month: str) -> None:
    """The log's leaves and tiles, whole: the caller holds both tables (LOCK_LOGS)."""
    for table in TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {partition_name(table, family, month)}"))


# A log is retired when it has checkpoints and no leaves: retention keeps a month's
# checkpoints and drops its leaves with its entries, in one transaction; a seal skips such a
# log (merkle_log.seal), a writer refuses its entries (store.writer), and neither
# ensure_months nor ensure_access_months makes its partitions again. The months of
# log_checkpoint are walked one by one on its (family, month) index, a few index probes a
# month however many checkpoints a month holds.
_RETIRED_SINCE = text(
    "WITH RECURSIVE months(month) AS ("
    " SELECT min(month) FROM log_checkpoint WHERE family = :family AND month >= :since"
    " UNION ALL"
    " SELECT (SELECT min(c.month) FROM log_checkpoint c"
    "  WHERE c.family = :family AND c.month > months.month)"
    " FROM months WHERE months.month IS NOT NULL"
    ") SELECT month FROM months WHERE month IS NOT NULL AND NOT EXISTS ("
    " SELECT 1 FROM log_leaf l WHERE l.family = :family AND l.month = months.month)"
)
_A_LEAF = text("SELECT 1 FROM log_leaf WHERE family = :family AND month = :month LIMIT 1")


def retired_logs(conn: Connection, family: str, since: str) -> set[str]:
    """The family's retired months (`YYYY-MM`) from `since` on: checkpoints and no leaves."""
    return set(conn.execute(_RETIRED_SINCE, {"family": family, "since": since}).scalars())


def _logs_with_leaves(conn: Connection, family: str, months: set[str]) -> set[str]:
    """Those of the family's months whose log holds a leaf (a probe a month)."""
    return {
        month
        for month in months
        if conn.execute(_A_LEAF, {"family": family, "month": month}).first() is not None
    }


_QUEUED = text("SELECT DISTINCT month FROM log_pending WHERE family = :family")


def logs_holding_entries(conn: Connection, family: str, months: set[str]) -> set[str]:
    """Those of the family's months whose log holds a leaf, or an entry queued for its next
    seal (what the seals have not emptied yet: a minute's reads, a stopped ingest's
    batches). Of months whose partitions are gone, these were dropped by hand: retention
    drops a month's leaves with them, and refuses one with entries queued. Leaves alone
    missed a month dropped before its first seal (62d)."""
    if not months:
        return set()
    queued = set(conn.execute(_QUEUED, {"family": family}).scalars()) & months
    return queued | _logs_with_leaves(conn, family, months - queued)


# log_leaf's partitions, or its kind alone when it has none ('r': before migration 0029)
_PARTITIONS = (
    "SELECT p.relkind, c.relname FROM pg_class AS p "
    "LEFT JOIN pg_inherits AS i ON i.inhparent = p.oid "
    "LEFT JOIN pg_class AS c ON c.oid = i.inhrelid WHERE p.oid = to_regclass('log_leaf')"
)
# a log's last leaf index, from its partition by name: 116 logs' in one row of arrays were
# planned in 18-28 ms on a warm connection; by a UNION of a row a log, in 80-150 (the
# planner's work grew with the square of its parts); by the partitioned table, the log given
# as constants, pruned as planned, 26-32. Named by a join (the walk from log to log), or by
# parameters once psycopg prepared the statement (a generic plan), all were planned each time
_LAST_LEAF = (
    "(SELECT leaf_index FROM {partition} WHERE family = '{family}' AND month = '{month}' "
    "ORDER BY leaf_index DESC LIMIT 1)"
)
_NEWEST = (
    "(SELECT tree_size FROM log_checkpoint WHERE family = '{family}' AND month = '{month}' "
    "ORDER BY tree_size DESC LIMIT 1)"
)


def stored_logs(conn: Connection) -> dict[tuple[str, str], tuple[int, int | None]] | None:
    """PostgreSQL: every log holding leaves, with its size and its newest checkpoint's (None:
    it has none), by one statement over the leaves' partitions; None when the leaves are not
    partitioned (a store before migration 0029). The walk from log to log on log_leaf
    (log_sizes.all_log_sizes, SQLite's) planned every partition at each step: on a fresh
    connection 20-90 ms at 13 months, 180-830 ms at 60, by the machine's load (session 63)."""
    # the partitions read are those listed: a partition is dropped (retention, by hand)
    # holding the leaves' table, whose lock this waits for, and holds to the end
    conn.exec_driver_sql("LOCK TABLE log_leaf IN ACCESS SHARE MODE")
    logs: list[tuple[str, str]] = []
    for kind, name in conn.exec_driver_sql(_PARTITIONS):
        if kind != "p":
            return None
        found = _NAME.match(name or "")
        if found and found.group(1) == "log_leaf":
            logs.append((found.group(2), f"{found.group(3)}-{found.group(4)}"))
    if not logs:
        return {}
    # the names' parts are _NAME's letters and digits: nothing to quote
    names = [
        {"family": f, "month": m, "partition": partition_name("log_leaf", f, m)} for f, m in logs
    ]
    tops, newest = conn.exec_driver_sql(
        f"SELECT ARRAY[{', '.join(_LAST_LEAF.format(**n) for n in names)}], "
        f"ARRAY[{', '.join(_NEWEST.format(**n) for n in names)}]"
    ).one()
    return {
        log: (int(top) + 1, None if size is None else int(size))
        for log, top, size in zip(logs, tops, newest, strict=True)
        if top is not None
    }


# what dropping a partition locks: the tables, to the end of the transaction
LOCK_LOGS = ", ".join(TABLES)

__all__ = [
    "LOCK_LOGS",
    "TABLES",
    "attach_log_months",
    "drop_log_month",
    "existing_log_months",
    "is_log_partition",
    "logs_partitioned",
    "logs_holding_entries",
    "retired_logs",
    "stored_logs",
    "partition_name",
]
