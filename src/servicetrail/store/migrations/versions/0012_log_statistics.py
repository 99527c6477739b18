"""PostgreSQL: fresh planner statistics for the logs' tables, after every 50,000 leaves (5,000
tiles) written, not after a tenth of the table as autovacuum's default.

Why: a log's statements are planned on statistics taken before its newest leaves. The access
family's leaves came after the records' (a store upgraded to 0010, or a quiet one whose
searches begin), and PostgreSQL, told by its statistics that the family holds no leaves,
chose the (family, entry_id) index for a read by (family, month, leaf_index) and filtered the
whole family: 60 ms a statement at 360,000 entries on the 10M store, three statements a seal,
each worker's seal once a minute, and growing with the family. With statistics at most 50,000
leaves old, such a plan reads at most about that many. Reloptions only: nothing is rewritten.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"

_THRESHOLDS = {"log_leaf": 50_000, "log_node": 5_000}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite plans these statements without statistics, on the primary key
    for table, changed_rows in _THRESHOLDS.items():
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0, "
            f"autovacuum_analyze_threshold = {changed_rows})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _THRESHOLDS:
        op.execute(
            f"ALTER TABLE {table} RESET (autovacuum_analyze_scale_factor, "
            "autovacuum_analyze_threshold)"
        )
