"""An ingest or registry load stopped (Ctrl-C, SIGTERM) while a batch commits: whether the
database's COMMIT happened is not known from the stop, so the summary it says learns it from
the store.

The stop is raised from SQLAlchemy's call of the driver's commit, in process, at the batch
that brings the trail (or the registry's table) to 1,500 rows: before that COMMIT reached the
database, or after it was done, as a signal lands while the driver waits on either side of
the server's answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine.default import DefaultDialect

from devsupport.pg_server import PgServer
from servicetrail.cli import main
from tests.conftest import Cli
from tests.ingest import sat_line
from tests.ingest.rows_read import rows

RECORDS, BATCH, STOPPED_AT = 2000, 500, 1500


def some_records(
    tmp_path: Path,
    name: str = "some.jsonl",
    numbers: Iterable[int] = range(RECORDS),
    payload: Callable[[int], str] = lambda n: "p",
) -> Path:
    """Request `n` of each of `numbers`, a line each, its payload `payload(n)`."""
    records = tmp_path / name
    user, new_year = "90-B3-D5-1F-30-01-00-01", datetime(2025, 1, 1, tzinfo=timezone.utc)
    records.write_text(
        "".join(
            sat_line.line(n, when=new_year + timedelta(seconds=n), payload=payload(n), user=user)
            + "\n"
            for n in numbers
        ),
        encoding="utf-8",
    )
    return records


def stopped_in_a_commit(
    url: str,
    command: list[str],
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    committed: bool,
    meanwhile: Callable[[], None] = lambda: None,
    stopped_at: int = STOPPED_AT,
) -> Result:
    """`servicetrail <command>` in batches of BATCH, stopped by Ctrl-C in the driver's commit
    of the batch that brings `table` to `stopped_at` rows: after the COMMIT (`committed`) or
    before it. `meanwhile` runs between that COMMIT and the stop."""
    monkeypatch.setenv("SERVICETRAIL_BATCH", str(BATCH))
    monkeypatch.setenv("SERVICETRAIL_REGISTRY_BATCH", str(BATCH))
    commit = DefaultDialect.do_commit
    stopped: list[bool] = []

    def stopping(self: DefaultDialect, dbapi_connection: Any) -> None:
        if not stopped and _held(dbapi_connection, table) >= stopped_at:
            stopped.append(True)
            if committed:
                commit(self, dbapi_connection)
                meanwhile()
            raise KeyboardInterrupt
        commit(self, dbapi_connection)

    monkeypatch.setattr(DefaultDialect, "do_commit", stopping)
    result = CliRunner().invoke(main, ["--db", url, *command])
    monkeypatch.undo()
    assert stopped, result.output
    assert result.exit_code == 130, result.output
    assert "Error: interrupted" in result.stderr and "Traceback" not in result.output
    return result


def _held(dbapi_connection: Any, table: str) -> int:
    """`table`'s rows as the committing transaction sees them (its own among them)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


def refusing(pg_server: PgServer, name: str) -> Callable[[], None]:
    """The database `name` refusing connections from now on, those it had ended (the server
    shut down with the loader, say); ALLOW_CONNECTIONS true undoes it."""

    def store_gone() -> None:
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        pg_server.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )

    return store_gone


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
    ingest = ["ingest", str(some_records(tmp_path))]
    result = stopped_in_a_commit(db_url, ingest, "sat_record", monkeypatch, committed)
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


