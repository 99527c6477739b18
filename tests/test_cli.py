"""The `servicetrail` command line (SPEC section 5): help, accounts and tokens, the own-traffic
report, `records` through the MP141 rule, and the schema commands."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import re
import os
import shutil
import socket
import subprocess
import sys
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.engine import make_url

from servicetrail.cli import main
from servicetrail.store import engine as store_engine
from servicetrail.store import store_url
from servicetrail.store.migrate import head_revision
from tests.conftest import ON_SQLITE_ALONE
from tests.conftest import Cli
from tests.personas import load_personas, starts_with_personas
from tests.spec_fields import ITEM_FIELDS, REPORT_FIELDS
from tests.store.revisions import (
    before_the_head,
    db_at_revision,
    pg_at_revision,
    revision_templates,
)
from tests.ingest import sat_line
from tests.intruder import intrude
from tests.store.log_fixtures import SEALED_MONTHS, access_entries, leaves, sealed_logs, this_month
from tests.web.live_server import live_server_process

__all__ = ["db_at_revision", "pg_at_revision", "revision_templates"]  # fixtures

UTC = timezone.utc
NORTH_IS = "90-B3-D5-1F-30-02-00-01"
NORTH_GS = "90-B3-D5-1F-30-02-00-02"
SOUTH_IS = "90-B3-D5-1F-30-02-00-11"
WIRES_ED = "90-B3-D5-1F-30-02-00-21"
LOOK_OU = "90-B3-D5-1F-30-02-00-41"
METER = "00-DB-00-00-00-00-00-01"
GAS = "00-DB-00-00-00-00-00-02"
DCC = "90-B3-D5-1F-30-00-00-02"
PASSWORD = "correct horse battery staple"
NORTH_FEB_PAYLOAD = 'NORTH-FEB-REQ, with "quotes"\nand a second line'


def _record(logged_at, kind, request_id, srv, user_id, device_id, code="", payload=""):
    return {
        "logged_at": logged_at,
        "kind": kind,
        "request_id": request_id,
        "srv": srv,
        "user_id": user_id,
        "device_id": device_id,
        "response_code": code,
        "payload": payload,
    }


def _exchange(
    day_time: str, user: str, device: str, srv: str, counter: int, secret: str, target: str = ""
):
    rid = f"{user}:{target or device}:{counter}"
    return [
        _record(f"2025-{day_time}:00Z", "request", rid, srv, user, device, "", secret + "-REQ"),
        _record(f"2025-{day_time}:01Z", "acknowledgement", rid, srv, user, device, "I99", ""),
        _record(f"2025-{day_time}:30Z", "response", rid, srv, user, device, "I0", secret + "-RSP"),
    ]


RECORDS = [
    *_exchange(
        "02-01T10:00", LOOK_OU, METER, "4.8.1", 1, "LOOK-FEB"
    ),  # NORTH supplier, WIRES NO: mp141
    *_exchange("04-01T10:00", LOOK_OU, METER, "4.8.1", 2, "LOOK-APR"),  # SOUTH supplier by then
    *_exchange("02-02T10:00", NORTH_IS, METER, "4.1.1", 3, "NORTH-FEB"),
    *_exchange("02-05T10:00", NORTH_GS, GAS, "4.1.1", 4, "NORTH-GAS"),
    _record(
        "2025-02-03T10:00:00Z",
        "device_alert",
        f"{METER}:{NORTH_IS}:5",
        "",
        NORTH_IS,
        METER,
        "",
        "ALERT-NORTH",
    ),
    _record(
        "2025-04-02T10:00:00Z",
        "device_alert",
        f"{METER}:{SOUTH_IS}:6",
        "",
        SOUTH_IS,
        METER,
        "",
        "ALERT-SOUTH",
    ),
    _record(
        "2025-02-04T10:00:00Z",
        "dcc_alert",
        f"{DCC}:{LOOK_OU}:7",
        "",
        LOOK_OU,
        "",
        "",
        "DCCALERT-LOOK",
    ),
    _record(
        "2025-02-06T10:00:00Z",
        "request",
        f"{NORTH_IS}:{DCC}:8",
        "8.2",
        NORTH_IS,
        "",
        "",
        "NORTH-INV",
    ),
    _record(
        "2025-03-01T00:00:00Z",
        "request",
        f"{NORTH_IS}:{METER}:9",
        "4.1.1",
        NORTH_IS,
        METER,
        "",
        "NORTH-EDGE",
    ),
]
RECORDS[6]["payload"] = NORTH_FEB_PAYLOAD  # the NORTH-FEB request: commas, quotes and a new line


def key(r: dict) -> tuple[str, str, datetime]:
    return (
        r["request_id"].upper(),
        r["kind"],
        datetime.fromisoformat(r["logged_at"].replace("Z", "+00:00")).astimezone(UTC),
    )


def keys_where(**match) -> set:
    return {
        key(r)
        for r in RECORDS
        if all((r[k] in v if isinstance(v, (set, tuple)) else r[k] == v) for k, v in match.items())
    }


NORTH_OWN = keys_where(user_id={NORTH_IS, NORTH_GS})
LOOK_FEB = keys_where(request_id=f"{LOOK_OU}:{METER}:1")
LOOK_APR = keys_where(request_id=f"{LOOK_OU}:{METER}:2")
NORTH_EDGE = keys_where(request_id=f"{NORTH_IS}:{METER}:9")


@pytest.fixture
def trail(cli, tmp_path):
    """A small SAT: four Parties (NORTH with two User Roles), a change of supplier on METER on
    1 March, a Network Operator, alerts, a non-device request."""
    (tmp_path / "users.csv").write_text(
        f"user_id,party_id,party_name,role\n{NORTH_IS},NORTH,North Energy "
        f"plc,IS\n{NORTH_GS},NORTH,North Energy plc,GS\n{SOUTH_IS},SOUTH,South Power "
        f"Ltd,IS\n{WIRES_ED},WIRES,Wires Network,ED\n{LOOK_OU},LOOK,Lookers Ltd,OU\n"
    )
    (tmp_path / "devices.csv").write_text(
        f"device_id,device_type,smets\n{METER},ESME,2\n{GAS},GSME,1\n"
    )
    (tmp_path / "resp.csv").write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        f"{METER},NORTH,supplier,2025-01-01T00:00:00Z,2025-03-01T00:00:00Z\n"
        f"{METER},SOUTH,supplier,2025-03-01T00:00:00Z,\n"
        f"{METER},WIRES,network_operator,2025-01-01T00:00:00Z,\n"
        f"{GAS},NORTH,supplier,2025-01-01T00:00:00Z,\n"
    )
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    for args in (
        ("load", "users", "users.csv"),
        ("load", "devices", "devices.csv"),
        ("load", "responsibilities", "resp.csv"),
        ("ingest", "records.jsonl"),
    ):
        result = cli(*args[:-1], tmp_path / args[-1])
        assert result.exit_code == 0, result.output
    return tmp_path


def jsonl(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def item_key(i: dict) -> tuple:
    return key(i)


# ------------------------------------------------------------------ help and global options


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # through list_commands/get_command, as click does: `group.commands` holds only the
    # commands imported so far, which at collection was none of the lazy ones
    paths = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


@pytest.mark.parametrize(
    "path", [(), *_command_paths(main)], ids=lambda p: " ".join(p) or "servicetrail"
)
def test_help_on_every_command_and_group(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


def test_top_level_help_lists_the_commands():
    output = CliRunner().invoke(main, ["--help"]).output
    for name in ("load", "ingest", "accounts", "tokens", "report", "records", "db"):
        assert f"\n  {name} " in output, name
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0


def test_load_help_names_the_reject_file_as_it_is_made():
    """`load --help` said "named FILE-stem.rejects.jsonl", which click wrapped as "FILE-" and
    "stem.rejects.jsonl" (audit 57c): the name the loader makes, as SPEC section 4 and
    ingest's help give it."""
    shown = " ".join(CliRunner().invoke(main, ["load", "--help"]).output.split())
    assert "without its last extension, plus .rejects.jsonl" in shown
    assert "users.csv gives users.rejects.jsonl" in shown


