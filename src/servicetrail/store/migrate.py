"""Alembic, driven from code: `servicetrail db upgrade` and `db check` call these."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from .access_partitions import access_dropped_by_hand_said, access_months_dropped_by_hand
from .limits import StoreBusy
from .partitions import dropped_by_hand_said, is_partition, months_dropped_by_hand
from .reader_role import make_shared_role
from .schema import metadata_for

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the migrations have a head"
    return head


def is_known(revision: str) -> bool:
    """Whether `revision` is one of the migrations (a newer servicetrail's is not)."""
    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False


# How long `db upgrade` waits for a lock on PostgreSQL before it gives up (exit 3, nothing
# changed): behind a reader it waited without end, and every read queued behind it (audit,
# session 19). The servers are meant to be stopped first (docs/operating.md, Upgrades).
UPGRADE_LOCK_WAIT = "5s"


def upgrade_to_head(engine: Engine) -> None:
    """Every migration still to apply, in one transaction (see `_migrated`): a SQLite upgrade
    killed or failed part way used to leave the first migrations' tables committed and the
    revision unchanged, and every later `db upgrade` failed on a table already there.

    On PostgreSQL a migration that copies a table whole (0028: the access log; 0029: every
    leaf and tile) may declare `copy_ahead(conn, committed)`: the migrations before it are
    applied in one transaction first, then the copy is made in batches each committed, then
    the migration and the rest (up to the next copy ahead) in one transaction, all under the
    migrators' lock. In the one transaction a billion leaves were hours of work lost to a
    failure at the end (finding 53b 1).

    A failure is said naming the migration it stopped in and its cause, and the revision the
    store is at: the transaction it failed in changed nothing (true of both engines: the
    roles a migration makes on PostgreSQL are rolled back with it), and a copy made ahead is
    kept, for the next `db upgrade` to go on from. It said "cannot open the store" and the
    driver's words alone (audit 48d)."""
    from .engine import StoreError, revision_on
    from .limits import store_busy

    applied: list[str] = []
    was: list[str | None] = []  # the revision each transaction began at
    ahead: dict[str, bool] = {}  # the migrations copied ahead: whether the copy is whole

    def needed(conn: Connection) -> bool:
        was.append(revision_on(conn))
        return True

    try:
        if engine.dialect.name == "postgresql":
            _migrated_with_copies_ahead(engine, needed, applied, ahead)
        else:
            _migrated(engine, needed, lock_wait=UPGRADE_LOCK_WAIT, applied=applied)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if not was:
            raise  # the store was not reached: said as any command's opening says it
        said = str(getattr(e, "orig", None) or e).strip().partition("\n")[0]
        copying = [revision for revision, whole in ahead.items() if not whole]
        if copying:  # at the revision it was made at: an earlier copy's migration committed
            failed = (
                f"the upgrade failed copying ahead for {_the_migration(was[0], applied)}: "
                f"{said}; the store is at revision {copying[0]}, and what was copied is kept, "
                "for the next upgrade to go on from"
            )
        else:
            failed = (
                f"the upgrade failed in {_the_migration(was[0], applied)}: {said}; nothing was "
                f"changed, the store is still at revision {was[-1]}"
            )
            if ahead:
                failed += " (the copy made ahead of it is kept, for the next upgrade to go on from)"
        if store_busy(e):  # a lock not had in UPGRADE_LOCK_WAIT: exit 3, as docs/operating.md says
            raise UpgradeWaited(
                f"{failed}: stop the servers and workers on the store "
                "(docs/operating.md, Upgrades) and run `servicetrail db upgrade` again"
            ) from e
        raise StoreError(
            f"{failed}: mend the cause and run `servicetrail db upgrade` again (or restore "
            "a backup and ask `servicetrail db check`)"
        ) from e


class UpgradeWaited(StoreBusy):
    """An upgrade that gave up waiting for a lock (or found the store gone): nothing changed,
    and the same upgrade may be run again once the store is left to it."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, message)  # its own remedy, not StoreBusy's "try again"
        self.reason = message


def _the_migration(start: str | None, applied: list[str]) -> str:
    """The migration after the `applied` ones, by its revision and the first sentence of its
    docstring; its commit, past the last."""
    script = ScriptDirectory(str(MIGRATIONS))
    pending = [r.revision for r in reversed(list(script.iterate_revisions("head", start)))]
    pending = [r for r in pending if r != start]
    if len(applied) >= len(pending):
        return "the commit of the migrations to " + (pending[-1] if pending else "the head")
    revision = pending[len(applied)]
    doc = " ".join((script.get_revision(revision).doc or "").split())
    title = re.split(r"(?<=\.)\s", doc, maxsplit=1)[0]
    return f"migration {revision} ({title[:117] + '...' if len(title) > 120 else title})"


def build_new_store(
    engine: Engine,
    current: Callable[[Connection], str | None],
    refuse_unless_empty: Callable[[Connection], None],
) -> None:
    """Build a store that holds no schema yet at the head revision (see `_migrated`):
    several commands started at once on a new store each began building it, and all but one
    failed (SQLite: 'table party already exists'; PostgreSQL: a duplicate key in pg_type).
    Now the others wait, then find it built. Whether the database is empty is asked under
    the same lock: asked before it, a command that found the store half-built by another
    took servicetrail's own tables for another application's (review 23d)."""

    def needed(conn: Connection) -> bool:
        if current(conn) is not None:
            return False
        refuse_unless_empty(conn)
        if conn.dialect.name == "postgresql":
            make_shared_role(conn.engine)
        return True

    _migrated(engine, needed)


_LOCK = "hashtext('servicetrail.schema')"  # the migrators' advisory lock on PostgreSQL


def _migrated(
    engine: Engine,
    needed: Callable[[Connection], bool],
    lock_wait: str = "",
    applied: list[str] | None = None,
) -> None:
    """Migrate to the head in one transaction that first takes a lock and looks again
    (`needed`), so that one migrator at a time works and the others find its work done.
    SQLite's lock is its write lock, held from the start: outside a transaction its DDL
    commits statement by statement."""
    with engine.connect() as conn:
        _migrated_on(conn, needed, lock_wait, applied, "head")


def _migrated_on(
    conn: Connection,
    needed: Callable[[Connection], bool],
    lock_wait: str,
    applied: list[str] | None,
    target: str,
) -> None:
    """One transaction of `_migrated`'s, to `target`."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits for a migrator (the busy timeout)
    else:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
        if lock_wait:  # the tables' locks, once it is the one migrator
            conn.execute(text(f"SET LOCAL lock_timeout = '{lock_wait}'"))
    if needed(conn):
        cfg = _config(conn.engine)
        cfg.attributes["connection"] = conn
        cfg.attributes["applied"] = applied
        command.upgrade(cfg, target)
    conn.commit()


def _migrated_with_copies_ahead(
    engine: Engine,
    needed: Callable[[Connection], bool],
    applied: list[str],
    ahead: dict[str, bool],
) -> None:
    """`_migrated`, cut before each pending migration that declares a copy ahead, that copy
    made between the cuts. The migrators' lock is held by the session from first to last
    (its transactions take it again as its holder): another migrator waits for the whole."""
    from .engine import revision_on

    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_lock({_LOCK})"))
        conn.execute(text(f"SET lock_timeout = '{UPGRADE_LOCK_WAIT}'"))  # the copy's reads too
        conn.commit()
        try:
            for revision, copy in _copies_ahead(revision_on(conn)):
                _migrated_on(conn, needed, UPGRADE_LOCK_WAIT, applied, revision)
                ahead[revision] = False
                copy(conn, conn.commit)
                ahead[revision] = True
            _migrated_on(conn, needed, UPGRADE_LOCK_WAIT, applied, "head")
        finally:
            try:
                conn.rollback()
                conn.execute(text(f"SELECT pg_advisory_unlock({_LOCK})"))
                conn.execute(text("RESET lock_timeout"))
                conn.commit()
            except Exception:
                conn.invalidate()  # closed, not pooled: the session's lock goes with it


CopyAhead = Callable[[Connection, Callable[[], None]], None]


def _copies_ahead(start: str | None) -> list[tuple[str, CopyAhead]]:
    """The pending migrations' copies ahead, each by the revision it is made at (the one
    before its migration), oldest first."""
    script = ScriptDirectory(str(MIGRATIONS))
    found = []
    for step in reversed(list(script.iterate_revisions("head", start))):
        copy = getattr(step.module, "copy_ahead", None)
        if copy is not None and step.revision != start and isinstance(step.down_revision, str):
            found.append((step.down_revision, copy))
    return found


def schema_differences(engine: Engine) -> list[str]:
    """What the database and the migrations-built tables disagree on (empty when in step)."""
    problems: list[str] = []
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and is_partition(name or ""))
                ),
            },
        )
        current = context.get_current_revision()
        if current != head_revision():
            problems.append(
                f"database is at revision {current}, migrations head is {head_revision()}"
            )
        for diff in compare_metadata(context, metadata_for(conn.dialect.name)):
            problems.append(repr(diff))
        problems += _append_only_problems(conn)
        if conn.dialect.name == "postgresql":
            problems += _row_security_problems(conn)
        # the partitions are left out above (they come and go with the months)
        problems += [dropped_by_hand_said(month) for month in months_dropped_by_hand(conn)]
        problems += [
            access_dropped_by_hand_said(month) for month in access_months_dropped_by_hand(conn)
        ]
    return problems


