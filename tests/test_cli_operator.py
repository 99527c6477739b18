"""The command line as a careless or hostile operator drives it (audit 23a): its own store and
key never written over, closed or odd standard streams, bytes that are not UTF-8, numbers
past a store's integers, a database that is not ours. Run as a separate process, since
closing a stream or the locale cannot be done in-process."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from servicetrail import settings
from tests import personas as P
from tests.conftest import Cli
from tests.store.revisions import before_the_head, pg_at_revision, revision_templates

__all__ = ["pg_at_revision", "revision_templates"]  # fixtures

BINARY = Path(sys.executable).with_name("servicetrail")


def run(url: str, *args: str, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BINARY), "--db", url, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=120,
        **popen,
    )


@pytest.fixture
@P.starts_with_personas
def store(tmp_path, sqlite_url, monkeypatch) -> tuple[str, Path, Path]:
    """A persona store; its file and its signing key."""
    key = tmp_path / "sign.key"
    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", str(key))
    settings.reload()
    engine = create_engine(sqlite_url)
    P.load_personas(engine)
    engine.dispose()
    # the key made in this process: a `servicetrail` started for it took 0.6 s of CPU, most
    # of the module's setup; the tests' own commands still run as processes of their own
    made = Cli(sqlite_url, tmp_path)("log", "key")
    assert made.exit_code == 0 and key.is_file(), made.output
    return sqlite_url, Path(sqlite_url.removeprefix("sqlite:///")), key


REPORT = ("report", "own", "--party", P.SOUTHENERGY, "--from", "2025-01-01T00:00:00Z")


def test_a_report_never_writes_over_the_store_or_its_key(store, tmp_path):
    """The refusals are the command's own checks of its output's name, the same in-process
    (a process each cost 0.5 s of CPU); the first and the report made are processes of their
    own, as an operator runs them."""
    url, database, key = store
    before = database.read_bytes()[:16], key.read_bytes()
    refused = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(database))
    assert refused.returncode == 2 and b"name another file" in refused.stderr, refused.stderr
    in_process = Cli(url, tmp_path)
    for target in (Path(f"{database}-wal"), key, Path(f"{key}.verifiers")):
        said = in_process(*REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(target))
        assert said.exit_code == 2, (target, said.output)
        assert "name another file" in said.stderr
    other_store = tmp_path / "elsewhere.db"
    sqlite3.connect(other_store).execute("CREATE TABLE t (x)").connection.commit()
    said = in_process(*REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(other_store))
    assert said.exit_code == 2
    assert (database.read_bytes()[:16], key.read_bytes()) == before
    assert in_process("records", "--party", P.SOUTHENERGY).exit_code == 0
    # the store named by a file: URI: its -wal was read as ./file:...-wal, and written over
    as_uri = f"sqlite:///file:{database}?uri=true"
    said = Cli(as_uri, tmp_path)(
        *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", f"{database}-wal"
    )
    assert said.exit_code == 2 and "the store's own file" in said.stderr, said.output
    report = tmp_path / "report.csv"
    report.write_text("an earlier report\n")
    report.chmod(0o644)
    made = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(report))
    assert made.returncode == 0, made.stderr
    assert report.read_text().startswith("id,logged_at,")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600  # it holds payloads, even if it was not


def test_a_hard_link_to_the_stores_files_is_the_stores_file(store, tmp_path):
    """The trust file and a -shm begin with nothing a report check knows; their hard links
    were written over (review 23f). In-process, as the refusals of the test above."""
    url, database, key = store
    trust = Path(f"{key}.verifiers")
    in_process = Cli(url, tmp_path)
    assert in_process("log", "verify").exit_code == 0  # signs a checkpoint: the trust file made
    assert trust.exists()
    for own in (trust, key, database):
        link = tmp_path / f"innocent-{own.name}.csv"
        os.link(own, link)
        kept = own.read_bytes()
        said = in_process(*REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(link))
        assert said.exit_code == 2 and "the store's own file" in said.stderr, (own, said.output)
        assert own.read_bytes() == kept


def test_closed_standard_streams(store, tmp_path):
    url, _, _ = store
    records = tmp_path / "more.jsonl"
    records.write_text(
        '{"logged_at": "2025-06-01T10:00:00Z", "kind": "request", "request_id": '
        f'"{P.SE_IS}:00-DB-12-34-56-78-90-A1:424242", "srv": "4.1.1", "user_id": "{P.SE_IS}", '
        '"device_id": "00-DB-12-34-56-78-90-A1"}\n'
    )
    # standard error closed: the ingest still loads (it failed, exit 1, saying nothing)
    loaded = subprocess.run(
        f"{BINARY} --db {url} ingest {records} 2>&-", shell=True, capture_output=True
    )
    assert (loaded.returncode, loaded.stdout) == (
        0,
        b"loaded 1, rejected 0, skipped 0 duplicates\n",
    )
    # standard output closed: what is shown once is refused before it is made; the rest goes
    # nowhere, as into /dev/null (a `deliver` worker prints nothing there; review 23d)
    closed_out = subprocess.run(
        f"{BINARY} --db {url} tokens create user_x >&-", shell=True, capture_output=True
    )
    assert closed_out.returncode == 2 and b"standard output is closed" in closed_out.stderr
    unread = subprocess.run(
        f"{BINARY} --db {url} records --party {P.SOUTHENERGY} >&-", shell=True, capture_output=True
    )
    assert unread.returncode == 0 and b"Traceback" not in unread.stderr, unread.stderr
    # standard input closed: as empty as /dev/null (a traceback)
    closed_in = subprocess.run(
        f"{BINARY} --db {url} accounts create bob --party {P.SOUTHENERGY} <&-",
        shell=True,
        capture_output=True,
    )
    assert closed_in.returncode == 2 and b"Traceback" not in closed_in.stderr, closed_in.stderr


def test_a_token_that_reached_no_one_is_not_kept(store, tmp_path):
    """The pipe closed before the token is read is a process's; the account made and the
    tokens listed are the same in-process (0.5 s of CPU a process)."""
    url, _, _ = store
    in_process = Cli(url, tmp_path)
    made = in_process(
        "accounts",
        "create",
        "carol",
        "--party",
        P.SOUTHENERGY,
        input="correct horse battery staple\n",
    )
    assert made.exit_code == 0, made.output
    lost = subprocess.run(
        f"{BINARY} --db {url} tokens create carol | true", shell=True, capture_output=True
    )
    assert b"Traceback" not in lost.stderr
    listed = in_process("tokens", "list", "--account", "carol")
    assert "0 token(s)" in listed.stderr, listed.output


def test_a_token_or_watch_printed_then_not_kept_says_so(store, tmp_path, monkeypatch):
    """What is shown once is printed inside the transaction that keeps it; a commit that then
    fails (a full disk: SQLite says so at the commit, as a 20 MB tmpfs showed) left a token
    or a watch on standard output that looked made, above "the store's disk is full; try
    again" (audit 54g). The failure is injected at the driver's commit, in-process: a real
    full disk needs a mount, and the command's answer is the same."""
    from sqlalchemy.engine.default import DefaultDialect

    url, _, _ = store
    in_process = Cli(url, tmp_path)
    made = in_process(
        "accounts", "create", "carol", "--party", P.SOUTHENERGY, input="correct horse battery\n"
    )
    assert made.exit_code == 0, made.output

    def disk_full(self, connection):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(DefaultDialect, "do_commit", disk_full)
    token = in_process("tokens", "create", "carol")
    watch = in_process("watch", "add", "--party", P.SOUTHENERGY, "--name", "w")
    monkeypatch.undo()
    for said, what in ((token, "token"), (watch, "watch")):
        assert said.exit_code == 3 and said.stdout.strip(), said.output
        assert f"the {what} printed above was not kept" in said.stderr, said.stderr
        assert "disk is full" in said.stderr
    assert "0 token(s)" in in_process("tokens", "list", "--account", "carol").stderr
    assert in_process("watch", "list", "--party", P.SOUTHENERGY).stdout == ""


