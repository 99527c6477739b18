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

import secrets

from alembic import op
from sqlalchemy import text

revision = "0019"
down_revision = "0018"

LEGACY = "servicetrail_reader"
NAMED_BY = "servicetrail_reader_role"

# (table, column or None, privilege) this schema grants `:role`, tables and columns alike
PRIVILEGES = """
SELECT c.relname, NULL, x.privilege_type
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN aclexplode(c.relacl) x
WHERE n.nspname = current_schema() AND x.grantee = to_regrole(:role)
UNION ALL
SELECT c.relname, a.attname, x.privilege_type
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN aclexplode(a.attacl) x
WHERE n.nspname = current_schema() AND x.grantee = to_regrole(:role)
ORDER BY 1, 2, 3
"""

POLICIES = """
SELECT tablename, policyname FROM pg_policies
WHERE schemaname = current_schema() AND :role = ANY (roles) ORDER BY 1, 2
"""


def _quoted(name: str) -> str:
    return op.get_bind().dialect.identifier_preparer.quote(name)


def _hand_over(giver: str, taker: str) -> None:
    """Every privilege and policy `giver` holds in this schema, held by `taker` instead."""
    conn = op.get_bind()
    held = conn.execute(text(PRIVILEGES), {"role": giver}).all()
    policies = conn.execute(text(POLICIES), {"role": giver}).all()
    for table, column, privilege in held:
        on = f"({_quoted(column)}) ON {_quoted(table)}" if column else f"ON {_quoted(table)}"
        op.execute(f"GRANT {privilege} {on} TO {_quoted(taker)}")
        op.execute(f"REVOKE {privilege} {on} FROM {_quoted(giver)}")
    for table, policy in policies:
        # every policy of this schema names the reader role alone (migrations 0001-0016)
        op.execute(f"ALTER POLICY {_quoted(policy)} ON {_quoted(table)} TO {_quoted(taker)}")


def _role_named_by_the_store(role: str) -> None:
    op.execute(
        f"CREATE OR REPLACE FUNCTION {NAMED_BY}() RETURNS name LANGUAGE sql IMMUTABLE "
        f"PARALLEL SAFE AS $$ SELECT '{role}'::name $$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    role = f"{LEGACY}_{secrets.token_hex(6)}"
    op.execute(f"CREATE ROLE {role} NOLOGIN")
    op.execute(f"GRANT {role} TO CURRENT_USER")
    _hand_over(LEGACY, role)
    _role_named_by_the_store(role)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    role = op.get_bind().execute(text(f"SELECT {NAMED_BY}()")).scalar_one()
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {LEGACY} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    op.execute(f"GRANT {LEGACY} TO CURRENT_USER")
    _hand_over(role, LEGACY)
    op.execute(f"DROP FUNCTION {NAMED_BY}()")
    # a database cloned from this one still reads as the role: it stays for them
    op.execute(
        f"DO $$ BEGIN DROP ROLE {_quoted(role)}; "
        "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
    )
