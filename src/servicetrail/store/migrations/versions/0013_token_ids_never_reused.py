"""SQLite: an API token's id is never given again (AUTOINCREMENT). `tokens revoke` deletes a
token's row, and SQLite gave the next token the highest id still in use plus one: revoke the
newest token, create another, and it had the same id, so `tokens revoke ID` read from an
older listing revoked the new one, possibly another account's. (An id above every id in use
when this runs, revoked before it, may still be given once: nothing records it.)
PostgreSQL's ids come from a sequence already.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # rebuilt with its rows (a child table: nothing refers to it); the copy's explicit ids set
    # the new table's counter to the highest
    with op.batch_alter_table(
        "api_token", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "api_token", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