@pytest.mark.parametrize("committed", [True, False], ids=["after-COMMIT", "before-COMMIT"])
def test_a_stopped_ingest_rejects_the_conflicts_of_the_batches_it_kept(
    db_url, tmp_path, monkeypatch, committed
):
    """Records stored before with another payload conflict in the first batch and in the one
    whose commit the stop interrupted. The stopped run's reject file and "rejected N" left
    out every conflict, those of the batches it had committed too: an operator who read
    them and did not run again never saw the records. Those of the interrupted batch go as
    the batch does."""
    earlier = [*range(10), *range(1000, 1010)]  # in the first batch, and in the third
    stored_before = some_records(tmp_path, "earlier.jsonl", earlier)
    assert CliRunner().invoke(main, ["--db", db_url, "ingest", str(stored_before)]).exit_code == 0
    changed = some_records(tmp_path, payload=lambda n: "q" if n in earlier else "p")
    # ten stored and 490 new in the first batch and the third, which brings the trail to STOPPED_AT
    result = stopped_in_a_commit(
        db_url, ["ingest", str(changed)], "sat_record", monkeypatch, committed
    )
    conflicting = [n + 1 for n in earlier if committed or n < BATCH]  # their lines
    kept = 2 * BATCH - 10 + (BATCH - 10 if committed else 0)  # loaded by this run
    assert rows(db_url, "SELECT count(*) FROM sat_record") == [(kept + len(earlier),)]
    said = result.stderr
    assert f"kept from before: loaded {kept}, rejected {len(conflicting)}, skipped 0" in said, said
    entries = [
        json.loads(line) for line in (tmp_path / "some.rejects.jsonl").read_text().splitlines()
    ]
    lines = changed.read_text().splitlines()
    assert [(e["line"], e["raw"]) for e in entries] == [(n, lines[n - 1]) for n in conflicting]
    assert all(e["reason"].startswith("conflicts with stored record") for e in entries), entries


