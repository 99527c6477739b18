"""The program's first step (servicetrail.start): Ctrl-C while Python still imports the
command line is said as every command says it, not as a traceback (audit 46g)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import sqlite_store_from

ROOT = Path(__file__).resolve().parents[1]

# Ctrl-C's KeyboardInterrupt, raised where Python's own handler raises it when the key comes
# in the middle of the imports: inside the import of the command line's modules
_INTERRUPTED_WHILE_IMPORTING = """
import importlib.abc, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "servicetrail.cli.app":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from servicetrail.start import main
main()
"""


def test_ctrl_c_while_the_command_line_is_imported_is_said_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_WHILE_IMPORTING, "records", "--party", "X"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (130, "Error: interrupted\n")


def test_the_program_starts_there() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"servicetrail": "servicetrail.start:main"}


def test_it_runs_the_command_line() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", "from servicetrail.start import main; main()", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and "version" in ran.stdout


# What each command line (argv) of a list prints and imports, each started in a process forked
# from one that has imported the command line and `preloaded`: one JSON string a line, what
# the command printed and then, on its last line, the modules. A line that is a module's name
# (a string) imports that module instead of running a command.
_IMPORTED_BY = """
import importlib, json, os, sys
from servicetrail.cli import main

preloaded, lines = json.loads(sys.argv[1])
for module in preloaded:
    importlib.import_module(module)
for args in lines:
    read, write = os.pipe()
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        os.dup2(write, 1)
        try:
            if isinstance(args, str):
                importlib.import_module(args)
            else:
                main(args, prog_name="servicetrail", terminal_width=80)
        except SystemExit:
            pass
        print("\\n" + " ".join(sorted(sys.modules)), flush=True)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as said:
        print(json.dumps(said.read()))
    os.waitpid(child, 0)
"""


def _started(
    *lines: list[str] | str, preloaded: tuple[str, ...] = (), opens: Path | None = None
) -> list[tuple[str, set[str]]]:
    """What each `servicetrail ARGS` of `lines` printed, and what it imported (a module's
    name: what importing it imported); `opens`: a file for strace's record of the files each
    process opened (openat), a line each."""
    traced = (
        ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=openat", "-o", str(opens)]
        if opens
        else []
    )
    ran = subprocess.run(
        [*traced, sys.executable, "-c", _IMPORTED_BY, json.dumps([preloaded, lines])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,  # where `tests` is a package
    )
    assert ran.returncode == 0, ran.stderr
    started = []
    for line in ran.stdout.splitlines():
        said, _, imported = json.loads(line).rstrip("\n").rpartition("\n")
        started.append((said.rstrip("\n"), set(imported.split())))
    return started


def test_a_command_imports_its_own_family_of_commands_alone() -> None:
    """Each `servicetrail` command starts in a fresh interpreter, and the suite starts
    hundreds: `records` imported the server, the loaders' DUIS reader (lxml), the accounts'
    argon2 and the audit's process pool, some 0.05 s of CPU a start (session 50); then
    cryptography and SQLAlchemy's PostgreSQL dialect (session 51). The server and the test
    processes import what only some of their work needs where it is needed (session 63):
    the supervisor of `serve --workers N`, which answers no request, imported the accounts
    (argon2) and the queries for `demo`; each server process lxml for the record page's XML;
    and every pytest process, xdist's controller too, the web app's modules (FastAPI), lxml,
    argon2 and cryptography in tests/conftest.py, for a few fixtures' use (0.3 s of its CPU)."""
    [(_, imported), (_, serving), (_, app), (_, conftest)] = _started(
        ["records", "--help"], ["serve", "--help"], "servicetrail.web.app", "tests.conftest"
    )
    assert "servicetrail.cli.reads" in imported
    never = {
        "servicetrail.cli.serving",
        "servicetrail.cli.loading",
        "servicetrail.cli.logs",
        "servicetrail.cli.access",
        "servicetrail.cli.database",
        "servicetrail.web.server",
        "servicetrail.ingest.rejects",
        "servicetrail.store.log_audit",
        "servicetrail.store.log_roots",
        "lxml",
        "argon2",
        "multiprocessing",
        "cryptography",  # the signing's, imported where a key is made, read or checked
        "sqlalchemy.dialects.postgresql",  # for the tables' options (schema._partial)
    }
    assert imported & never == set()
    assert "servicetrail.cli.serving" in serving and "servicetrail.web.server" in serving
    demo_only = {"servicetrail.store.accounts", "servicetrail.store.queries", "argon2"}
    assert serving & demo_only == set()
    assert "servicetrail.web.presenters" in app and "lxml" not in app
    used_later = {"fastapi", "starlette", "servicetrail.web", "lxml", "argon2", "cryptography"}
    assert "tests.personas" in conftest and conftest & used_later == set()


