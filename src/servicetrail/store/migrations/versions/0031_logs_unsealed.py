"""The logs with leaves past their newest checkpoint, listed (log_unsealed), so that a seal
looks at those and the queued ones alone. It looked at every log: on PostgreSQL a fresh
connection (every CLI command's; each read seals its access-log entry) opened every month's
partitions of the leaves for it, a cost that grew with the store's age (63j's finding).

add_leaves lists the logs it appends to, in its transaction, under the family's lock; the
seal takes that lock, reads the list, and removes each log it looks at. Filled here from the
leaves and checkpoints stored: every log whose leaves a checkpoint does not cover yet (on a
store a seal has just reached, none), by the walk the seal made until now. A server or
ingest of before 0031 left running on the store appends leaves unlisted: its own seal signs
them, but no seal of today sees them until a batch of today appends to the same log (`db
upgrade` says to restart them); a server's start and `db check` list them
(store.log_sizes).

The walk is this migration's own, as merkle_log.all_log_sizes walked at 0031 on SQLite (its
first text imported that function: a migration is history, and must not change when the
product does). On PostgreSQL the product read the partitions by name in one statement
(log_partitions.stored_logs), the same sizes; this walk plans every partition at each step
instead (0.35 s at 60 months, session 64), once, at the upgrade.

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"


def upgrade() -> None:
    listed = op.create_table(
        "log_unsealed",
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.PrimaryKeyConstraint("family", "month", name="pk_log_unsealed"),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # no leaf appended between the look and the commit (SQLite: the upgrade holds its
        # write lock): a writer of before 0031 lists nothing. It waits for writes under way,
        # UPGRADE_LOCK_WAIT at most (store.migrate)
        op.execute("LOCK TABLE log_leaf IN SHARE MODE")
    rows = [
        {"family": family, "month": month}
        for family, month, top, newest in _every_log(bind)
        if newest is None or newest < top + 1
    ]
    if rows:
        op.bulk_insert(listed, rows)


def _every_log(bind: sa.engine.Connection) -> list[tuple[str, str, int, int | None]]:
    """Every log holding leaves: its family, month, last leaf's index and newest checkpoint's
    size (None: it has none), a log a statement, each a seek on an index."""
    mark = "?" if bind.dialect.name == "sqlite" else "%s"
    logs: list[tuple[str, str, int, int | None]] = []
    family = month = ""
    while True:
        for where, params in (
            (f"family = {mark} AND month > {mark}", (family, month)),
            (f"family > {mark}", (family,)),
        ):
            found = bind.exec_driver_sql(_NEXT_LOG.format(where=where), params).first()
            if found is not None:
                break
        else:
            return logs
        family, month, top, newest = found
        logs.append((family, month, int(top), None if newest is None else int(newest)))


# the log after the one given in log_leaf's key order, by two seeks, not the row value
# `(family, month) > (?, ?)`, which SQLite answered by stepping through every leaf of a month
_NEXT_LOG = (
    "SELECT n.family, n.month, "
    "(SELECT l.leaf_index FROM log_leaf AS l WHERE l.family = n.family AND l.month = n.month "
    "ORDER BY l.leaf_index DESC LIMIT 1), "
    "(SELECT c.tree_size FROM log_checkpoint AS c WHERE c.family = n.family "
    "AND c.month = n.month ORDER BY c.tree_size DESC LIMIT 1) "
    "FROM (SELECT family, month FROM log_leaf WHERE {where} "
    "ORDER BY family, month LIMIT 1) AS n"
)


def downgrade() -> None:
    op.drop_table("log_unsealed")