@pytest.mark.parametrize(
    "command",
    [("records", "--party", "NORTH"), ("report", "own", "--party", "NORTH"), ("access-log",)],
)
@ON_SQLITE_ALONE
def test_from_and_to_help_give_examples_the_command_takes(cli, trail, command):
    """--from and --to said "(ISO-8601)": a standard's number, not what to type, and not
    that a date alone is taken. Each now gives examples of its own (as the screen's hints
    do), and each example is one the command takes."""
    shown = " ".join(cli(*command, "--help").stdout.split())
    examples = {}
    for option in ("--from", "--to"):
        said = shown.split(f"{option} ", 1)[1]
        said = said.split(" --", 1)[0]
        assert "ISO-8601" not in said, said
        examples[option] = re.findall(r"such as (\S+?)[ ,.)]", said)
        assert len(examples[option]) == 2, said  # a date, and a time with its offset
    assert examples["--from"] != examples["--to"]  # To's own, not From's again
    for start, end in zip(examples["--from"], examples["--to"]):
        result = cli(*command, "--from", start, "--to", end)
        assert result.exit_code == 0, (start, end, result.output)


@ON_SQLITE_ALONE
def test_a_wrong_time_says_what_to_type(cli, trail):
    """ "not an ISO-8601 time: 'yesterday'" left the user to know what one looks like."""
    result = cli("records", "--party", "NORTH", "--from", "yesterday")
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert (
        "not an ISO-8601 time: 'yesterday'. Write a date, such as 2025-02-10, or a date and "
        "time with its UTC offset, such as 2025-02-10T09:30:00Z"
    ) in said, said


@ON_SQLITE_ALONE
def test_db_option_after_the_command_and_environment_variable(trail, db_url, tmp_path, monkeypatch):
    after = CliRunner().invoke(
        main, ["records", "--party", "LOOK", "--format", "jsonl", "--db", db_url]
    )
    assert after.exit_code == 0 and len(after.stdout.splitlines()) == 7
    monkeypatch.setenv("SERVICETRAIL_DATABASE_URL", db_url)
    from_env = CliRunner().invoke(main, ["records", "--party", "LOOK", "--format", "jsonl"])
    assert from_env.exit_code == 0 and len(from_env.stdout.splitlines()) == 7


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_takes_db_after_its_name():
    """SPEC section 5: `--db URL` on any command. `log verify-proof` and `log verify-consistency`
    open no store and refused it (No such option, exit 2) where a script adds it to each
    command it runs."""
    lacking = [
        " ".join(path)
        for path, command in _leaf_commands(main)
        if not any("--db" in param.opts for param in command.params)
    ]
    assert not lacking, lacking


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///file:x?mode=memory&uri=true",
        "sqlite:///file:x.db?vfs=memdb&uri=true",  # a named file, kept in memory (review 25e)
    ],
)
def test_a_store_in_memory_is_refused_before_it_takes_anything(url, tmp_path, monkeypatch):
    """It keeps nothing once the command ends: `load users` said "loaded 1" and stored
    nothing, and `serve` gave each thread an empty store of its own, answering 500s (audit
    25d). `sqlite:///` is what an empty variable makes of `sqlite:///$DB`."""
    monkeypatch.chdir(tmp_path)
    users = tmp_path / "users.csv"
    users.write_text("user_id,party_id,party_name,role\n90-B3-D5-1F-30-01-00-01,NORTH,N,IS\n")
    for command in (["load", "users", str(users)], ["serve", "--port", "1"]):
        result = CliRunner().invoke(main, ["--db", url, *command])
        assert result.exit_code == 2, result.output
        assert "in memory, which keeps nothing" in result.output and "loaded" not in result.output


# ------------------------------------------------------------------ accounts and tokens


def test_accounts_create_reads_password_from_stdin_and_stores_argon2(cli, trail, engine):
    result = cli("accounts", "create", "alice", "--party", "NORTH", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with engine.connect() as conn:
        party, stored = conn.execute(
            text("SELECT party_id, password_hash FROM account WHERE username = 'alice'")
        ).one()
        everything = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM account")) for v in row
        )
    assert party == "NORTH"
    assert stored.startswith("$argon2id$") and PASSWORD not in everything
    assert PasswordHasher().verify(stored, PASSWORD)

    again = cli("accounts", "create", "alice", "--party", "NORTH", input=PASSWORD + "\n")
    assert again.exit_code != 0 and "already exists" in again.stderr


@pytest.mark.parametrize(
    "username, party, password, message",
    [
        ("bob", "NORTH", "short", "12 characters"),
        ("bob", "NORTH", "", "12 characters"),
        ("bob", "NOBODY", PASSWORD, "unknown party"),
        ("bad name!", "NORTH", PASSWORD, "username"),
    ],
)
def test_accounts_create_refusals(cli, trail, engine, username, party, password, message):
    result = cli("accounts", "create", username, "--party", party, input=password + "\n")
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM account")).scalar_one() == 0


def test_tokens_create_prints_only_the_token(cli, trail, engine):
    assert (
        cli("accounts", "create", "alice", "--party", "NORTH", input=PASSWORD + "\n").exit_code == 0
    )
    first = cli("tokens", "create", "alice")
    second = cli("tokens", "create", "alice")
    assert first.exit_code == 0 and second.exit_code == 0
    tokens = []
    for result in (first, second):
        lines = result.stdout.splitlines()
        assert len(lines) == 1 and result.stdout.endswith("\n")
        token = lines[0]
        assert token == token.strip() and " " not in token and len(token) >= 32
        assert result.stderr.strip()  # the advice goes to standard error
        assert token not in result.stderr
        tokens.append(token)
    assert tokens[0] != tokens[1]
    with engine.connect() as conn:
        stored = set(
            conn.execute(
                text("SELECT token_hash FROM api_token WHERE username = 'alice'")
            ).scalars()
        )
    assert stored == {
        hashlib.sha256(t.encode()).hexdigest() for t in tokens
    }  # never the token itself

    unknown = cli("tokens", "create", "mallory")
    assert unknown.exit_code != 0 and unknown.stdout == "" and "mallory" in unknown.stderr


# ------------------------------------------------------------------ report own


def parse_csv(content: str) -> tuple[list[str], list[dict]]:
    reader = csv.reader(io.StringIO(content))
    header = next(reader)
    return header, [dict(zip(header, row)) for row in reader]


def test_report_own_csv(cli, trail):
    result = cli(
        "report", "own", "--party", "NORTH", "--from", "2025-01-01T00:00:00Z", "--to", "2026-01-01"
    )
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(result.stdout)
    assert header == list(REPORT_FIELDS)
    assert result.stdout.count("id,logged_at,kind") == 1  # one header row
    assert {item_key(r) for r in rows} == NORTH_OWN and len(rows) == len(NORTH_OWN)
    assert all(r["access"] == "own" and r["party_id"] == "NORTH" for r in rows)
    payloads = {item_key(r): r["payload"] for r in rows}
    assert payloads == {key(r): r["payload"] for r in RECORDS if key(r) in NORTH_OWN}
    assert NORTH_FEB_PAYLOAD in payloads.values()
    for secret in ("LOOK-FEB", "LOOK-APR", "ALERT-SOUTH", "DCCALERT", LOOK_OU, SOUTH_IS):
        assert secret not in result.stdout  # never another User's traffic, not even its titles
    times = [r["logged_at"] for r in rows]
    assert times == sorted(times, reverse=True)


def test_report_window_from_inclusive_to_exclusive(cli, trail):
    before = cli(
        "report",
        "own",
        "--party",
        "NORTH",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-03-01T00:00:00Z",
        "--format",
        "jsonl",
    )
    assert {item_key(i) for i in jsonl(before)} == NORTH_OWN - NORTH_EDGE
    at = cli(
        "report",
        "own",
        "--party",
        "NORTH",
        "--from",
        "2025-03-01T01:00:00+01:00",
        "--to",
        "2025-03-02T00:00:00Z",
        "--format",
        "jsonl",
    )
    assert {item_key(i) for i in jsonl(at)} == NORTH_EDGE


