"""Two indexes whose ranges hold only rows the search through them may show, so that a
search's time does not tell how many rows it passed over unseen (audit 21b).

- A Device's requests, acknowledgements and responses in time order, without its alerts
  (partial on the kinds rule 3 shares): rule 3's range of a device search walked the whole
  (device_id, logged_at) range and dropped other Users' alerts one by one, 0.4 us each, so
  a supplier could count by the month the alerts other Users had of its Device (20,000 of
  them: 10.9 ms against 1.7 ms, SQLite; 10.6 against 3.0, PostgreSQL).
- A subject Device's non-device requests by User ID: a search of one's own requests naming
  a Device read every User's (SQLite: 9.8 ms against 1.5 with 20,000 of another Party's).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"

SHARED_KINDS = "kind IN ('acknowledgement', 'request', 'response')"
NAMES_A_SUBJECT = "subject_device_id IS NOT NULL"


def _partial(name: str, columns: list[str], where: str) -> None:
    # on PostgreSQL, on the partitioned table: every monthly partition gets its own
    op.create_index(
        name,
        "sat_record",
        columns,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    _partial("ix_sat_record_shared_device_time", ["device_id", "logged_at", "id"], SHARED_KINDS)
    op.drop_index("ix_sat_record_subject_device", table_name="sat_record")
    _partial(
        "ix_sat_record_subject_device",
        ["subject_device_id", "user_id", "logged_at", "id"],
        NAMES_A_SUBJECT,
    )


def downgrade() -> None:
    op.drop_index("ix_sat_record_subject_device", table_name="sat_record")
    _partial(
        "ix_sat_record_subject_device", ["subject_device_id", "logged_at", "id"], NAMES_A_SUBJECT
    )
    op.drop_index("ix_sat_record_shared_device_time", table_name="sat_record")
