"""The visibility index's by-record index keyed (record_id, party_id), not (party_id,
record_id): the same probes, a cheaper ingest.

Record ids grow, so with the record id first every new index row lands at the index's right
edge, where PostgreSQL's B-tree inserts without descending from the root (its rightmost-leaf
fast path) and SQLite's append stays on the last page. Keyed by Party first, a batch's rows
landed at one place per Party across the whole index: 400,000 rows into one month's
partition cost 1.6-2.0 s against 1.0-1.5 s with no such index, and 1.0-1.6 s keyed record
first (BENCHMARKS.md, session 13). The look-up by id (issue 10 finding 7) is still one probe
of both columns that finds nothing for a hidden record as for a missing one, and the watch
matcher's range of new record ids is now one range for all the watching Parties.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    # on PostgreSQL, indexes on the partitioned table: every monthly partition gets its own
    op.drop_index("ix_sat_visibility_record", table_name="sat_visibility")
    op.create_index("ix_sat_visibility_record", "sat_visibility", ["record_id", "party_id"])


def downgrade() -> None:
    op.drop_index("ix_sat_visibility_record", table_name="sat_visibility")
    op.create_index("ix_sat_visibility_record", "sat_visibility", ["party_id", "record_id"])
