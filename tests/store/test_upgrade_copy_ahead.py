"""Migration 0028 copies the access log whole, 0029 every leaf and tile of the logs: `db
upgrade` makes each copy ahead of its transaction, in batches each committed (finding 53b 1).
In the one transaction a billion leaves were hours of work that a failure near the end threw
away; now an upgrade killed or failed part way keeps what it copied, says so, and the next `db
upgrade` goes on from it to the same logs as an upgrade never stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from alembic import command
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail.store import migrate
from servicetrail.store.engine import StoreError, make_engine, open_store
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.writer import append_records
from tests.conftest import Cli
from tests.store.log_fixtures import access_entries, records_in

MONTHS = ("2025-01", "2025-02", "2025-03")
LOGS = {
    "log_leaf": "SELECT * FROM log_leaf ORDER BY 1, 2, 3",
    "log_node": "SELECT * FROM log_node ORDER BY 1, 2, 3, 4",
    "log_checkpoint": "SELECT * FROM log_checkpoint ORDER BY id",
    "access_log": "SELECT * FROM access_log ORDER BY id",
}

# `db upgrade`'s upgrade in a process of its own (not the command, whose start is seconds
# of imports here), 0028's copy ahead 10 entries a batch, held after two batches for the
# test to kill it there (the code before had no copy ahead of 0028 to hold: it ran through)
PACED = """
import sys, time
from servicetrail.store import migrate
from servicetrail.store.engine import open_store

found = migrate._copies_ahead

def held(start):
    out = []
    for revision, copy in found(start):
        if copy.__globals__["revision"] == "0028":
            copy.__globals__["BATCH"] = 10
            def stopping(conn, committed, copy=copy, done=[0]):
                def each():
                    committed()
                    done[0] += 1
                    if done[0] == 3:  # its partitions, then two batches: 20 entries
                        time.sleep(60)
                copy(conn, each)
            copy = stopping
        out.append((revision, copy))
    return out

migrate._copies_ahead = held
open_store(sys.argv[1], upgrade=True)
"""


Store = str | Engine  # a store's URL, or an engine on it for a test's many looks


@contextmanager
def _on(store: Store) -> Iterator[Engine]:
    """An engine on the store: its own, or one for the while (a connection a look: some 40 ms
    each under load, most of a short test's time)."""
    if isinstance(store, Engine):
        yield store
        return
    engine = make_engine(store)
    try:
        yield engine
    finally:
        engine.dispose()


def _logs(
    store: Store, tables: tuple[str, ...] = tuple(LOGS)
) -> dict[str, list[tuple[object, ...]]]:
    with _on(store) as engine, engine.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(text(LOGS[table]))] for table in tables}


def _scalar(store: Store, sql: str) -> object:
    with _on(store) as engine, engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def _copied(store: Store, table: str = "log_leaf_0029") -> int:
    """The rows copied ahead into `table` (none, where the code before made no copy)."""
    if _scalar(store, f"SELECT to_regclass('{table}')") is None:
        return 0
    return int(str(_scalar(store, f"SELECT count(*) FROM {table}")))


def _behind(store: Store) -> list[tuple[object, ...]]:
    """What 0028's triggers recorded behind its copy ahead (none, where the code before
    recorded nothing)."""
    with _on(store) as engine, engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('access_log_0028_behind')")).scalar() is None:
            return []
        recorded = "SELECT * FROM access_log_0028_behind ORDER BY id NULLS LAST, retired"
        return [tuple(r) for r in conn.execute(text(recorded))]


_ENTRY = (
    "INSERT INTO access_log (at, party_id, actor, interface, action, filters, records_returned, "
    "mp141_records_returned, device_ids) "
    "VALUES ({at}, NULL, 'auditor', 'api', 'stream', '{{}}', 0, 0, '[]') RETURNING *"
)


def _entry_at_0027(store: Store, at: str) -> tuple[object, ...]:
    """An entry written at 0027 as the servers of then wrote one, its id drawn then, stamped
    `at` (SQL)."""
    with _on(store) as engine, engine.begin() as conn:
        return tuple(conn.execute(text(_ENTRY.format(at=at))).one())


def _failing_after(batches: int, monkeypatch: pytest.MonkeyPatch) -> Callable[..., object]:
    """migrate._copies_ahead with the copies 50 rows a batch (undone with `monkeypatch`: set
    for good, a later upgrade in this process copied 50 a statement), failing in the
    `batches`th commit."""
    found = migrate._copies_ahead
    count = [0]

    def each(committed: Callable[[], None]) -> None:
        count[0] += 1
        if count[0] == batches:  # before its commit, as a full disk fails it
            raise OSError("No space left on device")
        committed()

    def failing(start: str | None) -> list[tuple[str, object]]:
        out = []
        for revision, copy in found(start):
            monkeypatch.setitem(copy.__globals__, "BATCH", 50)
            out.append(
                (revision, lambda conn, committed, copy=copy: copy(conn, lambda: each(committed)))
            )
        return out

    return failing