# The tables the database itself keeps append-only, by the triggers migrations 0001, 0009,
# 0010 and 0022 made (retention alone deletes, a month of logs at a time): a trigger dropped or
# disabled went unsaid, the tables still matching, and only `log verify` told of the edits
# made through the gap, later (audit 44d)
APPEND_ONLY_TABLES = (
    "sat_record",
    "sat_payload",
    "log_leaf",
    "log_node",
    "log_checkpoint",
    "log_verifier_key",
    "log_retirement",
    "access_log",
)
_PARTITIONED = ("sat_record", "sat_payload", "access_log", "log_leaf", "log_node")


def _append_only_problems(conn: Connection) -> list[str]:
    """Each append-only table's triggers missing or disabled (PostgreSQL: each partition of
    the trail's too, which carries its own copy of the row trigger)."""
    if conn.dialect.name == "sqlite":
        present = {
            (name, table)
            for name, table in conn.exec_driver_sql(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"
            )
        }
        return [
            f"trigger {table}_no_{action} is missing: {table} is no longer append-only"
            for table in APPEND_ONLY_TABLES
            for action in ("update", "delete")
            if (f"{table}_no_{action}", table) not in present
        ]
    # the schema by name (a cast to regnamespace folds "Trail" to trail), and a partition's
    # copy of a trigger even where PostgreSQL marks it internal (before 15)
    states = {
        (name, table): state
        for name, table, state in conn.exec_driver_sql(
            "SELECT t.tgname, c.relname, t.tgenabled FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND (NOT t.tgisinternal OR t.tgparentid <> 0)"
        )
    }
    wanted = [(f"{table}_{kind}", table) for table in APPEND_ONLY_TABLES for kind in _PG_KINDS]
    wanted += [
        (f"{parent}_append_only", partition)
        for partition, parent in conn.exec_driver_sql(
            "SELECT c.relname, p.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = p.relnamespace "
            f"WHERE n.nspname = current_schema() AND p.relname IN {_PARTITIONED!r}"
        )
    ]
    problems = []
    for name, table in wanted:
        said = _TRIGGER_STATE.get(states.get((name, table), ""), "missing")
        if said:
            problems.append(
                f"trigger {name} on {table} is {said}: {table} is no longer append-only"
            )
    return problems