def test_bytes_that_are_not_utf8_and_numbers_past_a_stores_integers_are_usage_errors(
    store, tmp_path
):
    """Bytes that are not UTF-8 come through a real argv and go back out to a real stderr;
    a number past a store's integers is the command's own check, the same in-process."""
    url, _, _ = store
    for args in (
        ("records", "--party", b"\xff".decode(errors="surrogateescape")),
        ("tokens", "create", b"caf\xe9".decode(errors="surrogateescape")),
    ):
        refused = run(url, *args)
        assert refused.returncode == 2 and b"Traceback" not in refused.stderr, (
            args,
            refused.stderr,
        )
    for args in (
        ("records", "--party", P.SOUTHENERGY, "--limit", str(2**63)),
        ("triggers", str(2**63), "--party", P.SOUTHENERGY),
    ):
        said = Cli(url, tmp_path)(*args)
        assert said.exit_code == 2 and "Error: " in said.stderr, (args, said.output)


def test_output_is_utf8_whatever_the_terminals_encoding(store):
    url, _, _ = store
    made = run(
        url,
        "watch",
        "add",
        "--party",
        P.SOUTHENERGY,
        "--name",
        "wätch 😀",
        env={"PYTHONIOENCODING": "latin-1"},
    )
    assert made.returncode == 0, made.stderr
    assert "wätch 😀" in made.stdout.decode("utf-8")
    listed = run(
        url, "watch", "list", "--party", P.SOUTHENERGY, env={"PYTHONIOENCODING": "latin-1"}
    )
    assert listed.returncode == 0 and "wätch 😀" in listed.stdout.decode("utf-8")