def test_report_own_jsonl_and_output_file(cli, trail):
    target = trail / "north.jsonl"
    result = cli(
        "report",
        "own",
        "--party",
        "NORTH",
        "--from",
        "2025-01-01",
        "--to",
        "2026-01-01",
        "--format",
        "jsonl",
        "--output",
        target,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"{len(NORTH_OWN)} records" in result.stderr
    items = [json.loads(line) for line in target.read_text().splitlines()]
    assert {item_key(i) for i in items} == NORTH_OWN
    assert all(
        i["access"] == "own" and "payload" in i and tuple(i)[:15] == ITEM_FIELDS for i in items
    )

    csv_target = trail / "north.csv"
    assert (
        cli(
            "report",
            "own",
            "--party",
            "NORTH",
            "--from",
            "2025-01-01",
            "--to",
            "2026-01-01",
            "--output",
            csv_target,
        ).exit_code
        == 0
    )
    header, rows = parse_csv(csv_target.read_text())
    assert tuple(header) == REPORT_FIELDS and len(rows) == len(NORTH_OWN)


def test_a_report_written_over_an_earlier_one_replaces_it_whole(cli, trail):
    """The earlier report was emptied, then written: one stopped part way (killed, a full
    disk) lost it and left a cut one that still read as a report (audit 45b). Written beside
    it and put in its place, whoever reads the earlier one meanwhile reads it to its end, and
    no file of the new one's is left beside it."""
    target = trail / "north.csv"
    target.write_text("yesterday's report\n" * 10_000)
    reader = open(target)  # noqa: SIM115  (held open across the new report's writing)
    try:
        args = ("report", "own", "--party", "NORTH", "--from", "2025-01-01", "--to", "2026-01-01")
        assert cli(*args, "--output", target).exit_code == 0
        assert reader.read() == "yesterday's report\n" * 10_000
    finally:
        reader.close()
    header, rows = parse_csv(target.read_text())
    assert tuple(header) == REPORT_FIELDS and len(rows) == len(NORTH_OWN)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # payloads: the user's alone
    assert sorted(p.name for p in trail.iterdir() if "north" in p.name) == ["north.csv"]


def test_a_report_with_the_longest_name_a_folder_allows_is_written(cli, trail):
    """Its new file beside it was named after it, plus a dot before and eight characters
    after: a name of 247 bytes or more, which the folder allows, was refused as too long."""
    target = trail / ("é" * 125 + ".csv")  # 254 bytes
    target.write_text("yesterday's report\n")
    args = ("report", "own", "--party", "NORTH", "--from", "2025-01-01", "--to", "2026-01-01")
    result = cli(*args, "--output", target)
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(target.read_text())
    assert tuple(header) == REPORT_FIELDS and len(rows) == len(NORTH_OWN)
    assert [p.name for p in trail.iterdir() if p.name.endswith(".csv.") or "éé" in p.name] == [
        target.name
    ]


def test_report_is_own_traffic_even_for_a_responsible_party(cli, trail):
    """WIRES sees ten of METER's records under MP141, but its report holds its own traffic only."""
    result = cli("report", "own", "--party", "WIRES", "--from", "2025-01-01", "--to", "2026-01-01")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [",".join(REPORT_FIELDS)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", "2025-03-01", "--to", "2025-02-01"], "--to"),
        (["--from", "yesterday", "--to", "2025-03-01"], "--from"),
        (["--to", "2025-03-01"], "--from"),
    ],
)
@ON_SQLITE_ALONE
def test_report_bad_window(cli, trail, args, message):
    result = cli("report", "own", "--party", "NORTH", *args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stdout == ""


def test_an_empty_window_is_an_empty_report_and_list(cli, trail):
    """[T, T) holds no time (from inclusive, to exclusive): nothing, not an error."""
    window = ["--from", "2025-03-01T00:00:00Z", "--to", "2025-03-01T00:00:00Z"]
    report = cli("report", "own", "--party", "NORTH", *window)
    assert report.exit_code == 0 and report.stdout.splitlines() == [",".join(REPORT_FIELDS)]
    listed = cli("records", "--party", "NORTH", "--format", "jsonl", *window)
    assert listed.exit_code == 0 and listed.stdout == ""


def test_report_unknown_party(cli, trail):
    target = trail / "report.csv"
    result = cli(
        "report",
        "own",
        "--party",
        "NOBODY",
        "--from",
        "2025-01-01",
        "--to",
        "2026-01-01",
        "--output",
        target,
    )
    assert result.exit_code != 0
    assert "unknown party" in result.stderr and "Traceback" not in result.output
    assert "in the store " in result.stderr  # which store was asked, for a newcomer
    assert not target.exists()  # no empty report left behind to be mistaken for "no traffic"


# ------------------------------------------------------------------ records


def test_records_through_the_rule_newest_first(cli, trail):
    items = jsonl(cli("records", "--party", "NORTH", "--format", "jsonl"))
    got = {item_key(i): i for i in items}
    assert len(got) == len(items)
    assert set(got) == NORTH_OWN | LOOK_FEB  # not LOOK-APR (SOUTH's time), no alerts of others
    assert all(
        got[k]["access"] == "own" and got[k]["payload"] == p
        for k, p in ((key(r), r["payload"]) for r in RECORDS)
        if k in NORTH_OWN
    )
    for k in LOOK_FEB:
        assert got[k]["access"] == "mp141" and "payload" not in got[k]
        assert (got[k]["srv"], got[k]["srv_title"]) == ("4.8.1", "Read Active Import Profile Data")
        assert (
            got[k]["party_id"] == "LOOK"
            and got[k]["user_role"] == "OU"
            and got[k]["device_type"] == "ESME"
        )
    assert all("LOOK-FEB" not in json.dumps(got[k]) for k in LOOK_FEB)
    times = [(i["logged_at"], i["id"]) for i in items]
    assert times == sorted(times, reverse=True)
    assert tuple(items[0])[:15] == ITEM_FIELDS


def test_records_for_other_parties(cli, trail):
    south = {
        item_key(i): i["access"]
        for i in jsonl(cli("records", "--party", "SOUTH", "--format", "jsonl"))
    }
    assert south == {
        **{k: "mp141" for k in LOOK_APR | NORTH_EDGE},
        **{k: "own" for k in keys_where(user_id=SOUTH_IS)},
    }
    wires = {
        item_key(i): i["access"]
        for i in jsonl(cli("records", "--party", "WIRES", "--format", "jsonl"))
    }
    on_meter = keys_where(device_id=METER, kind={"request", "acknowledgement", "response"})
    assert wires == {k: "mp141" for k in on_meter}
    look = {
        item_key(i): i["access"]
        for i in jsonl(cli("records", "--party", "LOOK", "--format", "jsonl"))
    }
    assert look == {k: "own" for k in keys_where(user_id=LOOK_OU)}


def test_records_filters(cli, trail):
    def keys(*args):
        return {
            item_key(i)
            for i in jsonl(cli("records", "--party", "NORTH", "--format", "jsonl", *args))
        }

    assert keys("--device", GAS.lower()) == keys_where(device_id=GAS)
    assert keys("--device", METER.lower()) == (NORTH_OWN | LOOK_FEB) & keys_where(device_id=METER)
    assert keys("--request-id", f"{LOOK_OU}:{METER}:1".lower()) == LOOK_FEB
    assert keys("--request-id", f"{LOOK_OU}:{METER}:2") == set()  # exists, but not for NORTH
    window = keys("--from", "2025-02-02T10:00:00Z", "--to", "2025-02-03T10:00:00Z")
    assert window == keys_where(
        request_id=f"{NORTH_IS}:{METER}:3"
    )  # to is exclusive: not the 02-03 alert
    assert keys("--scope", "own") == NORTH_OWN
    assert keys("--scope", "others") == LOOK_FEB
    everything = jsonl(cli("records", "--party", "NORTH", "--format", "jsonl"))
    limited = jsonl(cli("records", "--party", "NORTH", "--format", "jsonl", "--limit", "3"))
    assert limited == everything[:3]


def test_records_table(cli, trail, use_settings):
    result = cli("records", "--party", "NORTH")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "logged_at", "kind", "srv"]
    assert set(lines[1]) <= {"-", " "}
    body = lines[2:]
    assert len(body) == len(NORTH_OWN | LOOK_FEB)
    assert sum(" mp141 " in line for line in body) == len(LOOK_FEB)
    newest = body[0].split()
    assert newest[0].isdigit() and newest[1] == "2025-03-01T00:00:00Z"  # its id, newest first
    assert "NORTH-" not in result.stdout  # the table has no payload column
    # the Request ID last and whole, which ties a response to its request (audit 48f)
    assert lines[0].split()[-1] == "request_id"
    assert sorted(line.split()[-1] for line in body) == sorted(
        key[0] for key in NORTH_OWN | LOOK_FEB
    )
    # a 0 s limit stops the command's first search too: on SQLite it escaped, a fresh
    # statement's first look at the clock coming only after thousands of steps (0ab331f).
    # A listing streams under the export limit, not the screen's statement limit
    use_settings(SERVICETRAIL_EXPORT_TIMEOUT=0)
    stopped = cli("records", "--party", "NORTH")
    assert (stopped.exit_code, stopped.stdout) == (3, ""), stopped.output
    assert stopped.stderr == (
        "Error: the search took longer than 0 s and was stopped: narrow it (a Device ID, a "
        "Request ID or a shorter date range)\n"
    )


