"""A reader role of the store's own, on PostgreSQL (audit 29a).

Every store on a server shared one role, servicetrail_reader, and every store's build made
its owner a member of it. Row-level security checks only settings any session may set, so
the owner of any other store on the server could connect to this store's database, take
that role, name every user, and read every Party's payloads and access-log entries.

Each store now reads as a role of its own, `servicetrail_reader_` and 12 random hex digits,
made here with the privileges and policies the shared role held in this schema, which it
then loses. The store names its role itself, in a function (`servicetrail_reader_role()`):
a dump carries it, and so does a database cloned from this one as a template (a clone
shares its template's role, and its owner). SQLite has no roles: nothing to do.

Revision ID: 0019
Revises: 0018
"""

from alembic import op
from sqlalchemy import text

from servicetrail.store.reader_role import (
    LEGACY_READER_ROLE,
    NAMED_BY,
    give_own_reader_role,
    hand_over,
)

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    give_own_reader_role(op.get_bind(), LEGACY_READER_ROLE)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    role = conn.execute(text(f"SELECT {NAMED_BY}()")).scalar_one()
    conn.execute(
        text(
            f"DO $$ BEGIN CREATE ROLE {LEGACY_READER_ROLE} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    )
    conn.execute(text(f"GRANT {LEGACY_READER_ROLE} TO CURRENT_USER"))
    hand_over(conn, role, LEGACY_READER_ROLE)
    conn.execute(text(f"DROP FUNCTION {NAMED_BY}()"))
    # a database cloned from this one still reads as the role: it stays for them
    conn.execute(
        text(
            f'DO $$ BEGIN DROP ROLE "{role}"; '
            "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
        )
    )
