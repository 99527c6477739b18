"""The records whose User or Device is not the one their Request ID names, by Request ID.

A search by Request ID read every record carrying it from the trail's identity index and
kept those the viewer has an index row for: another Party's Request ID cost a probe a
message more than an unused one (SQLite 83 against 50 instructions; on PostgreSQL the
row-level-security rule a row), so the time of a search told a User whether another had
sent request N to a Device (audit 47f 1). A Request ID names its sender and its Device
(`originator:target:counter`), and a record of it is, as DUIS writes it, from or to one
of those two Users and about that Device: such records a viewer who is neither User can
see only by rule 3, on that Device, in its own Responsibility intervals, and the search
now reads only there (store.request_search). This index holds the others (SAT JSON Lines
checks each field's form only, so a record may name any User or Device): the search reads
them by Request ID, so none is missed. DUIS-shaped traffic leaves it empty, so the ingest
pays a test a record and no index entry (an index on the viewer's Party and the Request ID
made it three times slower).

Revision ID: 0025
Revises: 0024
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"

# as store.schema.APART_FROM_REQUEST_ID_SQL says it (the search's clause must match it)
APART = (
    "request_id <> '' AND (user_id NOT IN (substr(request_id, 1, 23), substr(request_id, 25, 23))"
    " OR (kind IN ('acknowledgement', 'request', 'response')"
    " AND device_id NOT IN ('', substr(request_id, 25, 23))))"
)


def upgrade() -> None:
    # on PostgreSQL, on the partitioned table: every monthly partition gets its own
    op.create_index(
        "ix_sat_record_apart_request",
        "sat_record",
        ["request_id"],
        sqlite_where=sa.text(APART),
        postgresql_where=sa.text(APART),
    )


def downgrade() -> None:
    op.drop_index("ix_sat_record_apart_request", table_name="sat_record")