def test_records_of_a_party_that_sees_nothing(cli, trail, tmp_path):
    (tmp_path / "more.csv").write_text(
        "user_id,party_id,party_name,role\n90-B3-D5-1F-30-02-00-99,QUIET,Quiet,QQ\n"
    )
    assert cli("load", "users", tmp_path / "more.csv").exit_code == 0
    result = cli("records", "--party", "QUIET", "--format", "jsonl")
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--party", "NOBODY"], None, "unknown party"),
        # a Greek capital Eta: 'NORTH' read as the Party the store has
        (["--party", "NORT\u0397"], 2, "U+0397 GREEK CAPITAL LETTER ETA is not ASCII"),
        (["--party", "NORTH", "--device", "zz-not-an-eui"], 2, "EUI-64"),
        (["--party", "NORTH", "--request-id", "nonsense"], 2, "--request-id"),
        (["--party", "NORTH", "--from", "yesterday"], 2, "--from"),
        (["--party", "NORTH", "--limit", "0"], 2, "--limit"),
        (["--party", "NORTH", "--scope", "everyone"], 2, "--scope"),
        (["--device", METER], 2, "--party"),
    ],
)
@ON_SQLITE_ALONE
def test_records_bad_arguments(cli, trail, args, code, message):
    result = cli("records", *args)
    assert result.exit_code != 0 if code is None else result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


# ------------------------------------------------------------------ the schema


def test_db_upgrade_idempotent_and_check_passes(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    runner = CliRunner()
    first = runner.invoke(main, ["--db", url, "db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert first.stdout == f"the schema was built at the newest migration ({head_revision()})\n"
    check = runner.invoke(main, ["--db", url, "db", "check"])
    assert check.exit_code == 0 and "matches" in check.stdout, check.output

    users = tmp_path / "users.csv"
    users.write_text(f"user_id,party_id,party_name,role\n{NORTH_IS},NORTH,North,IS\n")
    assert runner.invoke(main, ["--db", url, "load", "users", str(users)]).exit_code == 0
    again = runner.invoke(main, ["--db", url, "db", "upgrade"])
    assert again.exit_code == 0, again.output
    # said as what it did (audit 44d: both runs said the schema was at the newest migration)
    assert again.stdout == f"the schema was at the newest migration already ({head_revision()})\n"
    assert runner.invoke(main, ["--db", url, "db", "check"]).exit_code == 0
    reload = runner.invoke(main, ["--db", url, "load", "users", str(users)])
    assert reload.stdout == "loaded 0, rejected 0, skipped 1 duplicates\n"  # the data survived


def test_a_store_at_an_older_schema_is_refused_until_db_upgrade(
    db_at_revision, tmp_path, monkeypatch
):
    """SPEC section 5: any command builds a new store, but only `db upgrade` (and `demo`)
    migrates one that an older servicetrail left."""
    monkeypatch.chdir(tmp_path)
    previous = before_the_head()
    url = db_at_revision(previous)
    runner = CliRunner()
    refused = runner.invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"Error: the store's schema is at revision {previous}, older than this servicetrail's "
        f"{head_revision()}: run 'servicetrail db upgrade' first\n"
    )
    key = runner.invoke(main, ["--db", url, "log", "key"])  # any command, this one too
    assert key.exit_code == 2 and "servicetrail db upgrade" in key.stderr
    check = runner.invoke(main, ["--db", url, "db", "check"])  # was a difference, exit 1
    assert (check.exit_code, check.stderr) == (2, refused.stderr)
    assert runner.invoke(main, ["--db", url, "db", "upgrade"]).exit_code == 0
    after = runner.invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert after.exit_code == 2  # opened, then asked
    assert after.stderr.startswith("Error: unknown party 'NORTH' in the store ")


def test_demo_brings_an_older_store_up_to_date(db_at_revision, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = db_at_revision(before_the_head())
    result = CliRunner().invoke(main, ["--db", url, "demo", "--no-serve", "--records", "1000"])
    assert result.exit_code == 0, result.output
    # the logins on standard output, what the command gives (audit 26a: "printing the demo
    # logins", and a caller reading standard output found nothing)
    assert (
        result.stdout.startswith("Demo logins (password: ") and "Showcase device" in result.stdout
    )
    assert "Demo logins" not in result.stderr
    # it serves nothing: it says how to, not "Open http://127.0.0.1:8000/" (audit 25d)
    assert "Open http" not in result.stderr and "Serve it with: servicetrail --db" in result.stderr


def test_demo_says_how_to_serve_its_store_without_the_stores_password(pg_server, tmp_path):
    """It printed `postgresql+psycopg://postgres:PASSWORD@...` (review 25f). The throwaway
    server trusts local connections, so a password in the URL is carried and not needed."""
    url = pg_server.new_database().replace("postgres@", "postgres:s3cret-pw@", 1)
    result = CliRunner().invoke(main, ["--db", url, "demo", "--no-serve", "--records", "1000"])
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output and "+psycopg" not in result.output
    assert "Serve it with: servicetrail --db 'postgresql://postgres:***@" in result.stderr


def test_a_store_url_whose_port_is_not_a_number_is_said_so():
    """It said "invalid literal for int() with base 10: 'notaport'" (audit 25d); one port of
    libpq's list of servers too (audit 55h)."""
    url = "postgresql://reader:pw@127.0.0.1:notaport/trail"
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 2
    assert "its port is not a number" in result.output and "pw" not in result.output
    result = CliRunner().invoke(
        main, ["--db", "postgresql://u:pw@a:1,b:x/t", "records", "--party", "N"]
    )
    assert result.exit_code == 2 and "its port is not a number" in result.output


def test_a_store_url_naming_several_servers_opens_one_that_answers(pg_url):
    """libpq's list of servers, tried in turn, was refused as "its port is not a number"
    (audit 55h): the first here has nothing listening."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        nobody = taken.getsockname()[1]
    server = make_url(pg_url)
    url = pg_url.replace(f"@{server.host}:", f"@127.0.0.1:{nobody},{server.host}:", 1)
    result = CliRunner().invoke(main, ["--db", url, "db", "check"])
    assert result.exit_code == 0, result.output
    assert f"port={nobody},{server.port}" in store_url.database_url(url)


@pytest.mark.parametrize("proxies", ["garbage", "10.0.0.1,", "10.0.0.1,proxy.example"])
def test_serve_refuses_proxies_that_are_no_address(proxies):
    """Taken without a word, then no proxy's headers were believed (audit 25d)."""
    # a store that cannot open: were the option taken, the command would stop there, not serve
    no_store = "sqlite:////nonexistent-folder/x.db"
    result = CliRunner().invoke(main, ["--db", no_store, "serve", "--trusted-proxies", proxies])
    assert result.exit_code == 2 and "is not an IP address or network" in result.output


def test_demo_on_a_store_that_is_not_a_demo_store_prints_no_logins_that_fail(cli, trail):
    """A store of other records (the default `servicetrail.db` of the README's commands) has
    none of the demo's accounts: the demo says so, instead of printing logins and a story
    that do not hold there."""
    result = cli("demo", "--no-serve")
    assert result.exit_code == 2
    assert "is not a demo store" in result.stderr and "--db" in result.stderr
    assert "Demo logins" not in result.output


def test_db_check_on_a_store_built_by_any_command(cli, trail):
    result = cli("db", "check")
    assert result.exit_code == 0, result.output


def _appended_unlisted(engine) -> None:
    """Two sealed record logs, and two leaves appended to the first as a servicetrail of
    before migration 0031 appends them (its add_leaves listed no log in log_unsealed), left
    unsealed: that process stopped before its own seal."""
    from servicetrail.store.log_tables import log_unsealed
    from servicetrail.store.merkle_log import add_leaves

    sealed_logs(engine)
    with engine.begin() as conn:
        add_leaves(conn, "sat", leaves(1_000, 2, SEALED_MONTHS[0]))
        conn.execute(log_unsealed.delete())


def _signed_at(engine, month: str) -> int:
    from servicetrail.store.log_tree import latest_checkpoint
    from servicetrail.store.merkle_log import seal_store

    seal_store(engine)  # the next seal, a command's or a server's
    with engine.connect() as conn:
        return latest_checkpoint(conn, "sat", month).size


def test_db_check_lists_for_the_next_seal_the_logs_an_older_process_left_unlisted(cli, engine):
    """No seal of today looked at such a log until a batch of today appended to it: its
    leaves sat in no signed checkpoint, and retention refused its month. `db check` lists
    it, saying so, and the next seal signs its leaves."""
    _appended_unlisted(engine)
    result = cli("db", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout == "schema matches the migrations\n"
    assert result.stderr == (
        "note: 1 log(s) held leaves in no signed checkpoint that no seal looked for (sat "
        "2025-01: appended by a servicetrail older than the store's schema): listed for the "
        "next seal (a server's, within a minute, or a command's)\n"
    )
    assert _signed_at(engine, "2025-01") == 5
    again = cli("db", "check")
    assert again.exit_code == 0 and again.stderr == "", again.output


def test_retention_seals_the_logs_an_older_process_left_unlisted_before_it_drops(
    pg_url, tmp_path, monkeypatch
):
    """It refused their month, saying its records were "added since this run sealed them:
    run it again", which no run again changed."""
    from servicetrail.store.engine import open_store
    from servicetrail.store.log_tree import latest_checkpoint

    monkeypatch.chdir(tmp_path)  # the store's signing key is the test's
    engine = open_store(pg_url)
    try:
        _appended_unlisted(engine)
        result = Cli(pg_url, tmp_path)("retention", "--keep-months", "1")
        assert result.exit_code == 0, result.output
        assert (
            "(sat 2025-01: appended by a servicetrail older than the store's schema): "
            "listed for this run's seal"
        ) in result.stderr
        assert "dropped 2 month(s) of SAT records and payloads" in result.stderr
        with engine.connect() as conn:  # the checkpoint kept signs every leaf it held
            assert latest_checkpoint(conn, "sat", "2025-01").size == 5
    finally:
        engine.dispose()


def test_a_servers_start_lists_for_its_seal_the_logs_an_older_process_left_unlisted(
    db_url, engine, tmp_path, monkeypatch
):
    """As `db check` does (above), once, before the server listens: its seals sign them."""

    monkeypatch.chdir(tmp_path)  # the server's signing key is the test's
    _appended_unlisted(engine)
    with live_server_process(db_url, tmp_path) as (_, _, log_path):
        pass
    assert (
        "note: 1 log(s) held leaves in no signed checkpoint that no seal looked for (sat "
        "2025-01: appended by a servicetrail older than the store's schema): listed for this "
        "server's first seal, within a minute"
    ) in log_path.read_text()
    assert _signed_at(engine, "2025-01") == 5


def test_the_engines_a_command_opens_are_disposed_as_it_ends(pg_url, tmp_path, monkeypatch):
    """Run in-process, as the tests run them, a command left its engines' connections open to
    the garbage collector (most of the suite's psycopg ResourceWarnings)."""
    from servicetrail.cli import store_access

    opened = []

    def recording(opener):
        def recorded(*args, **kwargs):
            opened.append(opener(*args, **kwargs))
            return opened[-1]

        return recorded

    for name in ("open_store", "make_engine"):
        monkeypatch.setattr(store_access, name, recording(getattr(store_access, name)))
    monkeypatch.chdir(tmp_path)
    cli = Cli(pg_url, tmp_path)
    assert cli("db", "check").exit_code == 0
    assert cli("db", "upgrade").exit_code == 0
    assert len(opened) >= 2 and [e.pool.checkedin() for e in opened] == [0] * len(opened)


@starts_with_personas
def test_db_check_names_an_append_only_trigger_dropped_or_disabled(cli, engine):
    """Audit 44d: with the triggers that keep the trail, its logs and the access log
    append-only dropped or disabled, `db check` said the schema matched the migrations."""
    load_personas(engine)  # records, so that PostgreSQL's trail has monthly partitions
    assert cli("db", "check").exit_code == 0
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER sat_record_no_update"))
            said = ["trigger sat_record_no_update is missing"]
        else:
            partition = conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'sat_record'::regclass ORDER BY 1 LIMIT 1"
                )
            ).scalar_one()
            conn.execute(text("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only"))
            conn.execute(text("DROP TRIGGER log_leaf_no_truncate ON log_leaf"))
            conn.execute(text(f"ALTER TABLE {partition} DISABLE TRIGGER sat_record_append_only"))
            # a trigger that fires only in replication never fires here (review 44f)
            conn.execute(text("ALTER TABLE log_node ENABLE REPLICA TRIGGER log_node_append_only"))
            said = [
                "trigger access_log_append_only on access_log is disabled",
                "trigger log_leaf_no_truncate on log_leaf is missing",
                f"trigger sat_record_append_only on {partition} is disabled",
                "trigger log_node_append_only on log_node is set to fire in replication only",
            ]
            # disabled on the access log's monthly partitions too (0028), each named
            months = conn.execute(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'access_log'::regclass"
                )
            ).scalars()
            said += [f"trigger access_log_append_only on {month} is disabled" for month in months]
            # and on the logs' partitions, a log each (0029)
            logs = conn.execute(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'log_node'::regclass"
                )
            ).scalars()
            said += [
                f"trigger log_node_append_only on {log} is set to fire in replication only"
                for log in logs
            ]
    result = cli("db", "check")
    assert result.exit_code == 1
    assert all(words in result.stderr for words in said), result.stderr
    assert f"{len(said)} difference(s)" in result.stderr


