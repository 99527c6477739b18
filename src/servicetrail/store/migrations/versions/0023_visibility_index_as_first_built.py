"""The visibility index of a store built by 0006 as it was first committed (66b5f6b), mended.

0006 was rewritten after that commit (01a624a): its first text gave sat_visibility a
request_id column, NOT NULL, and an index on (party_id, request_id), which the text that
replaced it has not. A store built by the first text kept both through every later upgrade:
the ingest writes no request_id there, so every batch failed after the upgrade (NOT NULL
constraint failed: sat_visibility.request_id), and `db check` named two differences that no
command mended. Here they go, and on PostgreSQL the key carries kind and srv as 0006 now
builds it. A store built by 0006's later text has neither: nothing to do.

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"

KEY = "party_id, access, logged_at, record_id"


def upgrade() -> None:
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("sat_visibility")}
    if "request_id" not in columns:
        return
    op.execute("DROP INDEX IF EXISTS ix_sat_visibility_request")
    # SQLite (3.35 and later) drops a column in place, a WITHOUT ROWID table's too; on
    # PostgreSQL the drop reaches every monthly partition
    op.execute("ALTER TABLE sat_visibility DROP COLUMN request_id")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE sat_visibility DROP CONSTRAINT pk_sat_visibility")
        op.execute(
            f"ALTER TABLE sat_visibility ADD CONSTRAINT pk_sat_visibility PRIMARY KEY ({KEY}) "
            "INCLUDE (kind, srv)"
        )


def downgrade() -> None:
    """Nothing: the column and its index were never the schema of any revision's final text."""
