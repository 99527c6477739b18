"""Who looked (SPEC section 8): the append-only access log, and auditor accounts (of no Party).

`access_log`: one entry per read of SAT records, refused UPDATE and DELETE by trigger like
the trail. On PostgreSQL a Party's reads run as the reader role, which row-level security
lets see its own Party's entries only; an auditor's reads run as the owner.

`account.party_id` becomes nullable: NULL is an auditor.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0010"
down_revision = "0009"

READER = "servicetrail_reader"
EntryId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
NOT_NULL_PARTY = "party_id VARCHAR(32) NOT NULL"


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", EntryId, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("party_id", sa.String(32), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("interface", sa.String(8), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("records_returned", sa.BigInteger, nullable=False),
        sa.Column("mp141_records_returned", sa.BigInteger, nullable=False),
        sa.Column("device_ids", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_log_party_id", "access_log", ["party_id", "at", "id"])
    op.create_index("ix_access_log_at", "access_log", ["at", "id"])
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def _sqlite() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER access_log_no_{action.lower()} BEFORE {action} ON access_log "
            f"BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
        )
    # Dropping NOT NULL changes nothing on disk, so the table's definition is edited in place
    # (SQLite's documented way for this change): rebuilding `account` would, with foreign
    # keys on, cascade-delete every web session and fail on every API token.
    bind = op.get_bind()
    (definition,) = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'account'"
    ).one()
    if NOT_NULL_PARTY not in definition:
        raise RuntimeError("account.party_id is not as migration 0005 left it")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'account'",
        (definition.replace(NOT_NULL_PARTY, "party_id VARCHAR(32)", 1),),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _postgresql() -> None:
    op.alter_column("account", "party_id", existing_type=sa.String(32), nullable=True)
    # servicetrail_append_only() is migration 0001's
    op.execute(
        "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
        "FOR EACH ROW EXECUTE FUNCTION servicetrail_append_only()"
    )
    op.execute(
        "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
    )
    op.execute(f"GRANT SELECT ON access_log TO {READER}")
    op.execute("ALTER TABLE access_log ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY own_party_entries ON access_log FOR SELECT TO {READER} "
        "USING (party_id = current_setting('servicetrail.party_id', true))"
    )


def downgrade() -> None:
    op.drop_index("ix_access_log_at", table_name="access_log")
    op.drop_index("ix_access_log_party_id", table_name="access_log")
    op.drop_table("access_log")
