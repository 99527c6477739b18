"""Opening the store: engines and their pools, SQLite's pragmas and PostgreSQL's session
settings, and bringing the schema up to date. The store's URL, as read and as shown, is
store.store_url's."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, inspect, text
from sqlalchemy.engine import Connection, Dialect, Engine, create_engine, make_url
from sqlalchemy.pool import QueuePool

from .. import settings
from ..sqlite_url import parameters_refused, sqlite_file, sqlite_true, uri_named
from .limits import StoreAway
from .new_database import CannotCreateDatabase, there_now
from .postgresql_errors import psycopg_error
from .schema_watch import RevisionWatch, StoreUpgraded, postgresql_revision
from .store_url import database_url


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says why, for a person."""


class StoreBehind(StoreError):
    """The store's schema is at an older revision, which only `db upgrade` opens."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(
            f"the store's schema is at revision {revision}, older than this servicetrail's "
            f"{head}: run 'servicetrail db upgrade' first"
        )
        self.revision = revision
        self.head = head


# how long a SQLite write waits for another writer's lock before giving up (StoreBusy)
BUSY_TIMEOUT_MS = 10_000
# the most of its -wal file SQLite keeps once checkpointed: what wal_autocheckpoint lets grow
WAL_KEPT_BYTES = 16384 * 4096


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the loader
    cursor.execute(
        "PRAGMA synchronous=NORMAL"
    )  # WAL keeps commits atomic; a power cut may lose the last one
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA cache_size=-65536")
    # checkpoint every 64 MB of WAL rather than 4 MB: a bulk load fsyncs far less often
    cursor.execute("PRAGMA wal_autocheckpoint=16384")
    # ... and cut the file back to that when the WAL starts over: a read held open through an
    # ingest left it at its peak (1.2 GB for 200,000 records) for as long as a server had the
    # store open (audit 54g)
    cursor.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
    cursor.close()


def _owner_only(path: Path) -> None:
    """A new SQLite store is made readable by its owner alone (0600), as the signing key and
    the reject files are: it holds every Party's payloads. SQLite gives its -wal and -shm
    files the database file's permissions. A store that exists is left as it is."""
    path = Path(os.path.realpath(path))  # a symlink to a file still to be made: make that
    if path.exists():
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass  # another process made it meanwhile
    except OSError as e:
        raise StoreError(f"cannot create the SQLite store {path}: {e.strerror or e}") from None


