"""A command whose reader has gone (`servicetrail records | head -1`): it ends as a coreutils
filter does, without a word and with the shell's 141 (cli/app.py says why that status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import personas as P
from tests.personas import starts_with_personas
from tests.conftest import ON_SQLITE_ALONE

SIGPIPE_STATUS = 141  # 128 + SIGPIPE, as bash's $? says `seq 1000000 | head -1`'s seq


@pytest.fixture
@starts_with_personas
def world(engine):
    return P.load_personas(engine)


# Each runs in a process of its own (~0.4 s), as only a real process has a standard output
# whose reader can go: what a user meets is the interpreter's exit, not click's in-process one
@ON_SQLITE_ALONE  # the pipe is the engine's alike
@pytest.mark.parametrize(
    "command",
    [
        ["records", "--party", P.SOUTHENERGY],
        ["report", "own", "--party", P.NORTHPOWER, "--from", "2025-01-01", "--to", "2026-01-01"],
        ["access-log"],
        ["triggers", "np_resp", "--party", P.NORTHPOWER],
        ["watch", "list", "--party", P.SOUTHENERGY],
        ["watch", "events", "WATCH", "--party", P.SOUTHENERGY],
        ["--help"],  # printed while the command line is read, before any command runs
        ["watch", "--help"],
    ],
    ids=lambda c: " ".join(c[:3]),
)
def test_a_command_whose_reader_has_gone_ends_quietly_with_141(
    cli, request, db_url, tmp_path, command
):
    """It exited 1 (click's answer), as a command that failed does: a script under
    `set -o pipefail` could not tell `records | head -1` from a records that failed."""
    named = {}
    if "--help" not in command:  # help reads nothing: the world, a watch, an event and a read
        world = request.getfixturevalue("world")
        made = json.loads(cli("watch", "add", "--party", P.SOUTHENERGY, "--name", "w").stdout)
        P.requests_to_esme_1(world.engine, (1,), counter_from=700)  # an event for watch events
        assert cli("records", "--party", P.SOUTHENERGY).exit_code == 0  # an access-log entry
        named = {"WATCH": str(made["id"]), "np_resp": str(world.ids["np_resp"])}
    reading, writing = os.pipe()
    os.close(reading)  # the reader gone before the first line, as head's after its own
    binary = str(Path(sys.executable).with_name("servicetrail"))
    env = {**os.environ, "SERVICETRAIL_SIGNING_KEY": str(tmp_path / "sign.key")}
    try:
        done = subprocess.run(
            [binary, "--db", db_url, *(named.get(word, word) for word in command)],
            stdout=writing, stderr=subprocess.PIPE, env=env, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writing)
    assert done.returncode == SIGPIPE_STATUS, done.stderr
    said = done.stderr.decode()  # a note of the signing key's may be there, no complaint
    assert not any(w in said for w in ("Error", "Traceback", "Exception", "pipe")), said


def test_a_refusal_whose_reader_has_gone_ends_quietly_with_141(tmp_path):
    """Said after the command had ended, to a standard error whose reader had gone (`records
    --limit 0 2>&1 | true`), click's report let the BrokenPipeError out: the interpreter's
    exit 1, where `ls /nowhere 2>&1 | true` is the shell's 141. (A refusal of the command
    line, so that no store is opened: a failed command's report is said the same way.)"""
    reading, writing = os.pipe()
    os.close(reading)
    binary = str(Path(sys.executable).with_name("servicetrail"))
    try:
        done = subprocess.run(
            [binary, "records", "--party", "P", "--limit", "0"],
            stdout=subprocess.DEVNULL, stderr=writing, cwd=tmp_path, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writing)
    assert done.returncode == SIGPIPE_STATUS
