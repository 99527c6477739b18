"""Accounts that can be disabled, and the browsers each account has signed in from.

`account.disabled_at`: set by `servicetrail accounts disable`; such an account can neither
sign in nor use its API tokens until `accounts enable`.

`login_device`: a browser that signed in successfully gets a random device token (a cookie;
only its SHA-256 is kept here). Sign-in attempts from that browser are throttled on their
own, so an attacker elsewhere, or behind the same proxy, cannot lock its User out.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("disabled_at", UtcDateTime, nullable=True))
    op.create_table(
        "login_device",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "username",
            sa.String(64),
            sa.ForeignKey("account.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_login_device_username", "login_device", ["username"])
    op.create_index("ix_login_device_created_at", "login_device", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_login_device_created_at", table_name="login_device")
    op.drop_index("ix_login_device_username", table_name="login_device")
    op.drop_table("login_device")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("disabled_at")
