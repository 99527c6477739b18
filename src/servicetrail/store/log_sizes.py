"""Every log's size and its newest checkpoint's, by a walk of them all, and the logs holding
leaves in no checkpoint that no seal would look at, listed for the next one.

A seal looks at the logs listed in log_unsealed (and the queued ones) alone (store.merkle_log,
migration 0031). A servicetrail of before 0031 still running after `db upgrade` (a server,
a long ingest) appends leaves without listing their log: if it stops before its own seal,
those leaves sat in no signed checkpoint until a batch of today appended to the same log,
and retention refused that month meanwhile, saying the log's records were "added since this
run sealed them: run it again", run after run. `list_unlisted_logs` finds them; a
server's start and `db check` run it, never a command's hot path (the walk opens every
month's partition of the leaves, 63j).
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from .driver_sql import parameter_mark
from .log_partitions import stored_logs
from .merkle_log import list_for_seal


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
    mark = parameter_mark(conn)
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


def list_unlisted_logs(engine: Engine) -> list[tuple[str, str]]:
    """List for the next seal every log holding leaves past its newest checkpoint that
    log_unsealed does not list yet; returns those it listed. Today's writers list a log in
    the transaction that appends to it, so on a store no older process wrote to, none, and
    nothing is written (a store on read-only media is looked at as before). A seal that
    commits between the walk and the listing leaves a row its checkpoint covers, which the
    next seal drops without signing (as it drops any such row). No seal's lock taken on
    PostgreSQL: a seal of a long queue holds it for minutes."""
    with engine.connect() as conn:
        if not _unlisted(conn):
            return []
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # the write lock before the walk again: a read turned writer fails at once when
            # another writer committed meanwhile (SQLITE_BUSY, past busy_timeout's wait)
            driver = conn.connection.driver_connection
            if driver is not None and not driver.in_transaction:
                driver.execute("BEGIN IMMEDIATE")
        return list_for_seal(conn, _unlisted(conn), returning=True)


def _unlisted(conn: Connection) -> list[tuple[str, str]]:
    """The logs holding leaves past their newest checkpoint that log_unsealed lacks."""
    listed = {
        (str(family), str(month))
        for family, month in conn.exec_driver_sql("SELECT family, month FROM log_unsealed")
    }
    grown = (log for log, (size, newest) in all_log_sizes(conn).items() if size > (newest or 0))
    return sorted(log for log in grown if log not in listed)
