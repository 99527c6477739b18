"""The web screen: server-side sessions (hashed ids) and failed sign-ins for throttling.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column(
            "username",
            sa.String(64),
            sa.ForeignKey("account.username", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_web_session_username", "web_session", ["username"])
    op.create_index("ix_web_session_last_seen_at", "web_session", ["last_seen_at"])
    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("failed_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_login_failure_username", "login_failure", ["username", "failed_at"])
    op.create_index("ix_login_failure_client_ip", "login_failure", ["client_ip", "failed_at"])


def downgrade() -> None:
    op.drop_index("ix_login_failure_client_ip", table_name="login_failure")
    op.drop_index("ix_login_failure_username", table_name="login_failure")
    op.drop_table("login_failure")
    op.drop_index("ix_web_session_last_seen_at", table_name="web_session")
    op.drop_index("ix_web_session_username", table_name="web_session")
    op.drop_table("web_session")