def test_a_stopped_commit_the_store_cannot_tell_of_is_said_not_known(
    pg_server, pg_url, tmp_path, monkeypatch
):
    """The server refusing this store's connections from the moment of the COMMIT (shut down
    with the loader, say): the store cannot say whether the batch is there, and the summary
    says so of it rather than guess either way."""
    name = pg_url.rsplit("/", 1)[1]
    try:
        ingest = ["ingest", str(some_records(tmp_path))]
        result = stopped_in_a_commit(
            pg_url,
            ingest,
            "sat_record",
            monkeypatch,
            committed=True,
            meanwhile=refusing(pg_server, name),
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


def registry_file(tmp_path: Path, what: str) -> Path:
    """RECORDS lines of `what` (users, devices or responsibilities), each a row of its own."""
    header, line = {
        "users": ("user_id,party_id,party_name,role", "90-B3-D5-1F-30-01-{0},NORTH,North,IS"),
        "devices": ("device_id,device_type,smets", "00-DB-00-00-00-00-{0},ESME,2"),
        "responsibilities": (
            "device_id,party_id,relation,valid_from,valid_to",
            "00-DB-00-00-00-00-{0},NORTH,supplier,2025-01-01T00:00:00Z,",
        ),
    }[what]
    path = tmp_path / f"{what}.csv"
    path.write_text(
        "\n".join([header] + [line.format(f"{n >> 8:02X}-{n & 255:02X}") for n in range(RECORDS)])
        + "\n"
    )
    return path


TABLES = {"users": "dcc_user", "devices": "device", "responsibilities": "responsibility"}


def registry_for_intervals(cli: Cli, tmp_path: Path) -> None:
    """The Devices and the Party that `registry_file(..., "responsibilities")` names."""
    users = tmp_path / "one-user.csv"
    users.write_text("user_id,party_id,party_name,role\n90-B3-D5-1F-30-01-00-01,NORTH,North,IS\n")
    for loaded in (
        cli("load", "devices", registry_file(tmp_path, "devices")),
        cli("load", "users", users),
    ):
        assert loaded.exit_code == 0, loaded.output


@pytest.mark.parametrize(
    "what, committed",
    [
        ("users", True),
        ("devices", True),
        ("responsibilities", True),
        ("responsibilities", False),
    ],
)
def test_a_registry_batch_whose_commit_the_stop_interrupted_is_counted_as_stored(
    cli, db_url, tmp_path, monkeypatch, what, committed
):
    """As an ingest's: `load` said "loaded 1000" of 1,500 rows kept."""
    if what == "responsibilities":
        registry_for_intervals(cli, tmp_path)
    command = ["load", what, str(registry_file(tmp_path, what))]
    result = stopped_in_a_commit(db_url, command, TABLES[what], monkeypatch, committed)
    [(kept,)] = rows(db_url, f"SELECT count(*) FROM {TABLES[what]}")
    assert kept == (STOPPED_AT if committed else STOPPED_AT - BATCH)
    assert f"kept from before: loaded {kept}, rejected 0, skipped 0 duplicates." in result.stderr, (
        result.stderr
    )


def test_a_registry_batch_no_line_of_which_shows_it_alone_is_said_not_known(
    sqlite_url, tmp_path, monkeypatch
):
    """Every interval of the batch shares its Device and relation with another line of it (a
    change of supplier's two lines): one may have changed another's row, so no row shows
    whether the batch is stored, and the summary says so rather than guess."""
    monkeypatch.chdir(tmp_path)
    cli = Cli(sqlite_url, tmp_path)
    registry_for_intervals(cli, tmp_path)
    users = tmp_path / "south.csv"
    users.write_text("user_id,party_id,party_name,role\n90-B3-D5-1F-30-01-00-02,SOUTH,South,IS\n")
    assert cli("load", "users", users).exit_code == 0
    changes = tmp_path / "changes.csv"
    with open(changes, "w", encoding="utf-8") as f:
        f.write("device_id,party_id,relation,valid_from,valid_to\n")
        for n in range(RECORDS // 2):
            device = f"00-DB-00-00-00-00-{n >> 8:02X}-{n & 255:02X}"
            f.write(f"{device},NORTH,supplier,2025-01-01T00:00:00Z,2025-03-01T00:00:00Z\n")
            f.write(f"{device},SOUTH,supplier,2025-03-01T00:00:00Z,\n")
    command = ["load", "responsibilities", str(changes)]
    result = stopped_in_a_commit(sqlite_url, command, "responsibility", monkeypatch, True)
    assert rows(sqlite_url, "SELECT count(*) FROM responsibility") == [(STOPPED_AT,)]
    assert (
        f"kept from before: loaded {STOPPED_AT - BATCH}, rejected 0, skipped 0 duplicates; the "
        f"last batch of {BATCH}: not known whether it was stored." in result.stderr
    ), result.stderr


def test_a_stopped_registry_commit_the_store_cannot_tell_of_is_said_not_known(
    pg_server, pg_url, tmp_path, monkeypatch
):
    """As an ingest's, the server refusing the store's connections from the COMMIT on."""
    name = pg_url.rsplit("/", 1)[1]
    command = ["load", "devices", str(registry_file(tmp_path, "devices"))]
    try:
        result = stopped_in_a_commit(
            pg_url, command, "device", monkeypatch, True, meanwhile=refusing(pg_server, name)
        )
    finally:
        pg_server.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    assert (
        f"kept from before: loaded {STOPPED_AT - BATCH}, rejected 0, skipped 0 duplicates; the "
        f"last batch of {BATCH}: not known whether it was stored." in result.stderr
    ), result.stderr
    assert rows(pg_url, "SELECT count(*) FROM device") == [(STOPPED_AT,)]


def rejected(path: Path) -> list[tuple[int, str]]:
    """The reject file's entries as (line, reason), in its order."""
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["line"], e["reason"]) for e in entries]


