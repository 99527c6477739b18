"""The per-Party visibility index (issue 12): one row per record and Party that may see it,
so that a Party's first screen reads one index range whatever the size of the trail.

Built here from the records already stored, by the rule in SQL (the same clauses as
store.visibility_sql, written out: a migration is a frozen copy); from now on the writers
keep it (store.visibility_index). On PostgreSQL it is partitioned by month like the trail,
so retention drops a month of it with the month's records, and row-level security lets the
reading role see its own Party's rows only.

Revision ID: 0006
Revises: 0005
"""

import re

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import RecordId, UtcDateTime

revision = "0006"
down_revision = "0005"

READER = "servicetrail_reader"
_MONTH = re.compile(r"^sat_record_p(\d{4})_(\d{2})$")
COLUMNS = "party_id, access, logged_at, record_id, kind, srv"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "sat_visibility",
        sa.Column("party_id", sa.String(32), nullable=False),
        sa.Column("access", sa.SmallInteger, nullable=False),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("record_id", RecordId, nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("srv", sa.String(12), nullable=True),
        sa.PrimaryKeyConstraint(
            "party_id",
            "access",
            "logged_at",
            "record_id",
            name="pk_sat_visibility",
            postgresql_include=["kind", "srv"],
        ),
        **(
            {"postgresql_partition_by": "RANGE (logged_at)"}
            if postgres
            else {"sqlite_with_rowid": False}
        ),
    )
    if postgres:
        _partitions_like_the_trail()
        op.execute(f"GRANT SELECT ON sat_visibility TO {READER}")
        op.execute("ALTER TABLE sat_visibility ENABLE ROW LEVEL SECURITY")
        op.execute(f"""CREATE POLICY own_party_only ON sat_visibility FOR SELECT TO {READER}
                       USING (party_id = current_setting('servicetrail.party_id', true))""")
    _build()


def _partitions_like_the_trail() -> None:
    bind = op.get_bind()
    names = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'sat_record'"
        )
    ).scalars()
    for name in names:
        found = _MONTH.match(name)
        if not found:
            continue
        year, month = int(found.group(1)), int(found.group(2))
        next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
        op.execute(
            f"CREATE TABLE sat_visibility_p{year:04d}_{month:02d} PARTITION OF sat_visibility "
            f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') "
            f"TO ('{next_year:04d}-{next_month:02d}-01 00:00:00+00')"
        )


def _build() -> None:
    # rule 1: the Party holding the record's User ID
    op.execute(f"""INSERT INTO sat_visibility ({COLUMNS})
        SELECT u.party_id, 1, s.logged_at, s.id, s.kind, s.srv
        FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id""")
    # rule 3 (rule 2 is the kinds): the Parties responsible for the device at the record's
    # time, other than the one that owns it
    op.execute(f"""INSERT INTO sat_visibility ({COLUMNS})
        SELECT DISTINCT r.party_id, 3, s.logged_at, s.id, s.kind, s.srv
        FROM sat_record s JOIN responsibility r
          ON r.device_id = s.device_id AND r.valid_from <= s.logged_at
         AND (r.valid_to IS NULL OR s.logged_at < r.valid_to)
        WHERE s.kind IN ('request', 'acknowledgement', 'response') AND s.device_id <> ''
          AND NOT EXISTS (SELECT 1 FROM dcc_user u
                          WHERE u.user_id = s.user_id AND u.party_id = r.party_id)""")


def downgrade() -> None:
    op.drop_table("sat_visibility")
