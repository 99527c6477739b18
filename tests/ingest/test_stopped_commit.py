"""An ingest stopped (Ctrl-C, SIGTERM) while a batch commits: whether the database's COMMIT
happened is not known from the stop, so the summary it says learns it from the store.

The stop is raised from SQLAlchemy's call of the driver's commit, in process, at the batch
that brings the trail to 1,500 records: before that COMMIT reached the database, or after it
was done, as a signal lands while the driver waits on either side of the server's answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine.default import DefaultDialect

from servicetrail.cli import main
from tests.ingest.test_crash_safety import rows

RECORDS, BATCH, STOPPED_AT = 2000, 500, 1500


def some_records(tmp_path: Path) -> Path:
    records = tmp_path / "some.jsonl"
    user, device = "90-B3-D5-1F-30-01-00-01", "00-DB-00-00-00-00-00-01"
    with open(records, "w", encoding="utf-8") as f:
        for n in range(RECORDS):
            f.write(
                '{"logged_at": "2025-01-01T00:%02d:%02dZ", "kind": "request", "request_id": '
                '"%s:%s:%d", "srv": "4.1.1", "user_id": "%s", "device_id": "%s", '
                '"response_code": "", "payload": "p"}\n'
                % (n // 60, n % 60, user, device, n, user, device)
            )
    return records


def ingest_stopped_in_a_commit(
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    committed: bool,
    meanwhile: Callable[[], None] = lambda: None,
) -> Result:
    """`servicetrail ingest` of RECORDS records, stopped by Ctrl-C in the driver's commit of
    the batch that holds the STOPPED_AT-th record: after the COMMIT (`committed`) or before
    it. `meanwhile` runs between that COMMIT and the stop."""
    monkeypatch.setenv("SERVICETRAIL_BATCH", str(BATCH))
    commit = DefaultDialect.do_commit
    stopped: list[bool] = []

    def stopping(self: DefaultDialect, dbapi_connection: Any) -> None:
        if not stopped and _held(dbapi_connection) >= STOPPED_AT:
            stopped.append(True)
            if committed:
                commit(self, dbapi_connection)
                meanwhile()
            raise KeyboardInterrupt
        commit(self, dbapi_connection)

    monkeypatch.setattr(DefaultDialect, "do_commit", stopping)
    result = CliRunner().invoke(main, ["--db", url, "ingest", str(some_records(tmp_path))])
    monkeypatch.undo()
    assert stopped, result.output
    assert result.exit_code == 130, result.output
    assert "Error: interrupted" in result.stderr and "Traceback" not in result.output
    return result


def _held(dbapi_connection: Any) -> int:
    """The trail's records as the committing transaction sees them (its own among them)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT count(*) FROM sat_record")
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


def signed(url: str) -> int:
    [(size,)] = rows(
        url,
        "SELECT sum(s) FROM "
        "(SELECT max(tree_size) AS s FROM log_checkpoint GROUP BY month) AS logs",
    )
    return size or 0


@pytest.mark.parametrize("committed", [True, False], ids=["after-COMMIT", "before-COMMIT"])
def test_a_batch_whose_commit_the_stop_interrupted_is_counted_as_the_store_holds_it(
    db_url, tmp_path, monkeypatch, committed
):
    """Stopped after the COMMIT, the summary said "loaded 1000" of 1,500 records kept
    (session 64): the batch the stop interrupted was counted as not stored, and an operator
    believed it. Stopped before it, that batch is not stored, and is not counted."""
    result = ingest_stopped_in_a_commit(db_url, tmp_path, monkeypatch, committed)
    [(kept,)] = rows(db_url, "SELECT count(*) FROM sat_record")
    assert kept == (STOPPED_AT if committed else STOPPED_AT - BATCH)
    assert f"kept from before: loaded {kept}, rejected 0, skipped 0 duplicates" in result.stderr, (
        result.stderr
    )
    assert "not known" not in result.stderr
    # what was kept is signed before the run reports (trail_load's seal after a stop)
    assert "sealed by the next ingest" not in result.stderr and "not signed" not in result.stderr
    assert rows(db_url, "SELECT count(*) FROM log_pending") == [(0,)]
    assert signed(db_url) == kept


def test_a_stopped_commit_the_store_cannot_tell_of_is_said_not_known(
    pg_server, pg_url, tmp_path, monkeypatch
):
    """The server refusing this store's connections from the moment of the COMMIT (shut down
    with the loader, say): the store cannot say whether the batch is there, and the summary
    says so of it rather than guess either way."""
    name = pg_url.rsplit("/", 1)[1]

    def store_gone() -> None:
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        pg_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    try:
        result = ingest_stopped_in_a_commit(
            pg_url, tmp_path, monkeypatch, committed=True, meanwhile=store_gone
        )
    finally:
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    said = result.stderr
    assert f"kept from before: loaded {STOPPED_AT - BATCH}, rejected 0" in said, said
    assert (
        f"; the last batch of {BATCH}: not known whether it was stored. Running the same "
        "command again adds only what is missing." in said
    ), said
    assert "(not signed: " in said
    assert rows(pg_url, "SELECT count(*) FROM sat_record") == [(STOPPED_AT,)]