# pg_trigger.tgenabled: O fires in every session, A always; D never, R in replication only
_TRIGGER_STATE = {"O": "", "A": "", "D": "disabled", "R": "set to fire in replication only"}
_PG_KINDS = ("append_only", "no_truncate")


# whether the role holds privileges or policies in another database of the server
_USED_ELSEWHERE = (
    "SELECT EXISTS (SELECT 1 FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass "
    "AND refobjid = to_regrole(:r) AND dbid <> (SELECT oid FROM pg_database "
    "WHERE datname = current_database()))"
)
# what reads run as the reader role read: the tables a policy holds it to, and the three it
# reads whole (a record shows its sender's role and Party name, and its Device's type)
_READ_BY_THE_ROLE = (
    "SELECT tablename FROM pg_policies WHERE schemaname = current_schema() AND :r = ANY (roles) "
    "UNION SELECT unnest(ARRAY['party', 'dcc_user', 'device'])"
)


def _lost_grants(conn: Connection, role: str) -> list[str]:
    """Every table the reader role reads and may not: one revoked grant failed every read
    while db check looked at one table only (audit 29d), then at the policies' (review 29f:
    `device` and `dcc_user` have none)."""
    lost = (
        conn.execute(
            text(
                f"SELECT t FROM ({_READ_BY_THE_ROLE}) AS read(t) WHERE NOT "
                "has_any_column_privilege(:r, format('%I.%I', current_schema(), t), 'SELECT') "
                "ORDER BY 1"
            ),
            {"r": role},
        )
        .scalars()
        .all()
    )
    if not lost:
        return []
    tables = ", ".join(lost)
    return [
        f"the role {role} has lost its grants on {tables} (every read of them fails: "
        f"GRANT SELECT ON {tables} TO {role})"
    ]


