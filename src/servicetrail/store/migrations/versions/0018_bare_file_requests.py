"""The requests stored from bare DUIS files, by Request ID, at any time.

A request read from a bare XML file has no time of its own (its file's, or `--logged-at`),
so the same request in a capture is its duplicate whatever the two times (SPEC section 4).
On PostgreSQL a batch looks for its stored copies in its own time range, to skip the
monthly partitions it cannot be in, and missed a bare file's copy a month away: the
capture's request was stored again (audit 29c). This small partial index (bare files are
rare) lets the batch ask every month for those alone, and first whether there are any.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"

FROM_A_BARE_FILE = "identity_key LIKE 'f:%'"


def upgrade() -> None:
    # on PostgreSQL, on the partitioned table: every monthly partition gets its own
    op.create_index(
        "ix_sat_record_bare_request",
        "sat_record",
        ["request_id"],
        sqlite_where=sa.text(FROM_A_BARE_FILE),
        postgresql_where=sa.text(FROM_A_BARE_FILE),
    )


def downgrade() -> None:
    op.drop_index("ix_sat_record_bare_request", table_name="sat_record")
