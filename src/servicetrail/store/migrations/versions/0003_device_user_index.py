"""A device's own traffic per User ID, in time order: the index behind the interval-first
device search (store.queries), which reads a viewer's own rows of a busy device through it
instead of walking all of that device's rows.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # device_id first, like every index of sat_record: the table stays distributable by device
    op.create_index(
        "ix_sat_record_device_user_time", "sat_record", ["device_id", "user_id", "logged_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_sat_record_device_user_time", table_name="sat_record")
