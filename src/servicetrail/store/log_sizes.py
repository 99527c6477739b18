"""Every log's size and its newest checkpoint's, by a walk of them all: a seal's first step
until migration 0031, since which a seal looks at the logs listed in log_unsealed (and the
queued ones) alone (store.merkle_log). Never a command's hot path: on PostgreSQL a fresh
connection opens every month's partition of the leaves for it (63j).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from .log_partitions import stored_logs


def all_log_sizes(conn: Connection) -> dict[tuple[str, str], tuple[int, int | None]]:
    """Every log holding leaves, with its size and its newest checkpoint's (None: it has
    none). SQLite's walk is one statement a log (_NEXT_LOG), and one more as each family
    ends, each part a seek on an index: a few rows a log, not its leaves; PostgreSQL's
    leaves, a partition a log, are read by log_partitions.stored_logs in one statement."""
    if conn.dialect.name == "postgresql":
        partitioned = stored_logs(conn)
        if partitioned is not None:
            return partitioned
    logs: dict[tuple[str, str], tuple[int, int | None]] = {}
    mark = _mark(conn)
    family = month = ""
    while True:
        for where, params in (
            (f"family = {mark} AND month > {mark}", (family, month)),
            (f"family > {mark}", (family,)),
        ):
            found = conn.exec_driver_sql(_NEXT_LOG.format(where=where), params).first()
            if found is not None:
                break
        else:
            return logs
        family, month, top, checkpointed = found
        logs[(family, month)] = (int(top) + 1, None if checkpointed is None else int(checkpointed))


# The (family, month) after the one given in log_leaf's key order, its last leaf's index and
# its newest checkpoint's size. Two seeks for the next log, not the row value `(family,
# month) > (?, ?)`: SQLite stepped through every leaf of the given month to pass it (81 ms a
# month at 10M records), and a seal did this holding SQLite's write lock, so every
# access-log entry waited behind it (past busy_timeout: a 500). The size by one backward step
# on the primary key, as merkle_log._size.
_NEXT_LOG = (
    "SELECT n.family, n.month, "
    "(SELECT l.leaf_index FROM log_leaf AS l WHERE l.family = n.family AND l.month = n.month "
    "ORDER BY l.leaf_index DESC LIMIT 1), "
    "(SELECT c.tree_size FROM log_checkpoint AS c WHERE c.family = n.family "
    "AND c.month = n.month ORDER BY c.tree_size DESC LIMIT 1) "
    "FROM (SELECT family, month FROM log_leaf WHERE {where} "
    "ORDER BY family, month LIMIT 1) AS n"
)


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"
