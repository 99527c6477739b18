"""The SAT, its registry, accounts and tokens; SAT records are append-only.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import RecordId, UtcDateTime

revision = "0001"
down_revision = None

APPEND_ONLY_TABLES = ("sat_record", "sat_payload")


def upgrade() -> None:
    op.create_table(
        "party",
        sa.Column("party_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "dcc_user",
        sa.Column("user_id", sa.String(23), primary_key=True),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.party_id"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_dcc_user_party_id", "dcc_user", ["party_id"])
    op.create_table(
        "device",
        sa.Column("device_id", sa.String(23), primary_key=True),
        sa.Column("device_type", sa.String(16), nullable=False),
        sa.Column("smets", sa.SmallInteger, nullable=False),
    )
    op.create_table(
        "responsibility",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(23), nullable=False),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.party_id"), nullable=False),
        sa.Column("relation", sa.String(24), nullable=False),
        sa.Column("valid_from", UtcDateTime, nullable=False),
        sa.Column("valid_to", UtcDateTime, nullable=True),
        sa.UniqueConstraint("device_id", "relation", "valid_from"),
    )
    op.create_index("ix_responsibility_device_party", "responsibility", ["device_id", "party_id", "valid_from"])
    op.create_table(
        "sat_record",
        sa.Column("id", RecordId, primary_key=True),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("srv", sa.String(12), nullable=True),
        sa.Column("user_id", sa.String(23), nullable=False),
        sa.Column("device_id", sa.String(23), nullable=True),
        sa.Column("response_code", sa.String(16), nullable=True),
        sa.UniqueConstraint("request_id", "kind", "logged_at"),
    )
    op.create_index("ix_sat_record_device_time", "sat_record", ["device_id", "logged_at", "id"])
    op.create_index("ix_sat_record_user_time", "sat_record", ["user_id", "logged_at", "id"])
    op.create_table(
        "sat_payload",
        sa.Column("record_id", RecordId, primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_table(
        "account",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.party_id"), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("username", sa.String(64), sa.ForeignKey("account.username"), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    _make_append_only()


def _make_append_only() -> None:
    """The trail is evidence: the database itself refuses UPDATE and DELETE on it."""
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION servicetrail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION servicetrail_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
        )