def test_a_database_that_is_not_a_store_is_not_built_into(tmp_path):
    """The first refusal in a process of its own, as an operator meets it; the rest
    in-process (the same checks, without 0.5 s of CPU a process)."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE important (x)").connection.commit()
    refused = run(f"sqlite:///{other}", "db", "upgrade")
    assert refused.returncode == 2 and b"not a servicetrail store" in refused.stderr
    said = Cli(f"sqlite:///{other}", tmp_path)("db", "check")
    assert said.exit_code == 2 and "not a servicetrail store" in said.stderr
    viewed = tmp_path / "views.db"  # a database of views alone (review 23f)
    sqlite3.connect(viewed).execute("CREATE VIEW answer AS SELECT 42").connection.commit()
    said = Cli(f"sqlite:///{viewed}", tmp_path)("db", "upgrade")
    assert said.exit_code == 2 and "'answer'" in said.stderr
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master WHERE type='table'")
    assert [name for (name,) in tables] == ["important"]


def test_output_dash_is_standard_output_and_a_huge_party_is_quoted_short(store, tmp_path):
    url, _, _ = store
    dashed = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", "-", cwd=tmp_path)
    assert dashed.returncode == 0 and dashed.stdout.startswith(b"id,logged_at,")
    assert not (tmp_path / "-").exists()
    huge = Cli(url, tmp_path)("records", "--party", "P" * 100_000)  # the message's own length
    assert huge.exit_code == 2 and 0 < len(huge.stderr) < 500, len(huge.stderr)


def test_a_copy_on_read_only_media_verifies_through_an_immutable_uri(store, tmp_path):
    """An auditor checks a kept copy where it lies: SQLite opens it as a file: URI, which the
    store's own folder check read as a path (`./file:/...`, no such folder; audit 23a).
    In-process: the check is the command's own (a process each cost 0.5 s of CPU)."""
    url, database, _ = store
    assert Cli(url, tmp_path)("log", "verify").exit_code == 0  # sealed, and the -wal folded in
    copy = tmp_path / "kept" / "copy.db"
    copy.parent.mkdir()
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    copy.chmod(0o444)
    verified = Cli(f"sqlite:///file:{copy}?immutable=1&uri=true", tmp_path)("log", "verify")
    assert verified.exit_code == 0, verified.output
    assert "no finding" in verified.stderr