def make_engine(url: str | None = None, *, pool_size: int | None = None) -> Engine:
    resolved = make_url(database_url(url))
    if resolved.drivername.startswith("sqlite"):
        refused = parameters_refused(resolved)
        if refused:
            raise StoreError(refused)
        in_a_file = bool(resolved.database) and resolved.database != ":memory:"
        if in_a_file:
            # the path as SQLite opens it: no `~` expansion (sqlite:///~/x.db is ./~/x.db)
            # a file: URI names its file its own way (`file:/media/copy.db?immutable=1`, for
            # a copy on read-only media): SQLite reads it, and says if it cannot
            as_uri = uri_named(resolved)
            if not as_uri:
                folder = Path(str(resolved.database)).resolve().parent
                if not folder.is_dir():
                    raise StoreError(f"the folder for the SQLite store does not exist: {folder}")
            opened = sqlite_file(resolved.render_as_string(hide_password=False))
            # as SQLite takes the URI: it makes the file only in mode rwc (its default), and
            # opens none in a mode it does not know (`mode=RO`), which was made first (47j)
            mode = resolved.query.get("mode")
            immutable = sqlite_true(resolved.query.get("immutable"))
            read_only = as_uri and (mode in ("ro", "rw") or immutable)
            creates = not as_uri or (mode in (None, "rwc") and not immutable)
            if opened is not None and read_only and not opened.exists():
                # SQLite said only "unable to open database file"
                raise StoreError(f"the SQLite store does not exist: {opened}")
            if opened is not None and creates and opened.parent.is_dir():
                _owner_only(opened)  # a file: URI's new store too (it was made 0644; review 23f)
        engine = create_engine(
            resolved,
            connect_args={"check_same_thread": False},
            # a statement's parameters are never put in an error's text, which may reach a log
            # or a terminal: they include password hashes, token digests and payloads (an
            # `accounts create` racing another printed the new password's hash in its traceback)
            hide_parameters=True,
            # a file's pool is a queue; a store in memory is one connection, which waits for
            # nothing (and whose pool takes no such argument)
            **({"pool_timeout": POOL_WAIT_SECONDS} if in_a_file else {}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", _watch_of_new(engine).on_sqlite_checkout)
        return engine
    size = pool_size or settings.current().pool_size
    engine = create_engine(
        resolved,
        hide_parameters=True,  # as SQLite's, above
        pool_size=size,
        max_overflow=size,
        pool_timeout=POOL_WAIT_SECONDS,
        # LIFO: the same few warm connections serve a light load (their prepared statements
        # and caches stay hot) and the rest can age out; FIFO rotated through all of them.
        pool_use_lifo=True,
        # prepare a statement on its second execution (psycopg's default is the sixth): each
        # connection and statement shape otherwise paid a full plan over every partition
        # several times before the generic plan of the device search took over
        connect_args={
            "prepare_threshold": 1,
            **({} if "connect_timeout" in resolved.query else CONNECT_TIMEOUT),
            **({} if "application_name" in resolved.query else _application_name()),
        },
    )
    event.listen(engine, "connect", _postgres_session)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine.dialect, _watch_of_new(engine)))
    return engine


# each engine's watch on its store's revision, armed by open_store (store.schema_watch)
_WATCHES: weakref.WeakKeyDictionary[Engine, RevisionWatch] = weakref.WeakKeyDictionary()


def _watch_of_new(engine: Engine) -> RevisionWatch:
    watch = _WATCHES[engine] = RevisionWatch()
    return watch


def changed_under_us(engine: Engine) -> Exception | None:
    """After an error nobody expected: StoreUpgraded if the store's revision has moved under
    the process (a look made now), else None. On PostgreSQL the look is once a second, and a
    request in that second on a schema of a newer servicetrail failed as a bug, 500.

    The look is this call's own statement, not the checkout's once-a-second one: that one is
    claimed by whichever checkout comes first, so a background task's in between left this
    checkout none to make (a 500 again), and it was never due within CHECK_EVERY_SECONDS of
    the clock's zero, on a machine up for less than that (a test's hour: CI, 2026-12-06)."""
    watch = _WATCHES.get(engine)
    if watch is None or watch.mine is None:
        return None
    try:
        with engine.connect() as conn:  # its checkout may refuse first, as sticky as this
            refuse_if_changed_under_us(conn)
    except Exception as e:  # StoreUpgraded alone is the answer; anything else says nothing
        return e if isinstance(e, StoreUpgraded) else None
    return None


def refuse_if_changed_under_us(conn: Connection) -> None:
    """Inside the transaction of a connection held past many transactions (a load's, before
    each batch's commit), whose checkout looked once: the batch is not committed on a schema
    upgraded since (StoreUpgraded, and its transaction rolls back). One statement a batch."""
    watch = _WATCHES.get(conn.engine)
    if watch is not None and watch.mine is not None:
        watch.saw(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())


# What PostgreSQL shows of this process's connections (pg_stat_activity.application_name), so
# that `db upgrade` names the servers it finds connected (store.other_sessions): the command
# (`name_this_process`) and the pid, unless the URL names it (`?application_name=`)
_PROCESS_NAME = ["servicetrail"]


def name_this_process(name: str) -> None:
    _PROCESS_NAME[0] = name


def _application_name() -> dict[str, str]:
    return {"application_name": f"{_PROCESS_NAME[0]} (pid {os.getpid()})"[:63]}