def test_db_check_builds_a_store_that_does_not_exist_yet(empty_db_url):
    """SPEC section 5: any command on a missing or empty store builds it at the current schema
    (it printed 43 'add_table' differences and left an empty file)."""
    result = CliRunner().invoke(main, ["--db", empty_db_url, "db", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "schema matches the migrations\n"


def test_db_check_fails_on_a_store_without_the_schema(tmp_path):
    """A database of other tables is not a store: said as every other command says it (exit
    2), not as 45 differences from the migrations (exit 1; review 23d)."""
    import sqlite3

    path = tmp_path / "bare.db"
    sqlite3.connect(path).execute("CREATE TABLE unrelated (x INTEGER)").connection.close()
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "db", "check"])
    assert result.exit_code == 2
    assert "not a servicetrail store" in result.stderr and "'unrelated'" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_db_check_on_what_is_not_a_store_says_it_cannot_open_it(tmp_path):
    """Exit 2 (3 for a server that does not answer, a wait) and one line, as every other
    command; it was a traceback and exit 1, the code of "the schema differs"."""
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database\n")
    for url, code in ((f"sqlite:///{text_file}", 2), ("postgresql://nobody@127.0.0.1:1/x", 3)):
        result = CliRunner().invoke(main, ["--db", url, "db", "check"])
        assert result.exit_code == code, result.output
        assert result.stderr.startswith("Error: cannot open the store at ")
        assert "Traceback" not in result.output