def test_commands_started_together_on_a_new_store_all_find_it_built(tmp_path):
    """Whether the database is empty was asked before the build's lock: a command that found
    the store half-built by another took its tables for another application's (review 23d)."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    started = [
        subprocess.Popen(
            [str(BINARY), "--db", url, "records", "--party", "NOPE"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    said = [child.communicate(timeout=120)[1] for child in started]
    assert all(b"unknown party 'NOPE'" in words for words in said), said


def test_a_store_named_by_a_file_uri_is_made_0600_with_its_key_beside_it(tmp_path, monkeypatch):
    """Review 23f: such a store was made 0644, and its key went into a folder named `file:`
    under the working folder (another key from another folder)."""
    monkeypatch.delenv("SERVICETRAIL_SIGNING_KEY", raising=False)
    (tmp_path / "d").mkdir()
    url = f"sqlite:///file:{tmp_path / 'd' / 'new.db'}?uri=true"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run(url, "log", "key", cwd=elsewhere).returncode == 0
    assert stat.S_IMODE((tmp_path / "d" / "new.db").stat().st_mode) == 0o600
    assert (tmp_path / "d" / "servicetrail.key").is_file()
    assert list(elsewhere.iterdir()) == []
    # uri=false is false, as SQLAlchemy reads it: the database part is then a path
    # (in-process, in a folder of its own: a key made by mistake would land there)
    monkeypatch.chdir(elsewhere)
    settings.reload()
    said = Cli(f"sqlite:///file:{tmp_path}/x.db?uri=false", elsewhere)("log", "key")
    assert said.exit_code == 2, said.output
    assert list(elsewhere.iterdir()) == []


def test_a_read_only_store_is_said_to_be_one(store, tmp_path):
    _, database, _ = store
    read_only = f"sqlite:///file:{database}?immutable=1&uri=true"
    refused = Cli(read_only, tmp_path)("records", "--party", P.SOUTHENERGY)
    assert refused.exit_code == 2 and "the store is read-only" in refused.stderr, refused.output


def test_a_report_through_dev_stdout_leaves_the_redirected_files_mode(store, tmp_path):
    url, _, _ = store
    log = tmp_path / "app.log"
    log.write_text("")
    log.chmod(0o664)
    with open(log, "ab") as out:
        subprocess.run(
            [
                str(BINARY),
                "--db",
                url,
                *REPORT,
                "--to",
                "2026-01-01T00:00:00Z",
                "--output",
                "/dev/stdout",
            ],
            stdout=out,
            check=True,
        )
    assert stat.S_IMODE(log.stat().st_mode) == 0o664 and log.read_text().startswith("id,")


def test_a_store_that_lost_its_revision_is_not_taken_for_a_wrong_url(store, tmp_path):
    url, database, _ = store
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TABLE alembic_version")
    refused = Cli(url, tmp_path)("db", "check")
    assert refused.exit_code == 2 and "no schema revision" in refused.stderr, refused.output


def test_a_loop_of_symbolic_links_is_a_usage_error(store, tmp_path):
    """Path.resolve() raises RuntimeError on a loop: a traceback, exit 1 (review 24d)."""
    url, _, _ = store
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    records = tmp_path / "one.jsonl"
    records.write_text("{}\n")
    for args in (
        (*REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(tmp_path / "loop1")),
        ("ingest", str(records), "--rejects", str(tmp_path / "loop1" / "r.jsonl")),
    ):
        refused = Cli(url, tmp_path)(*args)  # the command's own check, in-process
        assert refused.exit_code == 2, refused.output
        assert "cannot be followed" in refused.stderr


def test_a_link_made_to_the_trust_file_during_an_export_is_not_written_over(store, tmp_path):
    """The name was checked before the export and the file opened, emptied, after it: a hard
    link to the trust file made meanwhile was written over (review 24d). The file is now
    opened first and emptied only if it is none of the store's."""
    import click

    from servicetrail import settings
    from servicetrail.cli.common import Failure
    from servicetrail.cli.output_files import _report_file, not_the_stores_own

    url, _, key = store
    settings.reload()  # in this process, with the fixture's signing key
    # signs a checkpoint: the trust file made
    assert Cli(url, tmp_path)("log", "verify").exit_code == 0
    trust = Path(f"{key}.verifiers")
    kept = trust.read_bytes()
    report = tmp_path / "report.csv"
    with click.Context(click.Command("report"), obj=url):
        assert not_the_stores_own(report, "output") == report  # no file yet: no one's
        os.link(trust, report)  # the race: made while the export runs
        with pytest.raises(Failure, match="the store's own file"):
            _report_file(report)
        report.unlink()
        with _report_file(report) as written:  # a file of its own is written as before
            written.write(b"id\n")
    assert trust.read_bytes() == kept and report.read_bytes() == b"id\n"