def test_the_list_of_commands_is_theirs_and_imports_none_of_them() -> None:
    """`servicetrail --help` imported every command's module, SQLAlchemy with them, to read
    the first sentence of each one's help: 0.5 s of CPU for a page of text (session 59). It
    lists the sentences cli/__init__.py names, each the command's own."""
    import click
    from click.testing import CliRunner

    from servicetrail.cli import main

    [(listed, imported)] = _started(["--help"])
    families = {
        f"servicetrail.cli.{target.partition(':')[0]}" for target, _ in main.lazy_commands.values()
    }
    assert imported & families == set()
    assert "sqlalchemy" not in imported
    for name in main.lazy_commands:  # imported here: the list is then made from them
        main.get_command(click.Context(main), name)
    shown = CliRunner().invoke(main, ["--help"], prog_name="servicetrail", terminal_width=80)
    assert shown.output.rstrip("\n") == listed


def test_commands_that_make_no_party_reads_import_none_of_their_machinery(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """`accounts`, `tokens` and `load` imported the visibility rule's queries, the access log,
    its seal and the signing, as every command opening the store did, and `load` the DUIS
    reader (lxml) that only `ingest` uses: the contract check starts them some 50 times
    (session 59). `accounts` and `tokens` imported the watches' module (the outbox, the
    matcher's SQL) for `accounts disable`'s note and the search's rules for the blank
    values' check, and `log key` the DUIS reader for `log verify`'s (session 61). No
    command that works on the store alone imports the server or the webhooks' worker: run,
    not only asked for its help, as a script runs it. Nor argon2, where no password is
    hashed; and no command reads the signing key more than once: a read's seal read it
    twice (its check, then the seal; session 63)."""
    reads = {"servicetrail.store.queries", "servicetrail.store.merkle_log", "cryptography"}
    # the watches' module (the outbox, the matcher's SQL), and the search's rules
    unneeded = {
        "servicetrail.store.watches",
        "servicetrail.store.outbox",
        "servicetrail.domain.search",
    }
    serving = {"servicetrail.web", "servicetrail.webhooks", "fastapi", "starlette", "aiohttp"}
    url = sqlite_store_from(sqlite_template, tmp_path)
    users = tmp_path / "users.csv"
    users.write_text("User_id,party_id,party_name,role\n90-B3-D5-1F-30-02-00-00,P1,One,ES\n")
    accounts, tokens, load, log_key, loaded, records, again = started = _started(
        ["accounts", "list", "--db", url],  # a module for each family: `accounts create` too
        ["tokens", "list", "--db", url],
        ["load", "users", "--help"],
        ["log", "key", "--help"],
        ["load", "users", str(users), "--db", url],  # makes the signing key a read seals with
        ["records", "--party", "P1", "--db", url],
        ["records", "--party", "P1", "--db", url],  # checks its key against the store's list
        preloaded=("sqlalchemy",),  # each opens the store: imported once, here
        opens=tmp_path / "opens",
    )
    assert [said.split()[:2] for said, _ in (accounts, tokens)] == [
        ["ACCOUNT", "PARTY"],
        ["ID", "ACCOUNT"],
    ]
    for _, imported in (accounts, tokens):
        assert "servicetrail.cli.access" in imported
        assert imported & (reads | unneeded | {"argon2"}) == set()
    assert "servicetrail.cli.loading" in load[1] and "lxml" not in load[1]
    assert "servicetrail.cli.logs" in log_key[1] and "lxml" not in log_key[1]
    # a read imports the reads it makes: `records` imported the watches' events, the outbox
    # and the proofs, and the audit for the store's list of keys (session 62)
    assert loaded[0].startswith("loaded 1,") and records[0].startswith("id ")
    assert "cryptography" in records[1] and "servicetrail.store.merkle_log" in records[1]
    proofs_and_watches = {"servicetrail.store.log_proofs", "servicetrail.store.watch_events"}
    assert records[1] & (unneeded - {"servicetrail.domain.search"}) == set()
    assert records[1] & (proofs_and_watches) == set()
    assert "servicetrail.store.log_audit" not in records[1]
    for _, imported in started:
        assert imported & serving == set()  # a package is in sys.modules with any of its own
    # the signing key's opens, by process: the reads' seals (a load of the registry seals none)
    assert again[0] == records[0]
    key = f'openat(AT_FDCWD, "{os.environ["SERVICETRAIL_SIGNING_KEY"]}"'
    opens = (tmp_path / "opens").read_text().splitlines()
    assert list(Counter(line.split()[0] for line in opens if key in line).values()) == [1, 1]


def test_the_program_leaves_what_it_made_to_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command's objects are frozen as it ends (click ends every one by SystemExit): the exit
    then skips the collections it ran over all of them, 0.1 s of a command's 0.5 s of CPU
    (BENCHMARKS.md, session 62)."""
    import gc

    from servicetrail import cli, start

    def ends() -> None:
        raise SystemExit(0)  # as click's standalone main ends every command

    monkeypatch.setattr(cli, "main", ends)
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit):
            start.main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this process goes on: its objects are collected as before