def test_store_in_a_missing_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        main, ["--db", f"sqlite:///{tmp_path / 'nope' / 'x.db'}", "records", "--party", "NORTH"]
    )
    assert result.exit_code != 0
    assert "folder" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_generate_writes_the_same_world_for_the_same_seed_and_loads_into_the_store(cli, tmp_path):
    first = cli("generate", tmp_path / "a", "--records", "2000", "--duis")
    second = cli("generate", tmp_path / "b", "--records", "2000", "--duis")
    assert first.exit_code == second.exit_code == 0
    for name in ("users.csv", "devices.csv", "responsibilities.csv", "sat.jsonl", "duis.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert len((tmp_path / "a" / "sat.jsonl").read_text().splitlines()) == 2000
    loaded = cli("generate", "--records", "2000", "--into-store")
    assert loaded.exit_code == 0 and loaded.stdout.startswith("loaded 2000 records")
    again = cli("generate", "--records", "2000", "--into-store")
    assert "loaded 0 records" in again.stdout and "2000 duplicates skipped" in again.stdout
    assert cli("generate", "--records", "10").exit_code != 0  # neither a folder nor --into-store


@pytest.mark.parametrize(
    "args, said",
    [
        (("--devices", "99999999999"), "--devices"),  # grew without end in memory
        (("--parties", "99999999999"), "--parties"),
        (("--start", "0001-01-01T00:00:00Z", "--end", "0001-02-01T00:00:00Z"), "between"),
        (("--into-store", "--no-sat"), "--into-store"),  # ignored without a word
    ],
)
def test_generate_refuses_a_world_it_cannot_make_as_asked(cli, tmp_path, args, said):
    """Audit 23a: unbounded sizes, a date range the registry's earlier years fall out of (a
    traceback), options --into-store ignored."""
    refused = cli(
        "generate", "--records", "10", *args, *([] if "--into-store" in args else [tmp_path])
    )
    assert refused.exit_code == 2 and said in refused.output, refused.output
    assert "Traceback" not in refused.output


def test_generate_into_a_folder_again_leaves_no_trail_file_of_the_earlier_world(cli, tmp_path):
    """`ingest FOLDER` reads every trail file in it: a stale one would be loaded beside."""
    assert cli("generate", tmp_path, "--records", "200", "--duis").exit_code == 0
    assert cli("generate", tmp_path, "--records", "300", "--no-sat", "--duis").exit_code == 0
    assert not (tmp_path / "sat.jsonl").exists()
    assert len((tmp_path / "duis.jsonl").read_text().splitlines()) == 300
    assert cli("generate", tmp_path, "--records", "100").exit_code == 0
    assert not (tmp_path / "duis.jsonl").exists()
    assert len((tmp_path / "sat.jsonl").read_text().splitlines()) == 100


def test_retention_drops_old_months_on_postgresql_and_refuses_on_sqlite(cli, tmp_path):
    from click.testing import CliRunner

    from servicetrail.cli import main

    records = tmp_path / "old.jsonl"
    user = "90-B3-D5-1F-30-01-00-01"
    lines = [
        sat_line.line(
            n, when=datetime(2024, 1 + n, 15, 10, tzinfo=timezone.utc), payload=f"p{n}", user=user
        )
        for n in range(3)
    ]
    records.write_text("\n".join(lines) + "\n")
    users = tmp_path / "users.csv"
    users.write_text(f"user_id,party_id,party_name,role\n{user},OLDCO,Old Co,IS\n")
    assert cli("load", "users", users).exit_code == 0
    assert cli("ingest", records).exit_code == 0

    def visible() -> int:
        return len(cli("records", "--party", "OLDCO", "--format", "jsonl").stdout.splitlines())

    assert visible() == 3
    if cli.db_url.startswith("sqlite"):
        refused = CliRunner().invoke(main, ["--db", cli.db_url, "retention", "--keep-months", "1"])
        assert refused.exit_code != 0 and "PostgreSQL" in refused.stderr
        # refused before the store is opened: a mistyped path was made a new store (37f)
        typo = tmp_path / "typo.db"
        again = CliRunner().invoke(
            main, ["--db", f"sqlite:///{typo}", "retention", "--keep-months", "1"]
        )
        assert again.exit_code == 2 and "PostgreSQL" in again.stderr and not typo.exists()
        return
    dry = cli("retention", "--keep-months", "1", "--dry-run")
    assert dry.exit_code == 0 and "would drop sat_record_p2024_01" in dry.stdout
    assert "sat_payload_p2024_03" in dry.stdout
    months = {line.rsplit("_p", 1)[1] for line in dry.stdout.splitlines()}
    assert f"would drop {len(months)} month(s)" in dry.stderr  # months, not tables
    assert visible() == 3  # a dry run drops nothing
    done = cli("retention", "--keep-months", "1")
    assert done.exit_code == 0 and "dropped sat_record_p2024_02" in done.stdout
    assert visible() == 0
    # a retired month's log is closed at its kept checkpoint: its records could not be sealed
    again = cli("ingest", records)
    assert again.exit_code == 1 and again.stdout.startswith("loaded 0, rejected 3,")
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "old.rejects.jsonl").open()]
    assert len(reasons) == 3 and all("removed by retention" in r for r in reasons)
    # a month older than all retention removed: it made its partitions again, and `log verify`
    # then took every removed month for damage (audit 37f)
    older = tmp_path / "older.jsonl"
    older.write_text(lines[0].replace("2024-01-15", "2023-06-15") + "\n")
    refused = cli("ingest", older)
    assert refused.exit_code == 1 and refused.stdout.startswith("loaded 0, rejected 1,")
    [reason] = [json.loads(line)["reason"] for line in (tmp_path / "older.rejects.jsonl").open()]
    assert reason.startswith("its month 2023-06 is older than 2024-03, a month removed by")
    verified = cli("log", "verify")
    assert verified.exit_code == 0, verified.output


def test_records_filters_by_srv_and_kind_as_the_api_reads_them(cli, trail):
    """SPEC section 5: `records ... [--srv S] [--kind K]`, read by the same code as the API."""
    everything = {
        item_key(i): i for i in jsonl(cli("records", "--party", "NORTH", "--format", "jsonl"))
    }
    for options, wanted in (
        (["--kind", "request"], lambda i: i["kind"] == "request"),
        (["--srv", "4.8.1"], lambda i: i["srv"] == "4.8.1"),
        (["--srv", "active import profile"], lambda i: i["srv"] == "4.8.1"),  # words of its title
        (
            ["--kind", "response", "--srv", "4.8.1"],
            lambda i: i["kind"] == "response" and i["srv"] == "4.8.1",
        ),
    ):
        got = {
            item_key(i)
            for i in jsonl(cli("records", "--party", "NORTH", "--format", "jsonl", *options))
        }
        assert got == {k for k, i in everything.items() if wanted(i)}, options
        assert got, options  # the trail has some of each, or the test proves nothing
    for options, option in (
        (["--kind", "alert"], "--kind"),
        (["--from", "2025-02-01", "--to", "2025-01-01"], "--to"),
        (["--device", "00-DB"], "--device"),
        (["--request-id", "x:y:1"], "--request-id"),
    ):
        refused = cli("records", "--party", "NORTH", *options)
        assert refused.exit_code == 2 and option in refused.stderr, (options, refused.stderr)


def test_a_read_that_cannot_write_its_access_entry_says_the_store_is_busy(
    sqlite_url, tmp_path, monkeypatch
):
    """Another writer holds SQLite's one write lock past the busy timeout, so the read's
    access-log entry (SPEC section 8) cannot be written: the read prints nothing, and the
    command says why and exits 3, as for any store that gave up on a request; no traceback."""
    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)  # the store's 10 s, shortened
    monkeypatch.chdir(tmp_path)
    cli = Cli(sqlite_url, tmp_path)
    (tmp_path / "users.csv").write_text(
        f"user_id,party_id,party_name,role\n{NORTH_IS},NORTH,North Energy plc,IS\n"
    )
    assert cli("load", "users", tmp_path / "users.csv").exit_code == 0
    assert cli("records", "--party", "NORTH", "--format", "jsonl").exit_code == 0

    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        result = cli("records", "--party", "NORTH", "--format", "jsonl")
    finally:
        other.rollback()
        other.close()
    assert result.exit_code == 3, result.output
    assert "busy with another write" in result.output
    assert "Traceback" not in result.output


def _ingest_while_another_writer_takes_the_lock(database: Path, cwd: Path) -> tuple[Result, int]:
    """`servicetrail ingest day.jsonl` into `database`, while a second connection takes
    SQLite's write lock once the first batch is in and holds it until the command ends;
    returns the command's result and how many records the store then holds."""
    release = threading.Event()

    def take_the_lock_once_a_batch_is_in() -> None:
        # no busy handler: it sleeps, and the loader takes the lock again between its
        # batches long before it wakes; asking without a pause gets in between two of them
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            while not other.execute("SELECT count(*) FROM sat_record").fetchone()[0]:
                time.sleep(0.001)
            while not release.is_set():
                try:
                    other.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:  # locked: the loader's batch
                    continue
            release.wait(timeout=60)
            if other.in_transaction:
                other.rollback()
        finally:
            other.close()

    holder = threading.Thread(target=take_the_lock_once_a_batch_is_in)
    holder.start()
    try:
        result = Cli(f"sqlite:///{database}", cwd)("ingest", "day.jsonl")
    finally:
        release.set()
        holder.join()
    with sqlite3.connect(database) as look:
        return result, look.execute("SELECT count(*) FROM sat_record").fetchone()[0]