def _row_security_problems(conn: Connection) -> list[str]:
    """What the tables do not show: the reader role that every Party's read runs as, its
    grant, and a policy on each table under row-level security. A dump restored onto a new
    server without the role lost all three, and `db check` said the schema matched: reads then
    failed, and with the role made again by hand every Party saw an empty trail (audit,
    session 19; docs/operating.md, "Backups")."""
    problems = _reader_role_problems(conn)
    unguarded = conn.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relrowsecurity AND NOT EXISTS "
            "(SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) ORDER BY c.relname"
        )
    ).scalars()
    problems += [
        f"{name} is under row-level security with no policy: no Party would see a row of it"
        for name in unguarded
        if not is_partition(name)
    ]
    # the other way round: a policy that row-level security, switched off, no longer applies
    # (`ALTER TABLE ... DISABLE ROW LEVEL SECURITY` passed db check: audit 20a)
    unenforced = conn.execute(
        text(
            "SELECT DISTINCT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace JOIN pg_policy p ON p.polrelid = c.oid "
            "WHERE n.nspname = current_schema() AND NOT c.relrowsecurity ORDER BY c.relname"
        )
    ).scalars()
    problems += [
        f"{name} has row-level security switched off: its policy keeps no Party to its rows "
        "(ALTER TABLE ... ENABLE ROW LEVEL SECURITY)"
        for name in unenforced
    ]
    return problems


def _reader_role_problems(conn: Connection) -> list[str]:
    """The store's own reader role (migration 0019): named by the store, there, taken by its
    owner alone, and holding its grants; and the shared role of older stores holding none.
    Any other member of either may read every Party's records (audit 29a)."""
    from .reader_role import LEGACY_READER_ROLE, NAMED_BY, granted_to_me, tables_held

    problems = []
    named = conn.execute(text("SELECT to_regprocedure(:f)"), {"f": f"{NAMED_BY}()"}).scalar()
    if named is None:
        return [
            f"the function {NAMED_BY}() is missing: it names the role every read runs as "
            "(`servicetrail db upgrade` makes it)"
        ]
    role = conn.execute(text(f"SELECT {NAMED_BY}()")).scalar_one()
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    if exists.first() is None:
        return [f"the role {role} does not exist: every read runs as it (CREATE ROLE it)"]
    member = conn.execute(
        text("SELECT pg_has_role(current_user, :r, 'MEMBER')"), {"r": role}
    ).scalar()
    shared = conn.execute(text(_USED_ELSEWHERE), {"r": role}).scalar()
    if not member and shared:
        # a copy, restored or cloned by another owner, of a store on this server: a GRANT of
        # that role to this owner would let it read the other store, and a REVOKE from that
        # store's owner would stop its reads (review 29f)
        problems.append(
            f"this store reads as {role}, the reader role of another database on this server "
            "(it is a copy of a store, restored or cloned): give it its own with "
            "`servicetrail db new-reader-role`, not a GRANT or REVOKE of that role"
        )
        return problems + _lost_grants(conn, role)
    if not member:
        problems.append(f"the store's owner may not take the role {role} (GRANT it)")
    # a clone by the same owner shares its template's role: a member named below may own
    # the store this one copies, whose reads a REVOKE would stop
    instead = "; or, if it owns a store this one copies, servicetrail db new-reader-role here"
    others = conn.execute(
        text(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
            "WHERE a.roleid = to_regrole(:r) AND m.rolname <> current_user ORDER BY 1"
        ),
        {"r": role},
    ).scalars()
    problems += [
        f"the role {other} is a member of the store's reader role {role}: it may read every "
        f"Party's records (REVOKE {role} FROM {other}{instead if shared else ''})"
        for other in others
    ]
    problems += _lost_grants(conn, role)
    if granted_to_me(conn, LEGACY_READER_ROLE):
        problems.append(
            f"the store's owner is a member of the shared role {LEGACY_READER_ROLE} of stores "
            f"before 0019: it may read any such store on this server through it (REVOKE "
            f"{LEGACY_READER_ROLE} FROM {conn.execute(text('SELECT current_user')).scalar()})"
        )
    legacy = tables_held(conn, LEGACY_READER_ROLE)
    if legacy:
        tables = ", ".join(legacy)
        problems.append(
            f"the shared role {LEGACY_READER_ROLE} still holds privileges on {tables}: the "
            f"owner of any store on this server may read them (REVOKE ALL ON {tables} FROM "
            f"{LEGACY_READER_ROLE})"
        )
    return problems