# How long a request waits for a pooled connection when every one is in use (SQLAlchemy's
# default is 30 s) before it is answered 503 (store.limits.store_busy): as long as a search
# may run, which is what holds connections. Past it the request was a 500 with a traceback.
POOL_WAIT_SECONDS = 10.0


# A server that takes the connection but never answers (stopped, or its machine gone) fails a
# new connection after this long, as one that refuses it does at once: a 503, not a request
# that never ends. A `connect_timeout` in the URL's query wins.
CONNECT_TIMEOUT = {"connect_timeout": 10}

# A pooled connection idle for longer than this is pinged before it is used again. SQLAlchemy's
# pre-ping pinged at every checkout: one of a device search's five round trips (BENCHMARKS.md,
# session 10), for a connection used a millisecond before.
# A connection that dies while idle (a restart, a timeout, the network) is still replaced
# unseen; one that dies in use fails its request, as it did before, and SQLAlchemy then
# discards the pool's other connections of that moment.
PING_AFTER_IDLE_SECONDS = 1.0


# An access-log entry's id drawn by a read on PostgreSQL, kept in the connection's info until
# its entry takes it (store.access_writer). One a read left unused (its count was not logged,
# or it failed) is dropped when the connection goes back to the pool: kept, it went to the
# connection's next entry, minutes later, and the log's ids ran out of time order (audit 38a).
RESERVED_ENTRY_ID = "servicetrail.access_entry_id"


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()
    record.info.pop(RESERVED_ENTRY_ID, None)


def _ping_if_idle(dialect: Dialect, watch: RevisionWatch) -> Callable[[Any, Any, Any], None]:
    """The ping of an idle connection, which reads the store's revision once the engine's
    watch is armed: the watch's look costs no round trip of its own there, and one a second
    (`watch.due`) on connections never idle that long."""

    def on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        watch.refuse_if_changed()
        idle_since = record.info.get("idle_since")
        idle = idle_since is not None and time.monotonic() - idle_since >= PING_AFTER_IDLE_SECONDS
        looks = watch.due() or (idle and watch.mine is not None)
        if not idle and not looks:
            return  # new (just connected) or used a moment ago
        try:
            if looks:
                revision = postgresql_revision(dbapi_conn)
            else:
                dialect.do_ping(dbapi_conn)
        except Exception as e:
            if not psycopg_error(e, "OperationalError"):
                raise
            # the pool discards this connection and checks out another (a new one if need be)
            raise exc.DisconnectionError(str(e)) from e
        if looks:
            watch.saw(revision)

    return on_checkout


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A pooled connection for reads, whose transaction ends by COMMIT when the block ends
    normally (a read that raises still rolls back).

    Why not let the connection roll back on close, as SQLAlchemy does: psycopg forgets every
    statement it has prepared on a connection when it sees a ROLLBACK, so the next search on
    that connection was parsed and planned afresh over every monthly partition (11 ms at 10M
    records, BENCHMARKS.md). On SQLite a read's COMMIT costs what its ROLLBACK did."""
    with engine.connect() as conn:
        yield conn
        if conn.in_transaction():
            conn.commit()