def test_an_ingest_stopped_by_a_busy_store_says_what_it_kept(
    sqlite_template, tmp_path, monkeypatch, use_settings
):
    """Batches commit as they go: when the store gives up part way (another writer holds
    SQLite's lock past the busy timeout), the command says how much it had kept before it
    exits 3, and the same command run again loads exactly the rest."""
    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)  # the store's 10 s, shortened
    use_settings(SERVICETRAIL_BATCH=20)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.csv").write_text(
        f"user_id,party_id,party_name,role\n{NORTH_IS},NORTH,North Energy plc,IS\n"
    )
    total = 3000
    lines = (sat_line.line(n, payload=f"request {n}", user=NORTH_IS) for n in range(total))
    (tmp_path / "day.jsonl").write_text("\n".join(lines) + "\n")

    # the other writer gets in between two batches nearly always, not always (it races the
    # loader for the lock): a run it missed loads everything, and is tried again afresh
    for attempt in range(6):
        database = tmp_path / f"store-{attempt}.db"
        shutil.copyfile(sqlite_template, database)
        cli = Cli(f"sqlite:///{database}", tmp_path)
        assert cli("load", "users", "users.csv").exit_code == 0
        stopped, kept = _ingest_while_another_writer_takes_the_lock(database, tmp_path)
        if kept < total:
            break
    assert stopped.exit_code == 3, stopped.output
    assert 0 < kept < total
    assert f"stopped part way; kept from before: loaded {kept}, rejected 0" in stopped.stderr
    assert "busy with another write" in stopped.stderr and "Traceback" not in stopped.output

    again = cli("ingest", "day.jsonl")
    assert again.exit_code == 0, again.output
    assert f"loaded {total - kept}, rejected 0, skipped {kept} duplicates" in again.stdout


def test_a_store_that_cannot_be_opened_is_named_without_its_password():
    runner = CliRunner()
    # nothing listens on port 1: a wait (exit 3); a URL that cannot be read is not (exit 2)
    urls = (
        ("postgresql://analyst:s3cret-pw@127.0.0.1:1/nowhere", 3),
        ("postgresql://analyst:s3cret-pw@127.0.0.1:notaport/db", 2),  # was a traceback
        # libpq's own keywords, and a password with an @ unescaped (audit 26c: shown whole,
        # and from its @ on)
        ("postgresql://analyst@127.0.0.1:1/db?password=s3cret-pw", 3),
        # libpq knows no PASSWORD (upper case): the URL is mended, not waited for
        ("postgresql://127.0.0.1:1/db?user=analyst&sslpassword=s3cret-pw&PASSWORD=s3cret-pw", 2),
        ("postgresql://analyst:s3cr@et-pw@127.0.0.1:1/db", 2),
        ("postgresql://analyst:s3cr@et-pw@127.0.0.1:notaport/db?password=s3cret-pw", 2),
    )
    for url, code in urls:
        for args in (["records", "--party", "NORTH"], ["db", "check"]):
            result = runner.invoke(main, ["--db", url, *args])
            assert result.exit_code == code, result.output
            assert "cannot open the store at" in result.stderr, result.output
            assert "s3cr" not in result.output and "et-pw" not in result.output, result.output
            assert "Traceback" not in result.output


def test_demo_and_serve_refuse_a_port_in_use_before_building_anything(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        store = tmp_path / "demo.db"
        for args in (["demo", "--port", port, "--records", "1000"], ["serve", "--port", port]):
            result = CliRunner().invoke(main, ["--db", f"sqlite:///{store}", *args])
            assert result.exit_code == 2, result.output
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
            assert not store.exists()  # nothing built for a server that could not start


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["records", "--party", "NORTH", "--party", "SOUTH"], "--party"),
        (["records", "--party", "NORTH", "--limit", "1", "--limit=2"], "--limit"),
        (["--db", "sqlite:///one.db", "--db", "sqlite:///two.db", "log", "key"], "--db"),
        (
            ["report", "own", "--party", "N", "--from", "2025-01-01", "--from", "2025-02-01"],
            "--from",
        ),
    ],
)
@ON_SQLITE_ALONE
def test_an_option_given_twice_is_refused_naming_it(cli, args, named):
    """click kept the last value: `--party NORTH --party SOUTH` read SOUTH's records as if
    that were all that was asked (the API refuses a parameter given twice with a 422)."""
    result = cli(*args)
    assert result.exit_code == 2
    assert f"option {named} is given more than once" in result.stderr
    assert result.stdout == ""


@starts_with_personas
def test_a_role_that_does_not_own_the_store_is_told_so_not_shown_a_traceback(pg_server, pg_url):
    """Audit 29a: run as a role with the tables' grants but not the store's owner, a read's
    access-log entry was refused by row-level security, and `records` died in a traceback."""
    visitor = "visitor_" + uuid.uuid4().hex[:8]
    pg_server.admin(f"CREATE ROLE {visitor} LOGIN PASSWORD 'v'")
    owner = store_engine.open_store(pg_url)
    load_personas(owner)
    with owner.begin() as conn:
        reader = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
        for grant in (
            f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {visitor}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {visitor}",
            f"GRANT {reader} TO {visitor}",
        ):
            conn.execute(text(grant))
    owner.dispose()
    url = pg_url.replace("postgres@", f"{visitor}:v@", 1)
    try:
        result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTHPOWER"])
    finally:
        # the reader role is the server's, shared by every store cloned from the worker's
        # template: a member left in it was a difference in every later `db check` there
        pg_server.admin(f"REVOKE {reader} FROM {visitor}")
    assert result.exit_code == 2, result.output
    assert "PostgreSQL refused" in result.output and "owns the store" in result.output
    assert "Traceback" not in result.output


def test_generate_into_a_store_holding_another_trail_is_refused(cli, trail, engine):
    """Audit 29e: `generate --into-store` added its generated traffic to a real trail, where
    it stays (append-only, sealed), and with another seed died in a traceback."""
    from servicetrail.store.queries import stored_record_count

    with engine.connect() as conn:
        before = stored_record_count(conn)
    assert before
    for seed in ("2025", "7"):
        result = cli("generate", "--records", "10", "--seed", seed, "--into-store")
        assert result.exit_code == 2, result.output
        assert "generated world" in result.output and "Traceback" not in result.output
    with engine.connect() as conn:
        assert stored_record_count(conn) == before


def test_generate_into_a_store_holding_another_registry_only_is_refused(cli, tmp_path):
    """Review 29f: a store holding another world's registry and no record died in a
    traceback (a User ID registered to another Party), and a real registry whose IDs did not
    clash would have had the generated one merged in."""
    assert cli("generate", tmp_path / "w7", "--records", "100", "--seed", "7").exit_code == 0
    for what in ("users", "devices", "responsibilities"):
        assert cli("load", what, tmp_path / "w7" / f"{what}.csv").exit_code == 0
    result = cli("generate", "--records", "200", "--into-store")
    assert result.exit_code == 2, result.output
    assert "registry holds" in result.output and "Traceback" not in result.output


def test_a_read_without_the_stores_key_makes_none_and_leaves_its_entry_queued(
    cli, trail, tmp_path, use_settings
):
    """Audit 29e: run from another folder than the server's (PostgreSQL's default key file
    is the working folder's), `records` made a key of its own, signed the access log with it,
    and `log verify` with the server's key called that checkpoint untrusted."""
    from sqlalchemy import func, select

    from servicetrail.store.engine import open_store
    from servicetrail.store.log_tables import log_pending

    elsewhere = tmp_path / "elsewhere" / "servicetrail.key"
    elsewhere.parent.mkdir()
    use_settings(SERVICETRAIL_SIGNING_KEY=elsewhere)
    result = cli("records", "--party", "NORTH", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert not elsewhere.exists() and list(elsewhere.parent.iterdir()) == []
    assert "no signing key at" in result.stderr
    store = open_store(cli.db_url)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_pending)).scalar_one() >= 1
    store.dispose()


