"""Verifiable logs (SPEC section 7): leaves, tiles, the queue of unsealed leaves,
checkpoints and verifier keys. Append-only like the trail, except that retention may remove
the leaves and tiles of the one month it is dropping (PostgreSQL: it names that month in the
transaction setting `servicetrail.retiring_month`). Records stored before this revision get
their salt and leaf now, queued for the first seal.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from servicetrail.store.schema import UtcDateTime

revision = "0009"
down_revision = "0008"

EntryId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
APPEND_ONLY = ("log_leaf", "log_node", "log_checkpoint", "log_verifier_key")
RETIRED_BY_MONTH = ("log_leaf", "log_node")


def upgrade() -> None:
    op.create_table(
        "log_leaf",
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("leaf_index", sa.BigInteger, nullable=False),
        sa.Column("entry_id", EntryId, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("salt", sa.LargeBinary(16), nullable=True),
        sa.PrimaryKeyConstraint("family", "month", "leaf_index", name="pk_log_leaf"),
        sa.UniqueConstraint("family", "entry_id", name="uq_log_leaf_family_entry_id"),
        sqlite_with_rowid=False,  # one B-tree fewer to write per leaf
    )
    op.create_table(
        "log_node",
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("node_index", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("family", "month", "level", "node_index", name="pk_log_node"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_pending",
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("entry_id", EntryId, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("salt", sa.LargeBinary(16), nullable=True),
        sa.PrimaryKeyConstraint("family", "entry_id", name="pk_log_pending"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "log_checkpoint",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("verifier_key", sa.String(300), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_checkpoint"),
        sa.UniqueConstraint("origin", "tree_size", name="uq_log_checkpoint_origin_tree_size"),
    )
    op.create_index(
        "ix_log_checkpoint_family_month", "log_checkpoint", ["family", "month", "tree_size"]
    )
    op.create_table(
        "log_verifier_key",
        sa.Column("verifier_key", sa.String(300), nullable=False),
        sa.Column("first_used_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("verifier_key", name="pk_log_verifier_key"),
    )
    _make_append_only()
    # here, not at the top: the store's code, as it is at this revision, does the hashing
    from servicetrail.store.log_records import queue_stored_records

    queue_stored_records(op.get_bind())


def _make_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
        return
    # retention alone may delete, and only the rows of the month it names for its transaction
    op.execute(
        "CREATE FUNCTION servicetrail_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF TG_OP = 'DELETE' AND TG_TABLE_NAME IN ('log_leaf', 'log_node') "
        "AND OLD.month = current_setting('servicetrail.retiring_month', true) THEN RETURN OLD; "
        "END IF; "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION servicetrail_log_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
        )


def downgrade() -> None:
    for table in ("log_verifier_key", "log_checkpoint", "log_pending", "log_node", "log_leaf"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS servicetrail_log_append_only()")