@contextmanager
def waiting_at_most(conn: Connection, seconds: float) -> Iterator[None]:
    """Within `conn`'s transaction, another's lock is waited for `seconds` at most (then the
    driver says the store is busy), not BUSY_TIMEOUT_MS, nor on PostgreSQL for ever."""
    ms = max(1, round(seconds * 1000))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
        yield
        return
    driver = conn.connection.dbapi_connection  # past SQLAlchemy: this holds in a failed write
    assert driver is not None
    driver.execute(f"PRAGMA busy_timeout = {ms}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextmanager
def foreign_keys_planned_once(driver: Any) -> Iterator[None]:
    """Around a bulk write into a table with a foreign key, on PostgreSQL (`driver`: psycopg's
    connection). Each row's check is a saved plan run once per row, and the sessions'
    force_custom_plan (`_postgres_session`) had it planned afresh for every row: 100k rows into
    such a table took 2.49 s under it, 1.21 s under the default mode, which keeps the check's
    generic plan (a primary-key probe). The rest of the transaction plans as every session."""
    driver.execute("SELECT set_config('plan_cache_mode', 'auto', true)")
    yield  # no finally: a write that raised ends its transaction, and the setting with it
    driver.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")


@contextmanager
def planned_generically(conn: Connection) -> Iterator[None]:
    """PostgreSQL: within the block, a statement prepared on the connection keeps one generic
    plan instead of the sessions' custom plan for each execution (`_postgres_session`), for
    statements no value of which changes how they read (rows by their keys, arrays of keys
    joined through unnest): planned afresh each time, planning cost them more than running
    (a round's visibility check of 256 held deliveries: 3 ms planned, 2.5 ms run). The rest
    of the transaction plans as every session."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
    yield  # no finally: a block that raised ends its transaction, and the setting with it
    conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")


def pool_capacity(engine: Engine) -> int:
    """How many connections the engine's pool opens at most: its size and its overflow
    (SQLAlchemy's QueuePool, which both engines use for a file or a server)."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return pool.size() + max(0, pool._max_overflow)  # no public accessor for the overflow bound
    return 1


def _postgres_session(dbapi_conn: Any, _record: Any) -> None:
    """psycopg prepares a statement on the server after a few executions, and PostgreSQL then
    tends to a generic plan: for a keyset page over monthly partitions that plan sorts all of
    a device's rows. Custom plans keep the prepared statement's saved parsing and plan with
    the actual device, times and cursor.

    JIT off: a device search touches every monthly partition, and under the reader role's
    row-level security the cost estimate crossed jit_above_cost, so PostgreSQL spent far
    longer compiling the query than running it (figures in BENCHMARKS.md).

    Times in UTC, whatever the server's or the database's zone: under London's the first
    instant of year 1 came back in 1 BC (its old offset of -00:01:15), under +14:00 the last
    of 9999 in the year 10000, which psycopg cannot read (a 500 for every list holding such a
    record, audit 25b). Dates in ISO style, whatever the database's: psycopg reads no other,
    and `SQL, DMY` made every read a traceback (audit 29a). Row security on, whatever the
    database's or the role's: off, PostgreSQL refuses a read under a policy instead of
    applying it, and every Party's read failed as if the reader role were missing (audit 29a)."""
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
        cursor.execute("SET jit = off")
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SET DateStyle = 'ISO, YMD'")
        cursor.execute("SET row_security = on")
    dbapi_conn.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return revision_on(conn)


def revision_on(conn: Connection) -> str | None:
    """The store's schema revision, None when it holds none."""
    if not conn.dialect.has_table(conn, "alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def at_another_schema(engine: Engine) -> bool:
    """Whether the store's schema is at a revision other than this servicetrail's (an older
    one, or one it does not know): `open_store` refuses it."""
    from .schema import SCHEMA_HEAD

    revision = current_revision(engine)
    return revision is not None and revision != SCHEMA_HEAD


def _relations(conn: Connection) -> list[str]:
    """The tables and views where the store's would go: a view alone is someone's data too
    (review 23f). On PostgreSQL, not those an extension made (pg_stat_statements' views,
    PostGIS's spatial_ref_sys): a database with one installed is still empty for us."""
    if conn.dialect.name != "postgresql":
        seen = inspect(conn)
        return seen.get_table_names() + seen.get_view_names()
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
                " AND d.objid = c.oid AND d.deptype = 'e')"
            )
        ).scalars()
    )


def _refuse_unless_empty(conn: Connection) -> None:
    """SPEC section 5: a store is built only where there is nothing yet. A mistyped URL built
    servicetrail's tables beside another application's (audit 23a)."""
    from .schema import metadata

    foreign = _relations(conn)
    ours = set(metadata.tables)
    if len(ours & set(foreign)) * 2 > len(ours):  # servicetrail's own, its revision gone
        raise StoreError(
            "the store holds servicetrail's tables but no schema revision (its alembic_version "
            "table is missing or empty): restore it from a backup, or ask 'servicetrail db "
            "check' after putting the revision back"
        )
    if foreign:
        shown = ", ".join(repr(name) for name in sorted(foreign)[:3])
        raise StoreError(
            f"the store holds tables but no servicetrail schema ({shown}"
            f"{', ...' if len(foreign) > 3 else ''}): it is not a servicetrail store, and one "
            "is built only in an empty database; check the store's URL"
        )