def test_a_read_signs_with_no_key_the_store_has_never_used(cli, trail, tmp_path, use_settings):
    """Review 29f: a stray ./servicetrail.key (made by another command run from here) was
    used by a read, a rotation that `log verify` with the store's key called untrusted."""
    from sqlalchemy import func, select

    from servicetrail.signing import load_signer
    from servicetrail.store.engine import open_store
    from servicetrail.store.log_tables import log_pending

    stores_key = os.environ["SERVICETRAIL_SIGNING_KEY"]
    stray = tmp_path / "stray" / "servicetrail.key"
    stray.parent.mkdir()
    load_signer(stray, "servicetrail/sat")  # made, as another command would have
    use_settings(SERVICETRAIL_SIGNING_KEY=stray)
    result = cli("records", "--party", "NORTH", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "is not one this store signs with" in result.stderr
    store = open_store(cli.db_url)
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_pending)).scalar_one() >= 1
    store.dispose()
    # log verify says they wait: it checked them not, and said nothing of them (review 29f)
    use_settings(SERVICETRAIL_SIGNING_KEY=stores_key)
    verified = cli("log", "verify")
    assert verified.exit_code == 0, verified.output
    assert "queued and not yet in a signed checkpoint" in verified.stderr


_COMMANDS_THEN_MODULES = """
import json, sys
from click.testing import CliRunner
from servicetrail.cli import main
from fastapi.testclient import TestClient
from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
commands = json.loads(sys.argv[1])
for args in commands:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (args, result.output)
answer = TestClient(create_app(open_store(commands[0][1]))).get("/api/v1/records")
assert answer.status_code == 401, answer.text
print(json.dumps(sorted(sys.modules)))
"""


def test_commands_and_the_server_on_an_sqlite_store_never_load_the_postgresql_driver(trail, db_url):
    """psycopg's import was 0.1 s of the 0.5 s every command took to start: it is loaded by
    a PostgreSQL store alone, and so is SQLAlchemy's PostgreSQL dialect (session 51). The
    commands here meet its errors' checks (a read, its access-log entry, a re-load that
    rejects nothing new), and so does a refused request to the API."""
    commands = [
        ["--db", db_url, "records", "--party", "NORTH", "--format", "jsonl"],
        ["--db", db_url, "ingest", str(trail / "records.jsonl")],
        ["--db", db_url, "load", "responsibilities", str(trail / "resp.csv")],
        [
            "--db",
            db_url,
            "report",
            "own",
            "--party",
            "NORTH",
            "--from",
            "2025-01-01",
            "--to",
            "2026-01-01",
        ],
    ]
    run = subprocess.run(
        [sys.executable, "-c", _COMMANDS_THEN_MODULES, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=trail,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = set(json.loads(run.stdout))
    assert ("psycopg" in loaded) == db_url.startswith("postgresql"), sorted(
        m for m in loaded if "psycopg" in m
    )
    # nor SQLAlchemy's PostgreSQL dialect, 0.025 s of CPU a command (it imports the
    # modules of each of its drivers): checking the tables' PostgreSQL options loaded it
    dialect = "sqlalchemy.dialects.postgresql"
    assert (dialect in loaded) == db_url.startswith("postgresql"), db_url


@pytest.mark.parametrize(
    "command",
    [[f"--{name}"] for name in ("device", "request-id", "srv", "kind", "from", "to", "limit")],
    ids=lambda c: c[0],
)
@ON_SQLITE_ALONE
def test_a_blank_filter_is_refused_naming_it_as_the_api_does(cli, command):
    """`--srv ' '` was no filter while `--request-id ' '` was refused (review 47b)."""
    said = cli("records", "--party", "NORTH", command[0], "  ")
    assert said.exit_code == 2
    assert f"Invalid value for '{command[0]}': is blank (white space alone)" in said.output
    report = cli("report", "own", "--party", "NORTH", "--from", " ", "--to", "2025-01-01")
    assert report.exit_code == 2 and "'--from': is blank" in report.output


@pytest.mark.parametrize(
    "command",
    [
        ["records"],
        ["report", "own", "--from", "2025-01-01", "--to", "2025-02-01"],
        ["triggers", "1"],
        ["access-log"],
        ["watch", "list"],
    ],
    ids=lambda c: c[0],
)
@ON_SQLITE_ALONE
def test_a_blank_party_is_refused_as_blank_not_as_unknown(cli, command):
    """`--party ' '` was "unknown party ' '", where the API's party_id says it is blank
    (review 48e)."""
    said = cli(*command, "--party", " \t")
    assert said.exit_code == 2
    assert "Invalid value for '--party': is blank (white space alone)" in said.output


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_retention_stopped_after_its_commit_says_what_it_may_have_dropped(
    cli, engine, monkeypatch, tmp_path
):
    """A SIGTERM while PostgreSQL committed the drops (seen with a COMMIT held by a synchronous
    standby that never answered) said `terminated` and nothing of them, and the next run
    `dropped 0 month(s)` (audit 54g). The stop is played as landing just after each commit.
    A month whose partitions were dropped by hand has its log retired in that commit, and
    was not named (62d): it had no partition left to name."""
    from servicetrail.cli import database

    user = "90-B3-D5-1F-30-01-00-01"
    (tmp_path / "users.csv").write_text(f"user_id,party_id,party_name,role\n{user},OLDCO,Old,IS\n")
    (tmp_path / "old.jsonl").write_text(
        "".join(
            sat_line.line(
                n, when=datetime(2024, n, 15, 10, tzinfo=timezone.utc), payload="p", user=user
            )
            + "\n"
            for n in (1, 2)
        )
    )
    assert cli("load", "users", "users.csv").exit_code == 0
    loaded = cli("ingest", "old.jsonl")
    assert loaded.exit_code == 0, loaded.output
    intrude(
        engine,
        *(
            (f"DROP TABLE {t}_p2024_02", {})
            for t in ("sat_record", "sat_payload", "sat_visibility")
        ),
    )
    access_entries(engine, monkeypatch, ("2025-01", this_month()))
    for name, said in (
        ("drop_months", "the drop of 2 month(s) of SAT records (2024-01, 2024-02)"),
        ("drop_access_months", "the drop of 1 month(s) of the access log (2025-01)"),
    ):
        committed = getattr(database, name)

        def stopped_after(*args, committed=committed):
            committed(*args)
            raise KeyboardInterrupt

        with monkeypatch.context() as patched:
            patched.setattr(database, name, stopped_after)
            result = cli("retention", "--keep-months", "1", "--access-log-keep-months", "1")
        assert result.exit_code == 130, result.output
        assert f"stopped while committing {said}: they may be gone; `servicetrail retention " in (
            result.stderr
        )
        assert "--keep-months 1 --access-log-keep-months 1 --dry-run` lists" in result.stderr


def test_retention_drops_the_access_logs_old_months_only_when_asked(cli, engine, monkeypatch):
    """Audit 49d: nothing ever removed the access log. `--access-log-keep-months` drops its
    old months, never more than the records' (`--keep-months`); without it, retention does
    and says what it did before. SQLite refuses it as it refuses retention."""

    if cli.db_url.startswith("sqlite"):
        refused = cli("retention", "--keep-months", "1", "--access-log-keep-months", "1")
        assert refused.exit_code == 2 and "only the PostgreSQL store has" in refused.stderr
        return
    access_entries(engine, monkeypatch, ("2025-01", this_month()))
    unasked = cli("retention", "--keep-months", "1")
    assert unasked.exit_code == 0 and "access" not in unasked.output
    shorter = cli("retention", "--keep-months", "2", "--access-log-keep-months", "1")
    assert shorter.exit_code == 2 and "at least as long as the records" in shorter.stderr
    dry = cli("retention", "--keep-months", "1", "--access-log-keep-months", "1", "--dry-run")
    assert dry.stdout == "would drop access_log 2025-01 (3 entries)\n"
    assert "would drop 1 month(s) of the access log (3 entries)" in dry.stderr
    done = cli("retention", "--keep-months", "1", "--access-log-keep-months", "1")
    assert done.exit_code == 0 and done.stdout == "dropped access_log 2025-01 (3 entries)\n"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM access_log")).scalar_one() == 3
    verified = cli("log", "verify")
    assert verified.exit_code == 0, verified.output