@pytest.mark.parametrize("committed", [True, False], ids=["after-COMMIT", "before-COMMIT"])
def test_a_stopped_registry_load_rejects_what_it_judged(
    cli, db_url, tmp_path, monkeypatch, committed
):
    """Devices registered before as another type conflict in the first batch; lines that are
    no Device are refused in the batch whose commit the stop interrupted. Those refused lines
    are judged without the store, as an ingest's are (written as they are read), but went
    unsaid when that batch was rolled back; its conflicts go as the batch does."""
    before = tmp_path / "before.csv"
    before.write_text(
        "device_id,device_type,smets\n"
        + "".join(f"00-DB-00-00-00-00-{k:02X}-{n:02X},ESME,2\n" for k in (0, 9) for n in range(10))
    )
    assert cli("load", "devices", before).exit_code == 0  # ten in the file, ten not
    devices = tmp_path / "devices.csv"
    with open(devices, "w", encoding="utf-8") as f:
        f.write("device_id,device_type,smets\n")
        for n in range(RECORDS):
            kind = "GSME" if n < 10 else "TOASTER" if 1000 <= n < 1010 else "ESME"
            f.write(f"00-DB-00-00-00-00-{n >> 8:02X}-{n & 255:02X},{kind},2\n")
    # ten conflicting in the first batch, ten refused in the third, which brings the table to
    # STOPPED_AT
    result = stopped_in_a_commit(
        db_url, ["load", "devices", str(devices)], "device", monkeypatch, committed
    )
    loaded = 2 * BATCH - 10 + (BATCH - 10 if committed else 0)
    assert rows(db_url, "SELECT count(*) FROM device") == [(loaded + 20,)]
    assert f"kept from before: loaded {loaded}, rejected 20, skipped 0" in result.stderr, (
        result.stderr
    )
    found = rejected(tmp_path / "devices.rejects.jsonl")
    assert [line for line, _ in found] == [*range(2, 12), *range(1002, 1012)], found
    assert all("already registered as ESME" in reason for _, reason in found[:10]), found
    assert all("device_type must be one of" in reason for _, reason in found[10:]), found


def test_a_registry_load_stopped_after_its_batch_rejects_the_lines_of_a_refused_word(
    cli, db_url, tmp_path, monkeypatch
):
    """Two lines give a Device's interval from one start; the second, its word, overlaps
    another Party's and is refused, and the first is rejected with it ("not loaded: ...")
    once the file is read. A load stopped after the batch's COMMIT, before the file's end,
    said the first a skipped duplicate, and its reject file left it out."""
    registry_for_intervals(cli, tmp_path)
    south = tmp_path / "south.csv"
    south.write_text("user_id,party_id,party_name,role\n90-B3-D5-1F-30-01-00-02,SOUTH,South,IS\n")
    north = tmp_path / "north.csv"
    north.write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        "00-DB-00-00-00-00-00-00,NORTH,supplier,2025-01-01T00:00:00Z,\n"
    )
    assert cli("load", "users", south).exit_code == 0
    assert cli("load", "responsibilities", north).exit_code == 0
    changes = tmp_path / "changes.csv"
    changes.write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        "00-DB-00-00-00-00-00-00,SOUTH,supplier,2025-02-01T00:00:00Z,2025-03-01T00:00:00Z\n"
        "00-DB-00-00-00-00-00-00,SOUTH,supplier,2025-02-01T00:00:00Z,\n"
        + "".join(
            f"00-DB-00-00-00-00-00-{n:02X},SOUTH,supplier,2025-01-01T00:00:00Z,\n"
            for n in range(1, 10)
        )
    )
    # one batch: nine new intervals bring the table to ten
    command = ["load", "responsibilities", str(changes)]
    result = stopped_in_a_commit(
        db_url, command, "responsibility", monkeypatch, True, stopped_at=10
    )
    assert rows(db_url, "SELECT count(*) FROM responsibility") == [(10,)]
    assert "kept from before: loaded 9, rejected 2, skipped 0 duplicates." in result.stderr, (
        result.stderr
    )
    found = rejected(tmp_path / "changes.rejects.jsonl")
    assert [line for line, _ in found] == [3, 2], found
    assert found[1][1] == "not loaded: line 3 gives its interval again, and was refused", found