def test_new_reader_role_on_sqlite_says_so_and_builds_no_store(tmp_path):
    """Review 29f: it built a 278 KB store at a path that had none, then said SQLite has no
    roles."""
    from click.testing import CliRunner

    from servicetrail.cli import main

    path = tmp_path / "none.db"
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "db", "new-reader-role"])
    assert result.exit_code == 2 and "no roles" in result.output
    assert not path.exists()


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_count_of_zero_is_a_usage_error_naming_the_option(cli):
    """cc1: a count (a page size, a record id) is 1 or more: `--limit 0` ran a search that
    could print nothing, and record 0 is none a store holds."""
    for args, option in (
        (("records", "--party", P.SOUTHENERGY, "--limit", "0"), "--limit"),
        (("triggers", "0", "--party", P.SOUTHENERGY), "RECORD_ID"),
    ):
        refused = cli(*args)
        assert refused.exit_code == 2, (args, refused.output)
        assert "0 is not 1 or more" in refused.stderr and option in refused.stderr, refused.stderr


def test_text_for_the_terminal_keeps_its_line_breaks_and_escapes_the_rest():
    """cc6: a message of several lines (a file's name among them) is shown on as many lines;
    what else is not printable (an escape sequence in a name) is written as its escape."""
    from servicetrail.cli.common import printable

    assert printable("first line\nsecond \x1b[31mline") == "first line\nsecond \\x1b[31mline"
    assert printable("plain") == "plain"


def _waiting_on_its_input(child: subprocess.Popen) -> None:
    """Until `child` is blocked reading its standard input (the kernel's wait channel names
    the pipe's read), so that a signal lands in the command, not in Python's start-up."""
    wchan = Path(f"/proc/{child.pid}/wchan")
    for _ in range(3000):
        assert child.poll() is None, child.communicate()
        if wchan.read_text().endswith("pipe_read"):
            return
        time.sleep(0.01)
    raise AssertionError("the command never waited on its standard input")