def open_store(url: str | None = None, *, upgrade: bool = False) -> Engine:
    """An engine on a store at the current schema. A store that does not exist yet, or holds
    no schema, is built at it; one at an older schema is migrated only with `upgrade`
    (`db upgrade` and `demo`): any other command refuses it (SPEC section 5)."""
    engine = make_engine(url)
    try:
        _made_current(engine, upgrade)
    except BaseException:
        # its pool's connections (a SQLite store's open file) were left until the engine was
        # collected, in a process that goes on: a server's worker, the tests (session 59)
        engine.dispose()
        raise
    return engine


def _made_current(engine: Engine, upgrade: bool) -> None:
    """`open_store`'s work on its new engine, which it disposes of when this raises."""
    from .schema import SCHEMA_HEAD

    try:
        revision = current_revision(engine)
    except exc.OperationalError as failed:
        from .server_away import StoreRefused, server_away

        unopened = server_away(engine)
        said = str(failed.orig).strip().partition("\n")[0]
        if unopened.away:  # before there_now, which would ask two more databases of no server
            raise StoreAway(f"{unopened.away}: {said}") from None
        if unopened.refused:
            raise StoreRefused(f"{unopened.refused}: {said}") from None
        if not unopened.maybe_no_database:
            raise  # refused for its password, role, ...: no database to make
        try:
            if not there_now(engine):
                raise  # the server's own answer: unreachable, a wrong password, ...
        except CannotCreateDatabase as e:
            raise StoreError(str(e)) from None
        revision = current_revision(engine)
    if revision != SCHEMA_HEAD:
        _migrated(engine, revision, upgrade)
    _access_months_made(engine)
    _WATCHES[engine].arm(SCHEMA_HEAD)


def _migrated(engine: Engine, revision: str | None, upgrade: bool) -> None:
    """The store not at the head built, or upgraded with `upgrade`; refused otherwise."""
    from .migrate import build_new_store, is_known, upgrade_to_head
    from .schema import SCHEMA_HEAD

    if revision is not None and not is_known(revision):
        raise StoreError(
            f"the store's schema is at revision {revision}, which this servicetrail does not know "
            f"(a newer version of servicetrail made it?)"
        )
    if revision is not None and not upgrade:
        raise StoreBehind(revision, SCHEMA_HEAD)
    if revision is not None:
        upgrade_to_head(engine)
        return
    try:
        build_new_store(engine, revision_on, _refuse_unless_empty)
    except exc.DBAPIError as e:
        if not psycopg_error(e.orig, "InsufficientPrivilege"):
            raise
        # said as "permission denied to create role" and two lines of CONTEXT, with no
        # word of what the role needs (review 46k); both needs named, as the same refusal
        # comes first for the tables to a role with CREATEROLE that does not own the
        # database (PostgreSQL 15 lets only the owner create in schema public: audit 46l)
        said = str(e.orig).strip().partition("\n")[0]
        raise StoreError(
            "building the store needs a role that may create its tables (the database's "
            "owner, or one granted CREATE on schema public) and roles (CREATEROLE: it makes "
            f"the store's own reader role): {said}"
        ) from None


def _access_months_made(engine: Engine) -> None:
    """PostgreSQL: this month's access-log partition and the next few exist, and the process
    knows it (one look-up): a server's first read made them, or looked them up, before its
    answer, and a store built from a template had none (migration 0028)."""
    if engine.dialect.name == "postgresql":
        from datetime import datetime, timezone

        from .access_partitions import ensure_access_months

        ensure_access_months(engine, [datetime.now(timezone.utc)])
