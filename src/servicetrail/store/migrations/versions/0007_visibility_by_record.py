"""A viewer's visibility index rows by record id (issue 10 finding 7), so that looking up a
record by id starts from the viewer's own index rows: a record the viewer may not see is then
an index probe that finds nothing, the same work as a record that does not exist, and its row
(and on PostgreSQL, the row-level-security rule over it) is never read.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    # on PostgreSQL, an index on the partitioned table: each monthly partition gets its own,
    # and so does every partition made later (store.partitions)
    op.create_index("ix_sat_visibility_record", "sat_visibility", ["party_id", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_sat_visibility_record", table_name="sat_visibility")
