"""Retention's signed statement of each month's log it drops (store.log_tables.log_retirement),
append-only as the checkpoints are. `log verify` took any month whose partitions were gone
with every older one's, leaves gone and checkpoints left, for retired: an intruder who did
that to every month before the current one passed it, even against kept checkpoints (audit
46d). Now a retired month needs a retirement signed by the checkpoints' key.

The months retention dropped before this revision get a row with no note, written here by the
rule `log verify` used until now; `db upgrade --sign-retirements MONTHS`, with the store's
key, signs those the operator names.

Revision ID: 0022
Revises: 0021
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0022"
down_revision = "0021"

TABLE = "log_retirement"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_retirement"),
    )
    op.create_index("ix_log_retirement_family_month", TABLE, ["family", "month"])
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
            )
        return  # and no retention
    # migration 0009's function lets retention delete leaves and tiles alone: never these
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION servicetrail_log_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
    )
    _rows_for_months_retired_before(conn)


def _rows_for_months_retired_before(conn: sa.engine.Connection) -> None:
    """The trail's months that the rule of `log verify` until now took for retired: checkpoints,
    no leaves, partitions gone with every older month's, before the current month."""
    # here, not at the top: the store's code, as it is at this revision
    from servicetrail.store.partitions import month_dropped

    now = datetime.now(timezone.utc)
    current = f"{now.year:04d}-{now.month:02d}"
    newest = conn.execute(
        sa.text(
            "SELECT DISTINCT ON (month) month, origin FROM log_checkpoint c WHERE family = 'sat' "
            "AND NOT EXISTS (SELECT 1 FROM log_leaf l WHERE l.family = 'sat' "
            "AND l.month = c.month) ORDER BY month, tree_size DESC"
        )
    ).all()
    for month, origin in newest:
        if month < current and month_dropped(conn, month):
            conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} (origin, family, month, note, created_at) "
                    "VALUES (:origin, 'sat', :month, NULL, :now)"
                ),
                {"origin": origin, "month": month, "now": now},
            )


def downgrade() -> None:
    op.drop_table(TABLE)