@pytest.mark.parametrize(
    "stop, code, said",
    [(signal.SIGINT, 130, "Error: interrupted"), (signal.SIGTERM, 143, "Error: terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_command_stopped_by_a_signal_says_so_with_the_shells_code(
    sqlite_url, tmp_path, stop, code, said
) -> None:
    """Ctrl-C outside a load was click's "Aborted!", exit 1: the code of rejects and findings
    (`db upgrade`, audit 45b). SIGTERM (systemd's stop, `docker stop`, `timeout`) ended any
    command without a word (exit -15), a load's kept records in no signed checkpoint."""
    child = subprocess.Popen(
        [str(BINARY), "--db", sqlite_url, "tokens", "revoke", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        # as a terminal's foreground command has it (a suite started in the background hands
        # its children Ctrl-C ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _waiting_on_its_input(child)
        child.send_signal(stop)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == code, stderr
    assert said in stderr and "Aborted!" not in stderr and "Traceback" not in stderr


def _in_a_process_of_its_own(script: str, word: str, url: str, output: Path):
    """`script`, which runs the report of REPORT into `output` (sys.argv[2:]) after changing
    what it must, in a process of its own, told `word` (sys.argv[1])."""
    return subprocess.run(
        [sys.executable, "-c", script, word, "--db", url, *REPORT, "--to",
         "2026-01-01T00:00:00Z", "--output", str(output)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )  # fmt: skip


# the report with its SRV-title function sending `signal` at the first row, in a process of
# its own: the handler then runs inside SQLite's call to it
_SIGNALLED_AT_THE_FIRST_ROW = """
import os, signal, sys
from servicetrail.cli import main
from servicetrail.store import export

title, rows = export.srv_title_field, []

def signalled_at_the_first_row(srv):
    rows.append(srv)
    if len(rows) == 1:
        os.kill(os.getpid(), int(sys.argv[1]))
    return title(srv)

export.srv_title_field = signalled_at_the_first_row
try:
    main(sys.argv[2:])
finally:
    assert rows
    # put back for whoever runs next in this process
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
"""


@pytest.mark.parametrize(
    "stop, code, said",
    [(signal.SIGINT, 130, "Error: interrupted"), (signal.SIGTERM, 143, "Error: terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_inside_a_function_sqlite_calls_is_still_a_stop(store, tmp_path, stop, code, said):
    """Ctrl-C or SIGTERM raised inside the report's SRV-title function, which SQLite calls for
    each row, came out as sqlite3's "user-defined function raised exception", its cause
    dropped: a traceback and exit 1 (review 45f for SIGTERM, session 46 for Ctrl-C). The
    signal is sent for real, at the report's first row; the command says it was stopped."""
    url, _, _ = store
    output = tmp_path / "r.csv"
    result = _in_a_process_of_its_own(_SIGNALLED_AT_THE_FIRST_ROW, str(int(stop)), url, output)
    assert result.returncode == code, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr


# the same, sent from a finaliser that the first row's garbage runs: Python prints an
# exception raised there as "Exception ignored in ..." and goes on
_SIGNALLED_IN_A_FINALISER = """
import os, sys, weakref
from servicetrail.cli import main
from servicetrail.store import export

title, rows = export.srv_title_field, []

class Garbage:
    pass

def signalled_while_collecting(srv):
    rows.append(srv)
    if len(rows) == 1:
        weakref.finalize(garbage := Garbage(), os.kill, os.getpid(), int(sys.argv[1]))
        del garbage
    return title(srv)

export.srv_title_field = signalled_while_collecting
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    "stop, code, said",
    [(signal.SIGINT, 130, "Error: interrupted"), (signal.SIGTERM, 143, "Error: terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_python_could_not_raise_still_ends_in_a_stop(store, tmp_path, stop, code, said):
    """A stop raised inside a finaliser (as SQLAlchemy's weakref callbacks run, during an
    ingest's or a report's garbage) was printed as ignored, and the command ran on and
    exited 0 (review 46f: Ctrl-C at 1.7 s into an ingest, one run in five). It runs on to
    its end still, and says it was stopped."""
    url, _, _ = store
    output = tmp_path / "r.csv"
    result = _in_a_process_of_its_own(_SIGNALLED_IN_A_FINALISER, str(int(stop)), url, output)
    assert result.returncode == code, result.stderr
    assert result.stderr.rstrip().endswith(said), result.stderr


def _without_root_overriding_permissions() -> list[str]:
    """What to run a command under so that a file's permissions hold for it: root opens a
    read-only file for writing, as a shell's `>` run by root writes it."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root, and no setpriv to run without CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_read_only_report_is_refused_and_left_as_it_was(store, tmp_path):
    """A report this user may not write, in a folder it may: written beside it and renamed
    over it, it was replaced without a word, where a shell's `>` refuses it (session 46)."""
    url, _, _ = store
    report = tmp_path / "r.csv"
    report.write_text("an earlier report\n")
    report.chmod(0o444)
    refused = subprocess.run(
        [*_without_root_overriding_permissions(), str(BINARY), "--db", url, *REPORT,
         "--to", "2026-01-01T00:00:00Z", "--output", str(report)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert b"Permission denied; the file is left as it was" in refused.stderr
    assert b"Traceback" not in refused.stderr
    assert report.read_text() == "an earlier report\n" and _beside_it(report) == ["r.csv"]


def _beside_it(report: Path) -> list[str]:
    return sorted(p.name for p in report.parent.iterdir() if report.name in p.name)


# the report's writing into its file stopped after its first 1,000 bytes, by Ctrl-C (a real
# signal) or a full disk
_STOPPED_WHILE_WRITTEN = """
import errno, os, shutil, signal, sys
from servicetrail.cli import main

def stopped_part_way(source, out, *args):
    out.write(source.read(1000))
    out.flush()
    if sys.argv[1] == "ctrl-c":
        os.kill(os.getpid(), signal.SIGINT)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

shutil.copyfileobj = stopped_part_way
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    "stop, code, said",
    [("ctrl-c", 130, "Error: interrupted"), ("full", 2, "No space left on device")],
)
def test_a_report_stopped_while_written_leaves_the_earlier_one_and_nothing_beside(
    store, tmp_path, stop, code, said
):
    """Its hidden file beside the report is removed on any error and on Ctrl-C, from the
    moment it is made (review 45f)."""
    url, _, _ = store
    report = tmp_path / "r.csv"
    report.write_text("an earlier report\n")
    result = _in_a_process_of_its_own(_STOPPED_WHILE_WRITTEN, stop, url, report)
    assert result.returncode == code, result.stderr
    assert said in result.stderr and "Traceback" not in result.stderr
    assert report.read_text() == "an earlier report\n" and _beside_it(report) == ["r.csv"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace, to see the calls")
def test_a_report_is_on_the_disk_before_it_takes_its_name(store, tmp_path):
    """Renamed over the earlier report before its own bytes were synced, a report could be
    an empty or cut file after a crash, the earlier one gone (session 46). Its folder is
    synced after, so that the rename itself outlives a crash."""
    url, _, _ = store
    report = tmp_path / "r.csv"
    report.write_text("an earlier report\n")
    trace = tmp_path / "trace"
    made = subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
         "-o", str(trace), str(BINARY), "--db", url, *REPORT, "--to", "2026-01-01T00:00:00Z",
         "--output", str(report)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    calls = trace.read_text().splitlines()
    renamed = next(n for n, call in enumerate(calls) if "rename" in call and ".r.csv." in call)
    assert any("fsync(" in call and "/.r.csv." in call for call in calls[:renamed]), calls
    assert any("fsync(" in call and f"<{tmp_path}>" in call for call in calls[renamed:]), calls
    assert report.read_text().startswith("id,")


def test_a_report_of_more_than_one_name_is_written_in_place(store, tmp_path):
    """Renamed over, a report with hard links was split off: its other names kept the earlier
    report (session 46). Written in place, as through a symbolic link, every name has it."""
    url, _, _ = store
    report, other = tmp_path / "r.csv", tmp_path / "shared" / "r.csv"
    report.write_text("an earlier report\n")
    other.parent.mkdir()
    os.link(report, other)
    made = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(report))
    assert made.returncode == 0, made.stderr
    assert os.path.samefile(report, other) and other.read_text().startswith("id,")
    assert _beside_it(report) == ["r.csv"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root gives a file to another user")
def test_a_report_over_another_users_keeps_its_owner_and_group(store, tmp_path):
    """Renamed over, a report that root wrote over a user's became root's, unreadable by
    that user at 0600 (session 46). The owner and group stay; the mode is the user's alone,
    as for every report (docs/security.md, review 23d)."""
    url, _, _ = store
    report = tmp_path / "r.csv"
    report.write_text("an earlier report\n")
    os.chown(report, 65534, 65534)
    report.chmod(0o640)
    made = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(report))
    assert made.returncode == 0, made.stderr
    now = report.stat()
    assert (now.st_uid, now.st_gid, stat.S_IMODE(now.st_mode)) == (65534, 65534, 0o600)
    assert report.read_text().startswith("id,")


def test_a_store_that_refuses_a_write_is_said_not_a_traceback(store):
    """A trigger of an intruder's refusing the access log's entries made every read a
    traceback and exit 1, the code of findings (audit 46d). The read shows nothing: its entry
    comes first (SPEC section 8)."""
    url, database, _ = store
    with sqlite3.connect(database) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_entries BEFORE INSERT ON access_log "
            "BEGIN SELECT RAISE(ABORT, 'entries refused here'); END"
        )
    refused = run(url, "records", "--party", P.SOUTHENERGY)
    assert refused.returncode == 2 and refused.stdout == b""
    assert refused.stderr.endswith(b"Error: the store refused it: entries refused here\n")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="root, to give files to another user, and setpriv, to run without its powers",
)
@pytest.mark.parametrize("sticky", [False, True], ids=["own-folder", "sticky-folder"])
def test_another_users_writable_report_is_written_in_place_keeping_its_owner(
    store, tmp_path, sticky
):
    """A group- or world-writable report of another user, written by one who may not give
    it back (root without its capabilities stands for any user): renamed over, it became
    this user's at 0600, unreadable by its owner, and in a sticky folder such as /tmp the
    rename was refused, "Operation not permitted" naming a hidden file (review 46f). A
    shell's > writes it in place, owner kept; so does the command."""
    url, _, _ = store
    folder = tmp_path / "shared"
    folder.mkdir()
    if sticky:
        os.chown(folder, 65534, 65534)  # a folder the writer does not own either
        folder.chmod(0o1777)
    report = folder / "r.csv"
    report.write_text("an earlier report\n")
    os.chown(report, 65534, 65534)
    report.chmod(0o666)
    made = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-all", str(BINARY), "--db", url,
         *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", str(report)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    now = report.stat()
    assert (now.st_uid, now.st_gid) == (65534, 65534)
    assert report.read_text().startswith("id,") and _beside_it(report) == ["r.csv"]


def test_a_driver_used_wrongly_is_not_said_as_the_store_refusing_it():
    """The driver's own complaint about how it was called (a placeholder without a value, a
    value of a type it cannot send) is a bug of servicetrail's, which the store never saw:
    it became "Error: the store refused it: Incorrect number of bindings supplied" (exit 2,
    no traceback). What the store itself raises (a trigger's refusal) still is."""
    import psycopg

    from servicetrail.cli.app import _the_databases

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("CREATE TRIGGER no BEFORE INSERT ON t BEGIN SELECT RAISE(ABORT, 'no'); END")
    misuses = [("SELECT ?", ()), ("SELECT ?", (object(),))]
    for statement, values in misuses:
        with pytest.raises(sqlite3.Error) as misused:
            conn.execute(statement, values)
        assert not _the_databases(misused.value), misused.value
    with pytest.raises(sqlite3.Error) as refused:
        conn.execute("INSERT INTO t VALUES (1)")
    assert _the_databases(refused.value)
    # psycopg's, raised before anything is sent (no SQLSTATE): "the query has 1 placeholders
    # but 0 parameters were passed"
    assert not _the_databases(psycopg.ProgrammingError("the query has 1 placeholders"))
    assert not _the_databases(psycopg.InterfaceError("the cursor is closed"))


def test_a_report_that_cannot_be_written_names_its_file(store):
    """A full disk said "Error: [Errno 28] No space left on device", naming no file (46f)."""
    url, _, _ = store
    full = run(url, *REPORT, "--to", "2026-01-01T00:00:00Z", "--output", "/dev/full")
    assert full.returncode == 2
    assert full.stderr.endswith(b"Error: --output: /dev/full: No space left on device\n")


def test_db_upgrade_names_who_else_is_connected_to_a_postgresql_store(
    pg_at_revision, tmp_path, monkeypatch
):
    """A serve of the old code left running answered every read 500 after an upgrade that
    took its reader role's grants (audit 48d): the upgrade says who was connected."""
    from sqlalchemy import text

    from servicetrail.store.engine import make_engine

    monkeypatch.chdir(tmp_path)
    url = pg_at_revision(before_the_head())
    older = make_engine(url)
    try:
        with older.connect() as server_of_the_old_code:
            server_of_the_old_code.execute(text("SET application_name = 'old serve'"))
            server_of_the_old_code.commit()
            upgraded = Cli(url, tmp_path)("db", "upgrade")
            again = Cli(url, tmp_path)("db", "upgrade")
    finally:
        older.dispose()
    assert upgraded.exit_code == 0, upgraded.output
    assert "1 other connection(s)" in upgraded.stderr and "old serve from" in upgraded.stderr
    assert "other connection" not in again.stderr  # nothing changed under it


def test_a_read_refused_leaves_no_file_of_it_open(sqlite_url, tmp_path, monkeypatch):
    """A report or search is held in a temporary file until it is sent: one refused before
    (an unknown Party) left that file open to the collector, in a process that goes on (the
    tests', running every command in theirs: a ResourceWarning; session 59)."""
    import tempfile

    from servicetrail.cli import output_files

    made: list = []
    real = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(output_files.tempfile, "TemporaryFile", recording)
    window = ("--from", "2025-01-01", "--to", "2026-01-01")
    for read in (("report", "own", *window), ("records",)):
        said = Cli(sqlite_url, tmp_path)(*read, "--party", "NOBODY")
        assert said.exit_code == 2 and "unknown party" in said.stderr, said.output
    assert made and [f.closed for f in made] == [True] * len(made)
