"""The role every Party's read runs as on PostgreSQL: the store's own, which the store names
(migration 0019). One role shared by every store on a server let the owner of any other
store take it and read every Party's records here (audit 29a)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .limits import StoreMisconfigured
from .postgresql_errors import psycopg_error

LEGACY_READER_ROLE = "servicetrail_reader"  # the shared role of stores before 0019
NAMED_BY = "servicetrail_reader_role"  # the store's function that names its role
_KNOWN_AS = "servicetrail.reader_role"
# The shared role made if missing, as migration 0001 makes it, but catching the
# unique_violation of a race too (see `make_shared_role`)
_SHARED_ROLE_MADE = (
    f"DO $$ BEGIN CREATE ROLE {LEGACY_READER_ROLE} NOLOGIN; "
    "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
)


def make_shared_role(engine: Engine) -> None:
    """The shared role of stores before 0019, made in a transaction of its own before a new
    store's build, whose migration 0001 makes it. Two new stores built at once on one server
    (the migrators' advisory lock is each database's own) both made it in their long build
    transactions: the second's CREATE ROLE waited for the first's build, then failed as a
    unique_violation in pg_authid, which 0001 does not catch (its duplicate_object is a role
    already there when it looked), and the command failed (contract check on a new server,
    session 58f). Made here, and caught here, 0001 finds it there."""
    with engine.begin() as conn:
        conn.execute(text(_SHARED_ROLE_MADE))


def reader_role(conn: Connection) -> str:
    """The store's reader role, asked once per connection to the server: `conn.info` lives
    with the driver's connection in the pool, so the device search, a hot path, pays no
    round trip for it."""
    known = conn.info.get(_KNOWN_AS)
    if known is None:
        known = conn.info[_KNOWN_AS] = _asked(conn.connection.driver_connection)
    return str(known)


def _asked(driver: Any) -> str:
    from psycopg.pq import TransactionStatus

    outside_a_transaction = driver.info.transaction_status == TransactionStatus.IDLE
    try:
        role = driver.execute(f"SELECT {NAMED_BY}()").fetchone()[0]
    except Exception as e:
        if not psycopg_error(e, "UndefinedFunction"):
            raise
        # a store at 0019 or later always has it: one that lost it is the administrator's
        if outside_a_transaction:
            driver.rollback()
        raise StoreMisconfigured() from None
    if outside_a_transaction:
        # ended here: the read's own first statement begins its transaction (and snapshot)
        driver.commit()
    return str(role)


# (table, column or None, privilege) this schema grants `:role`, tables and columns alike
_PRIVILEGES = """
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
# whether the current user was granted the role (a superuser is every role's member unasked)
_GRANTED_TO_ME = (
    "SELECT 1 FROM pg_auth_members WHERE roleid = to_regrole(:role) "
    "AND member = to_regrole(current_user::text)"
)
_POLICIES = """
SELECT tablename, policyname FROM pg_policies
WHERE schemaname = current_schema() AND :role = ANY (roles) ORDER BY 1, 2
"""


def give_own_reader_role(conn: Connection, giver: str) -> str:
    """A new reader role for this store (migration 0019, and `db new-reader-role` for a copy
    of a store restored or cloned beside it, which reads as the original's role until then:
    audit 29d), taking every privilege and policy `giver` holds here, and named by the store.
    The owner leaves the shared role of stores before 0019: a store built today was made a
    member of it by migration 0001, and could read every older store on the server through
    it until they were upgraded (audit 29e)."""
    role = f"{LEGACY_READER_ROLE}_{secrets.token_hex(6)}"
    conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
    conn.execute(text(f"GRANT {role} TO CURRENT_USER"))
    hand_over(conn, giver, role)
    conn.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {NAMED_BY}() RETURNS name LANGUAGE sql IMMUTABLE "
            f"PARALLEL SAFE AS $$ SELECT '{role}'::name $$"
        )
    )
    leave_the_shared_role(conn)
    return role


def leave_the_shared_role(conn: Connection) -> None:
    """The owner out of the shared role of stores before 0019 (migrations 0019 and 0024)."""
    if granted_to_me(conn, LEGACY_READER_ROLE):
        conn.execute(
            text(
                f"DO $$ BEGIN REVOKE {LEGACY_READER_ROLE} FROM CURRENT_USER; "
                "EXCEPTION WHEN insufficient_privilege THEN NULL; END $$"
            )
        )


def granted_to_me(conn: Connection, role: str) -> bool:
    """Whether the current user was granted `role` (not merely a superuser)."""
    return conn.execute(text(_GRANTED_TO_ME), {"role": role}).first() is not None


def tables_held(conn: Connection, role: str) -> list[str]:
    """The tables of this schema on which `role` holds a privilege, or one of a column."""
    return sorted({table for table, _, _ in conn.execute(text(_PRIVILEGES), {"role": role})})


def hand_over(conn: Connection, giver: str, taker: str) -> None:
    """Every privilege and policy `giver` holds in this schema, held by `taker` instead."""
    quote = conn.dialect.identifier_preparer.quote
    held = conn.execute(text(_PRIVILEGES), {"role": giver}).all()
    policies = conn.execute(text(_POLICIES), {"role": giver}).all()
    for table, column, privilege in held:
        on = f"({quote(column)}) ON {quote(table)}" if column else f"ON {quote(table)}"
        conn.execute(text(f"GRANT {privilege} {on} TO {quote(taker)}"))
        conn.execute(text(f"REVOKE {privilege} {on} FROM {quote(giver)}"))
    for table, policy in policies:
        # every policy of this schema names the reader role alone (migrations 0001-0016)
        conn.execute(text(f"ALTER POLICY {quote(policy)} ON {quote(table)} TO {quote(taker)}"))