@pytest.fixture(scope="module")
def at_0027(pg_server) -> Iterator[str]:
    """The name of a template store at 0027: some 1,500 leaves of both logs in three months,
    sealed, and 61 access-log entries (one just written, which only 0028's own transaction
    copies). Built once for this file's tests (some 2 s)."""
    source = pg_server.new_database(template="st_template")
    engine = open_store(source)
    try:
        with engine.begin() as conn:
            append_records(conn, records_in(MONTHS, each=500))
        with pytest.MonkeyPatch.context() as monkeypatch:
            access_entries(engine, monkeypatch, MONTHS, each=20)
        seal_store(engine)
    finally:
        engine.dispose()
    bare = make_engine(source)
    command.downgrade(migrate._config(bare), "0027")
    bare.dispose()
    _entry_at_0027(source, "now()")  # read just now: not copied ahead (0028's SETTLED)
    yield source.rsplit("/", 1)[1]
    pg_server.drop_database(source)


def test_an_upgrade_failed_or_killed_part_way_keeps_its_copy_and_the_next_reaches_the_same_logs(
    pg_server, at_0027: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store at 0027: one copy upgraded whole; another killed (SIGKILL) part way through
    0028's copy, used at 0027 (its first month deleted, an entry behind the copy written),
    then failed in 0029's copy (said, and kept), then upgraded. Both end with the same leaves,
    tiles and checkpoints, and the entries their old tables held; `db check` passes. Some 5 s
    (13 at load 18): a real process killed, and leaves enough for tens of batches."""
    template = at_0027
    whole, stopped = (pg_server.new_database(template=template) for _ in range(2))
    looks = make_engine(stopped)  # one engine for the many looks at it
    try:
        assert Cli(whole, tmp_path)("db", "upgrade").exit_code == 0
        expected = _logs(whole)
        assert len(expected["log_leaf"]) == 1560 and expected["log_checkpoint"]
        assert len(expected["access_log"]) == 61

        # killed part way through 0028's copy: what it copied is kept, the revision unmoved
        upgrading = subprocess.Popen(
            [sys.executable, "-c", PACED, stopped],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while (
            _copied(looks, "access_log_0028") < 20
            and upgrading.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        upgrading.send_signal(signal.SIGKILL)
        said, _ = upgrading.communicate(timeout=30)
        assert upgrading.returncode == -signal.SIGKILL, said  # not upgraded in one go
        assert _scalar(looks, "SELECT version_num FROM alembic_version") == "0027"
        assert _copied(looks, "access_log_0028") == 20

        # paused, the store is used at 0027: retention deletes the month copied (as 0027's
        # does, whole), then an entry stamped in it, behind where the copy goes on from, is
        # written (a stream open for hours ends). The entry was lost when 0028 dropped the old
        # table, and the month's copies came back (finding 57g 1): the upgrade must end with
        # the old table's entries, as it was when 0028 ran
        with looks.begin() as conn:
            conn.execute(text("SET LOCAL servicetrail.retiring_access_month = '2025-01'"))
            conn.execute(text("DELETE FROM access_log WHERE at < '2025-02-01 00:00+00'"))
        late = _entry_at_0027(looks, "'2025-01-01 10:00+00'")
        kept = [e for e in expected["access_log"] if f"{e[1]:%Y-%m}" != "2025-01"]
        expected["access_log"] = [*kept, late]
        # both recorded by the triggers the copy ahead left on the old table (an entry
        # written as its read ends is not), for 0028 to make again those alone: it compared
        # the two tables hour by hour, with the store's tables locked
        assert _behind(looks) == [(late[0], late[1], None), (None, None, "2025-01")]

        # then 0028's copy goes on, 0028 is committed, and 0029's copy fails part way: said,
        # at the revision the store is then at, with what it left
        monkeypatch.setattr(migrate, "_copies_ahead", _failing_after(12, monkeypatch))
        opened = make_engine(stopped)
        with pytest.raises(StoreError) as failed:
            migrate.upgrade_to_head(opened)
        opened.dispose()
        monkeypatch.undo()
        assert str(failed.value).startswith(
            "the upgrade failed copying ahead for migration 0029 (The logs' leaves and tiles "
            "partitioned by log (family, month) on PostgreSQL, so that retention drops a "
            "month's whole ...): No space left on device; the store is at "
            "revision 0028, and what was copied is kept, for the next upgrade to go on from: "
            "mend the cause and run `servicetrail db upgrade` again"
        ), str(failed.value)
        assert _scalar(looks, "SELECT version_num FROM alembic_version") == "0028"
        assert 0 < _copied(looks) < 1560

        again = Cli(stopped, tmp_path)("db", "upgrade")
        assert again.exit_code == 0, again.output
        assert (
            f"upgraded from 0028 to the newest migration ({migrate.head_revision()})"
            in again.output
        )
        assert _scalar(looks, f"SELECT count(*) FROM access_log WHERE id = {late[0]}") == 1
        assert _logs(looks) == expected
        assert _scalar(looks, "SELECT to_regclass('log_leaf_0029')") is None
        assert _scalar(looks, "SELECT to_regclass('access_log_0028')") is None
        assert _scalar(looks, "SELECT to_regclass('access_log_0028_behind')") is None
        gone = "SELECT to_regprocedure('servicetrail_access_log_0028_behind()')"
        assert _scalar(looks, gone) is None
        checked = Cli(stopped, tmp_path)("db", "check")
        assert checked.exit_code == 0 and "schema matches the migrations" in checked.output
    finally:
        looks.dispose()
        for url in (whole, stopped):
            pg_server.drop_database(url)


def test_0028_makes_again_what_was_written_behind_a_copy_recorded_or_not(
    pg_server, at_0027: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store at 0027: its copy ahead stopped part way (its record behind it begun), or
    made whole with nothing recorded (as only 0028's second and third texts, never shipped,
    made one) and an entry of it unlike the old table's; then retention empties the first
    month, a stream's entry stamped in it ends, and a read's entry is written. 0028 alone, in
    one transaction, leaves the entries the old table held, and no record: the copy without
    one is dropped and made whole (it was compared with the old table hour by hour, by count
    and sum of ids, and the entry changed in it kept). While a transaction that wrote to the
    old table is open, a batch ahead takes nothing stamped later than LATE before its start.
    Some 1 s (0.1 of it asleep)."""
    recorded, unrecorded = (pg_server.new_database(template=at_0027) for _ in "ab")
    m0028 = ScriptDirectory(str(migrate.MIGRATIONS)).get_revision("0028").module
    monkeypatch.setattr(m0028, "BATCH", 10)
    try:
        for url in (recorded, unrecorded):
            engine = make_engine(url)
            with engine.connect() as conn:
                if url == recorded:
                    with pytest.raises(OSError):  # after its partitions and two batches
                        m0028.copy_ahead(conn, _failing_in(4, conn.commit))
                    conn.rollback()
                    assert _copied(engine, "access_log_0028") == 20
                else:  # as a text that never shipped could leave it
                    # read 20 minutes ago: taken ahead, not left to 0028's transaction (an
                    # hour's entries were, 2.5 million at 700 reads a second)
                    settled = _entry_at_0027(engine, "now() - interval '20 minutes'")
                    m0028.copy_ahead(conn, conn.commit)
                    copied = f"SELECT count(*) FROM access_log_0028 WHERE id = {settled[0]}"
                    assert _scalar(engine, copied) == 1
                    for dropped in (f"TABLE {m0028.BEHIND}", f"FUNCTION {m0028.RECORD}()"):
                        conn.execute(text(f"DROP {dropped} CASCADE"))  # its triggers with it
                    changed = f"UPDATE access_log_0028 SET actor = 'nobody' WHERE id = {settled[0]}"
                    conn.execute(text(changed))  # the same ids in every hour: no count tells
                    conn.commit()
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL servicetrail.retiring_access_month = '2025-01'"))
                conn.execute(text("DELETE FROM access_log WHERE at < '2025-02-01 00:00+00'"))
            late = _entry_at_0027(engine, "'2025-01-05 10:00+00'")
            _entry_at_0027(engine, "now()")
            if url == recorded:
                assert _behind(engine) == [(late[0], late[1], None), (None, None, "2025-01")]
                _held_by_a_writer(engine, m0028, monkeypatch)
            held = _logs(engine, ("access_log",))
            with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
                m0028.upgrade()  # as `alembic upgrade` runs it, without reading every migration
            assert _logs(engine, ("access_log",)) == held
            held_entries = held["access_log"]
            months = [f"{e[1]:%Y-%m}" for e in held_entries]
            assert late in held_entries and months.count("2025-01") == 1
            assert _behind(engine) == []
            engine.dispose()
    finally:
        for url in (recorded, unrecorded):
            pg_server.drop_database(url)


def _failing_in(calls: int, committed: Callable[[], None]) -> Callable[[], None]:
    """`committed`, failing at its `calls`th call (before committing, as a full disk does)."""
    done = [0]

    def each() -> None:
        done[0] += 1
        if done[0] == calls:
            raise OSError("No space left on device")
        committed()

    return each


def _held_by_a_writer(engine: Engine, m0028: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch ahead may take entries stamped SETTLED ago, but none stamped later than LATE
    before the start of a transaction that wrote to the old table and is still open (its
    entries are unseen by the batch)."""
    with monkeypatch.context() as patched, engine.connect() as writer, engine.connect() as copier:
        patched.setattr(m0028, "SETTLED", "0.05 seconds")
        patched.setattr(m0028, "LATE", "0.02 seconds")
        began = writer.execute(text("SELECT now()")).scalar_one()
        time.sleep(0.1)
        writer.execute(text(_ENTRY.format(at="now()")))

        def bound() -> tuple[datetime, bool]:
            settled, held = m0028._settled(copier, "access_log")
            copier.rollback()  # the next in a transaction of its own, as each batch's is
            return copier.execute(text(f"SELECT '{settled}'::timestamptz")).scalar_one(), held

        assert bound() == (began - timedelta(seconds=0.02), True)
        writer.rollback()
        settled, held = bound()
        assert settled > began and not held
