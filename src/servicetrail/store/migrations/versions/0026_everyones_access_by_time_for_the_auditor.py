"""The index of every Party's access-log entries by time, usable by the auditor's reads alone.

A Party's page of the access log over a window newer than PostgreSQL's statistics was read
through the index of everyone's entries by time, each other Party's entry in the window read
and then dropped by row-level security's party filter: 3,000 other entries in five minutes
cost 61 buffers against 3 for an empty window, so the page's time counted other Parties'
reads (audit 50e). Made partial on a clause every entry meets (`id > 0`, ids drawn from 1)
and that only the auditor's statement writes (store.access_log), the planner can use it for
no Party's statement, which takes the Party's own index (party_id, at, id).

Revision ID: 0026
Revises: 0025
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"

# as store.access_tables.EVERY_PARTYS_ENTRIES says it (the auditor's clause must match it)
EVERY_PARTYS_ENTRIES = "id > 0"


def upgrade() -> None:
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.create_index(
        "ix_access_log_at",
        "access_log",
        ["at", "id"],
        sqlite_where=sa.text(EVERY_PARTYS_ENTRIES),
        postgresql_where=sa.text(EVERY_PARTYS_ENTRIES),
    )


def downgrade() -> None:
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.create_index("ix_access_log_at", "access_log", ["at", "id"])
