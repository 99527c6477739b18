"""DUIS as it is (SPEC section 4.1): command variant, execution time and subject Device;
identity by ResponseID (or a bare file's name and content) and a content digest, so a
conflicting re-send is told from a duplicate.

On SQLite a unique constraint cannot be changed in place: the trail's table is rebuilt
(rows copied in id order), with its indexes and its append-only triggers. On PostgreSQL the
partitioned table is altered, and every monthly partition follows.

Revision ID: 0004
Revises: 0003
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import RecordId, UtcDateTime

revision = "0004"
down_revision = "0003"

OLD_KEY = "uq_sat_record_request_id_kind_logged_at_device_id"
NEW_KEY = "uq_sat_record_identity"
KEY_COLUMNS = ("request_id", "kind", "logged_at", "identity_key", "device_id")
OLD_COLUMNS = (
    "id",
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "user_id",
    "device_id",
    "response_code",
)


def _new_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("command_variant", sa.SmallInteger, nullable=True),
        sa.Column("execution_at", UtcDateTime, nullable=True),
        sa.Column("subject_device_id", sa.String(23), nullable=True),
        sa.Column("identity_key", sa.String(24), nullable=False, server_default=""),
        sa.Column("digest", sa.LargeBinary(16), nullable=True),
    ]


def _subject_index() -> None:
    # a search of one's own traffic by Device also finds the non-device requests about it;
    # few requests name a subject, so the index holds only those
    op.create_index(
        "ix_sat_record_subject_device",
        "sat_record",
        ["subject_device_id", "logged_at", "id"],
        sqlite_where=sa.text("subject_device_id IS NOT NULL"),
        postgresql_where=sa.text("subject_device_id IS NOT NULL"),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in _new_columns():
            op.add_column("sat_record", column)
        op.drop_constraint(OLD_KEY, "sat_record", type_="unique")
        op.create_unique_constraint(NEW_KEY, "sat_record", list(KEY_COLUMNS))
    else:
        _rebuild_sqlite_trail()
    _subject_index()


def _rebuild_sqlite_trail() -> None:
    op.create_table(
        "sat_record_0004",
        sa.Column("id", RecordId, nullable=False, autoincrement=False),
        sa.Column("logged_at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(80), nullable=False),
        sa.Column("srv", sa.String(12), nullable=True),
        sa.Column("user_id", sa.String(23), nullable=False),
        sa.Column("device_id", sa.String(23), nullable=False),
        sa.Column("response_code", sa.String(16), nullable=True),
        *_new_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_sat_record"),
        sa.UniqueConstraint(*KEY_COLUMNS, name=NEW_KEY),
    )
    columns = ", ".join(OLD_COLUMNS)
    op.execute(
        f"INSERT INTO sat_record_0004 ({columns}) SELECT {columns} FROM sat_record ORDER BY id"
    )
    op.drop_table("sat_record")  # its indexes and triggers go with it
    op.rename_table("sat_record_0004", "sat_record")
    op.create_index("ix_sat_record_device_time", "sat_record", ["device_id", "logged_at", "id"])
    op.create_index("ix_sat_record_user_time", "sat_record", ["user_id", "logged_at", "id"])
    op.create_index(
        "ix_sat_record_device_user_time", "sat_record", ["device_id", "user_id", "logged_at", "id"]
    )
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER sat_record_no_{action.lower()} BEFORE {action} ON sat_record "
            f"BEGIN SELECT RAISE(ABORT, 'sat_record is append-only'); END"
        )


def downgrade() -> None:
    raise NotImplementedError(
        "0004 is not reversible: the trail would lose what tells its records apart"
    )
