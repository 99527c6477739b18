"""The SAT, its registry, accounts and tokens; SAT records are append-only.

Revision ID: 0001
"""

from typing import Any

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
        sa.Column("device_id", sa.String(23), nullable=False),
        sa.Column("party_id", sa.String(32), sa.ForeignKey("party.party_id"), nullable=False),
        sa.Column("relation", sa.String(24), nullable=False),
        sa.Column("valid_from", UtcDateTime, nullable=False),
        sa.Column("valid_to", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("device_id", "relation", "valid_from", name="pk_responsibility"),
    )
    op.create_index(
        "ix_responsibility_device_party", "responsibility", ["device_id", "party_id", "valid_from"]
    )
    if op.get_bind().dialect.name == "postgresql":
        _create_partitioned_trail()
    else:
        _create_trail()
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
    if op.get_bind().dialect.name == "postgresql":
        _row_level_security()


def _trail_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", RecordId, nullable=False, autoincrement=False),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("srv", sa.String(12), nullable=True),
        sa.Column("user_id", sa.String(23), nullable=False),
        sa.Column("device_id", sa.String(23), nullable=False),
        sa.Column("response_code", sa.String(16), nullable=True),
    ]


def _payload_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("record_id", RecordId, nullable=False, autoincrement=False),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("device_id", sa.String(23), nullable=False),
        sa.Column("user_id", sa.String(23), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    ]


def _create_trail() -> None:
    op.create_table(
        "sat_record",
        *_trail_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_sat_record"),
        sa.UniqueConstraint(
            "request_id",
            "kind",
            "logged_at",
            "device_id",
            name="uq_sat_record_request_id_kind_logged_at_device_id",
        ),
    )
    op.create_index("ix_sat_record_device_time", "sat_record", ["device_id", "logged_at", "id"])
    op.create_index("ix_sat_record_user_time", "sat_record", ["user_id", "logged_at", "id"])
    op.create_table(
        "sat_payload",
        *_payload_columns(),
        sa.PrimaryKeyConstraint("record_id", name="pk_sat_payload"),
    )


def _create_partitioned_trail() -> None:
    """Monthly range partitions (created ahead of the data by store.partitions; no DEFAULT
    partition, which would make every device search slower), keyed by device first."""
    op.execute("CREATE SEQUENCE sat_record_id_seq")
    op.create_table(
        "sat_record",
        *_trail_columns(),
        sa.PrimaryKeyConstraint("device_id", "logged_at", "id", name="pk_sat_record"),
        sa.UniqueConstraint(
            "request_id",
            "kind",
            "logged_at",
            "device_id",
            name="uq_sat_record_request_id_kind_logged_at_device_id",
        ),
        postgresql_partition_by="RANGE (logged_at)",
    )
    op.execute("ALTER TABLE sat_record ALTER COLUMN id SET DEFAULT nextval('sat_record_id_seq')")
    op.execute("ALTER SEQUENCE sat_record_id_seq OWNED BY sat_record.id")
    op.create_index("ix_sat_record_user_time", "sat_record", ["user_id", "logged_at", "id"])
    op.create_index("ix_sat_record_id", "sat_record", ["id"])
    op.create_table(
        "sat_payload",
        *_payload_columns(),
        sa.PrimaryKeyConstraint("device_id", "logged_at", "record_id", name="pk_sat_payload"),
        postgresql_partition_by="RANGE (logged_at)",
    )


READER = "servicetrail_reader"
VIEWER_USER_IDS = "string_to_array(current_setting('servicetrail.user_ids', true), ',')"


def _row_level_security() -> None:
    """The second lock: the role every read runs as sees only what the rule allows.

    The application sets the viewer per transaction (store.queries) and keeps its own
    predicate, which is what makes queries fast and explainable; this is defence in depth.
    """
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {READER} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    op.execute(f"GRANT {READER} TO CURRENT_USER")
    op.execute(
        "GRANT SELECT ON party, dcc_user, device, responsibility, sat_record, sat_payload TO "
        f"{READER}"
    )
    for table in ("sat_record", "sat_payload"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"""
        CREATE POLICY mp141_visibility ON sat_record FOR SELECT TO {READER} USING (
            user_id = ANY ({VIEWER_USER_IDS})
            OR (kind IN ('request', 'acknowledgement', 'response') AND device_id <> '' AND EXISTS (
                SELECT 1 FROM responsibility r
                WHERE r.device_id = sat_record.device_id
                  AND r.party_id = current_setting('servicetrail.party_id', true)
                  AND r.valid_from <= sat_record.logged_at
                  AND (r.valid_to IS NULL OR sat_record.logged_at < r.valid_to))))""")
    op.execute(f"""
        CREATE POLICY own_payload_only ON sat_payload FOR SELECT TO {READER}
        USING (user_id = ANY ({VIEWER_USER_IDS}))""")


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
