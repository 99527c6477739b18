"""`servicetrail ingest` of SAT JSON Lines (SPEC section 4): normalised records, validated line by
line."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from servicetrail.domain.ids import InvalidValue
from servicetrail.ingest.satjsonl import parse_values
from tests.conftest import ON_SQLITE_ALONE
from tests.personas import starts_with_personas
from tests.ingest.sat_records import (
    DCC,
    METER,
    NORTH_IS,
    UTC,
    count,
    rec,
    rejects_of,
    stored,
    utc,
    write_lines,
)
from tests import personas as P

LOOK_OU = "90-B3-D5-1F-30-02-00-41"


def test_good_file_loads_every_field_normalised(cli, engine, tmp_path):
    payload = 'GBCS <payload> with "quotes", commas,\nnew lines and ünïcödé  '
    records = [
        rec(
            logged_at="2025-02-01T11:00:00+01:00",
            counter=7,
            user=NORTH_IS.lower(),
            device=METER.lower(),
            payload=payload,
            request_id=f"{NORTH_IS.lower()}:{METER.lower()}:7",
        ),
        rec(logged_at="2025-02-01T10:00:01Z", kind="acknowledgement", counter=7, code="I99"),
        rec(
            logged_at="2025-02-01T10:00:30.250Z",
            kind="response",
            counter=7,
            code="E4",
            payload="resp",
        ),
        rec(logged_at="2025-02-02T10:00:00Z", counter=8, srv="8.2", device="", payload="inventory"),
        rec(
            logged_at="2025-02-03T10:00:00Z",
            kind="device_alert",
            srv="",
            user=NORTH_IS,
            request_id=f"{METER}:{NORTH_IS}:9",
            code="",
            payload="alert",
        ),
        rec(
            logged_at="2025-02-04",
            kind="dcc_alert",
            srv="",
            device="",
            request_id=f"{DCC}:{LOOK_OU}:10",
            user=LOOK_OU,
            code="N1",
        ),
    ]
    path = write_lines(tmp_path / "records.jsonl", [json.dumps(r) for r in records])
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "loaded 6, rejected 0, skipped 0 duplicates\n"
    assert not (tmp_path / "records.rejects.jsonl").exists()
    got = stored(engine)
    assert [
        (
            utc(g["logged_at"]),
            g["kind"],
            g["request_id"],
            g["srv"] or "",
            g["user_id"],
            g["device_id"] or "",
            g["response_code"] or "",
            g["payload"] or "",
        )
        for g in got
    ] == [
        (
            datetime(2025, 2, 1, 10, 0, 0, tzinfo=UTC),
            "request",
            f"{NORTH_IS}:{METER}:7",
            "4.1.1",
            NORTH_IS,
            METER,
            "",
            payload,
        ),  # UTC, upper case, payload byte for byte (trailing spaces too)
        (
            datetime(2025, 2, 1, 10, 0, 1, tzinfo=UTC),
            "acknowledgement",
            f"{NORTH_IS}:{METER}:7",
            "4.1.1",
            NORTH_IS,
            METER,
            "I99",
            "",
        ),
        (
            datetime(2025, 2, 1, 10, 0, 30, 250000, tzinfo=UTC),
            "response",
            f"{NORTH_IS}:{METER}:7",
            "4.1.1",
            NORTH_IS,
            METER,
            "E4",
            "resp",
        ),
        (
            datetime(2025, 2, 2, 10, tzinfo=UTC),
            "request",
            f"{NORTH_IS}:{DCC}:8",
            "8.2",
            NORTH_IS,
            "",
            "",
            "inventory",
        ),
        (
            datetime(2025, 2, 3, 10, tzinfo=UTC),
            "device_alert",
            f"{METER}:{NORTH_IS}:9",
            "",
            NORTH_IS,
            METER,
            "",
            "alert",
        ),
        (
            datetime(2025, 2, 4, tzinfo=UTC),
            "dcc_alert",
            f"{DCC}:{LOOK_OU}:10",
            "",
            LOOK_OU,
            "",
            "N1",
            "",
        ),
    ]
    ids = [g["id"] for g in got]
    assert all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == 6

    again = cli("ingest", path)
    assert again.exit_code == 0
    assert again.stdout == "loaded 0, rejected 0, skipped 6 duplicates\n"
    assert [g["id"] for g in stored(engine)] == ids  # ids are stable; nothing doubled
    assert count(engine, "sat_payload") == 4


def test_bad_lines_rejected_with_line_reason_and_raw(cli, engine, tmp_path):
    good = [json.dumps(rec(counter=n, payload=f"p{n}")) for n in range(1, 4)]
    bad = {
        "{not json": "JSON",
        "[1, 2, 3]": "object",
        json.dumps({"logged_at": "2025-02-01T10:00:00Z", "kind": "request"}): "request_id",
        json.dumps(rec(counter=20, kind="telepathy")): "kind",
        json.dumps(rec(counter=21, logged_at="31/02/2025")): "logged_at",
        json.dumps(rec(counter=22, logged_at="2025-02-01T10:00:00")): "offset",
        json.dumps(rec(request_id="nonsense")): "Request ID",
        json.dumps(rec(counter=24, user="90-B3-D5-1F-30-02-00")): "EUI-64",
        json.dumps(rec(counter=25, device="meter-1")): "EUI-64",
        json.dumps(rec(counter=26, srv="")): "srv",
        json.dumps(rec(counter=27, srv="4.1.x")): "srv",
        json.dumps(rec(counter=28, kind="device_alert", srv="", device="")): "device_id",
        json.dumps(rec(counter=29, payload=42)): "payload",
        json.dumps(rec(counter=30, kind="response", code="E 4")): "response_code",
    }
    lines = [good[0], *list(bad)[:5], "", good[1], *list(bad)[5:], "   ", good[2]]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    result = cli("ingest", path)
    assert result.exit_code != 0
    assert result.stdout == f"loaded 3, rejected {len(bad)}, skipped 0 duplicates\n"
    rejects = rejects_of(tmp_path / "mixed.rejects.jsonl")
    expected_lines = [n for n, line in enumerate(lines, start=1) if line in bad]
    assert [r["line"] for r in rejects] == expected_lines
    assert [r["raw"] for r in rejects] == list(bad)  # untouched, as they came
    for reject in rejects:
        assert bad[reject["raw"]] in reject["reason"], reject
        assert "\n" not in reject["reason"] and len(reject["reason"]) < 300
    assert sorted(g["payload"] for g in stored(engine)) == ["p1", "p2", "p3"]

    again = cli("ingest", path)
    assert again.exit_code != 0
    assert again.stdout == f"loaded 0, rejected {len(bad)}, skipped 3 duplicates\n"
    assert count(engine, "sat_record") == 3


@ON_SQLITE_ALONE
def test_invalid_utf8_line_rejected(cli, engine, tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(json.dumps(rec(counter=1)).encode() + b"\n" + b'{"kind": "caf\xe9"}\n')
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "bytes.rejects.jsonl")
    assert reject["line"] == 2 and reject["raw"].startswith('{"kind": "caf')


def test_duplicates_within_a_file_and_across_offsets(cli, engine, tmp_path):
    lines = [
        json.dumps(rec(counter=1, payload="first")),
        json.dumps(rec(counter=1, payload="first")),  # same line twice
        json.dumps(
            rec(counter=1, payload="first", logged_at="2025-02-01T11:00:00+01:00")
        ),  # same instant
        json.dumps(rec(counter=1, kind="response", code="I0", logged_at="2025-02-01T10:00:30Z")),
        json.dumps(
            rec(counter=1, kind="response", code="I0", logged_at="2025-02-01T10:05:30Z")
        ),  # later response
    ]
    path = write_lines(tmp_path / "dups.jsonl", lines)
    result = cli("ingest", path)
    assert result.exit_code == 0
    assert result.stdout == "loaded 3, rejected 0, skipped 2 duplicates\n"
    got = stored(engine)
    assert [(g["kind"], g["payload"]) for g in got] == [
        ("request", "first"),
        ("response", None),
        ("response", None),
    ]


@ON_SQLITE_ALONE
def test_rejects_option_and_clean_reload_exit_zero(cli, engine, tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [json.dumps(rec(counter=1)), "oops"])
    target = tmp_path / "elsewhere.jsonl"
    result = cli("ingest", path, "--rejects", target)
    assert result.exit_code == 1
    assert [(r["line"], r["raw"]) for r in rejects_of(target)] == [(2, "oops")]
    assert not (tmp_path / "r.rejects.jsonl").exists()

    write_lines(path, [json.dumps(rec(counter=1)), json.dumps(rec(counter=2))])
    fixed = cli("ingest", path, "--rejects", target)
    assert fixed.exit_code == 0
    assert fixed.stdout == "loaded 1, rejected 0, skipped 1 duplicates\n"
    assert not target.exists()


@ON_SQLITE_ALONE
def test_gzip_and_ndjson_inputs(cli, engine, tmp_path):
    gz = tmp_path / "day.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(json.dumps(rec(counter=1, payload="zipped")) + "\n{broken\n")
    nd = write_lines(tmp_path / "more.ndjson", [json.dumps(rec(counter=2))])
    result = cli("ingest", gz, nd)
    assert result.exit_code == 1
    assert result.stdout == "loaded 2, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "day.jsonl.rejects.jsonl")  # its last extension off
    assert reject["line"] == 2 and reject["raw"] == "{broken"
    assert sorted(g["payload"] or "" for g in stored(engine)) == ["", "zipped"]


@ON_SQLITE_ALONE
def test_empty_file_and_all_rejected(cli, engine, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli("ingest", empty)
    assert result.exit_code == 0
    assert result.stdout == "loaded 0, rejected 0, skipped 0 duplicates\n"

    hopeless = write_lines(tmp_path / "hopeless.jsonl", ["nope", "{}", "[]"])
    bad = cli("ingest", hopeless)
    assert bad.exit_code == 1
    assert bad.stdout == "loaded 0, rejected 3, skipped 0 duplicates\n"
    assert count(engine, "sat_record") == 0


@ON_SQLITE_ALONE
def test_unreadable_inputs_are_clear_errors(cli, engine, tmp_path):
    other = tmp_path / "records.txt"
    other.write_text("user_id,party_id\n")  # neither XML nor JSON Lines
    result = cli("ingest", other)
    assert result.exit_code != 0
    assert "records.txt" in result.stderr and "Traceback" not in result.output
    missing = cli("ingest", tmp_path / "missing.jsonl")
    assert missing.exit_code == 2
    assert count(engine, "sat_record") == 0


@ON_SQLITE_ALONE
def test_reject_files_are_named_after_their_input_whole(cli, engine, tmp_path):
    """Only the last extension goes: sat.2025-01.jsonl and sat.2025-02.jsonl have reject
    files of their own (cut at the first dot, they once shared sat.rejects.jsonl)."""
    jan = write_lines(tmp_path / "sat.2025-01.jsonl", [json.dumps(rec(counter=1)), "jan-bad"])
    feb = write_lines(
        tmp_path / "sat.2025-02.jsonl", [json.dumps(rec(counter=2)), "feb-bad", "feb-worse"]
    )
    mar = write_lines(tmp_path / "sat.2025-03.jsonl", [json.dumps(rec(counter=3))])
    result = cli("ingest", jan, feb, mar)
    assert result.exit_code == 1
    assert result.stdout == "loaded 3, rejected 3, skipped 0 duplicates\n"
    assert [
        (Path(r["file"]), r["line"], r["raw"])
        for r in rejects_of(tmp_path / "sat.2025-01.rejects.jsonl")
    ] == [(jan, 2, "jan-bad")]
    assert [
        (Path(r["file"]), r["line"], r["raw"])
        for r in rejects_of(tmp_path / "sat.2025-02.rejects.jsonl")
    ] == [(feb, 2, "feb-bad"), (feb, 3, "feb-worse")]
    assert (
        not (tmp_path / "sat.2025-03.rejects.jsonl").exists()
        and not (tmp_path / "sat.rejects.jsonl").exists()
    )

    target = tmp_path / "all-rejects.jsonl"
    again = cli("ingest", jan, feb, mar, "--rejects", target)
    assert again.stdout == "loaded 0, rejected 3, skipped 3 duplicates\n"
    assert [r["raw"] for r in rejects_of(target)] == ["jan-bad", "feb-bad", "feb-worse"]


@ON_SQLITE_ALONE
def test_a_run_replaces_its_own_rejects_and_keeps_another_inputs(cli, engine, tmp_path):
    shared = tmp_path / "shared.rejects.jsonl"
    jan = write_lines(tmp_path / "jan.jsonl", [json.dumps(rec(counter=1)), "jan-bad"])
    feb = write_lines(tmp_path / "feb.jsonl", ["feb-bad"])
    cli("ingest", jan, "--rejects", shared)
    cli("ingest", feb, "--rejects", shared)  # another input: jan's entry stays
    assert [(Path(r["file"]).name, r["raw"]) for r in rejects_of(shared)] == [
        ("jan.jsonl", "jan-bad"),
        ("feb.jsonl", "feb-bad"),
    ]
    write_lines(jan, [json.dumps(rec(counter=1)), "jan-worse"])
    cli("ingest", jan, "--rejects", shared)  # jan again: its old entry is replaced, feb's kept
    assert sorted(r["raw"] for r in rejects_of(shared)) == ["feb-bad", "jan-worse"]
    write_lines(jan, [json.dumps(rec(counter=1))])
    clean = cli("ingest", jan, "--rejects", shared)  # fixed: no stale entry of jan is left
    assert clean.exit_code == 0
    assert [r["raw"] for r in rejects_of(shared)] == ["feb-bad"]


@ON_SQLITE_ALONE
def test_a_reject_file_given_as_input_is_never_overwritten(cli, engine, tmp_path):
    path = write_lines(tmp_path / "traffic.jsonl", [json.dumps(rec(counter=1)), "bad"])
    cli("ingest", path)
    rejects = tmp_path / "traffic.rejects.jsonl"
    before = rejects.read_bytes()
    result = cli(
        "ingest", rejects
    )  # its lines are not SAT records: all rejected, to its own reject file
    assert result.exit_code == 1
    assert rejects.read_bytes() == before
    assert (tmp_path / "traffic.rejects.rejects.jsonl").exists()
    refused = cli("ingest", path, "--rejects", rejects.with_name("traffic.jsonl"))
    assert refused.exit_code != 0 and path.exists()


@ON_SQLITE_ALONE
def test_folder_ingest_skips_reject_files_and_other_files(cli, engine, tmp_path):
    folder = tmp_path / "drop"
    (folder / "sub").mkdir(parents=True)
    write_lines(folder / "a.jsonl", [json.dumps(rec(counter=1)), "bad"])
    write_lines(folder / "sub" / "b.jsonl", [json.dumps(rec(counter=2))])
    (folder / "README.txt").write_text("not records")
    write_lines(folder / "sub" / "c.log", [json.dumps(rec(counter=3))])  # JSON Lines by content
    first = cli("ingest", folder)
    assert first.stdout == "loaded 3, rejected 1, skipped 0 duplicates\n"
    # what holds neither form is not loaded, and the run says so (nothing dropped in silence)
    said = (
        "1 file(s) in the folder(s) skipped, hidden, holding neither DUIS XML nor JSON Lines, "
        "or not regular files"
    )
    assert f"{said}: {folder / 'README.txt'}" in first.stderr
    # a folder's rejects go beside it, each naming its file
    rejected = rejects_of(tmp_path / "drop.rejects.jsonl")
    assert [(Path(r["file"]), r["raw"]) for r in rejected] == [(folder / "a.jsonl", "bad")]
    second = cli("ingest", folder)  # the reject file now in the folder is not read as input
    assert second.stdout == "loaded 0, rejected 1, skipped 3 duplicates\n"
    assert count(engine, "sat_record") == 3


@ON_SQLITE_ALONE
def test_a_folders_files_are_loaded_or_said_skipped_whatever_their_names(cli, engine, tmp_path):
    """Any name holding `.rejects.`, and hidden files, were skipped without a word: records
    in `x.rejects.fixed.jsonl` (an operator's corrected rejects) never loaded (audit 28a).
    Only the loaders' own reject files (and their temporary copies) go unsaid."""
    folder = tmp_path / "drop"
    folder.mkdir()
    write_lines(folder / "x.rejects.fixed.jsonl", [json.dumps(rec(counter=1))])
    write_lines(folder / ".upload.jsonl", [json.dumps(rec(counter=2))])  # a transfer under way
    write_lines(folder / "old.rejects.jsonl", ['{"file": "old.jsonl", "line": 1}'])
    write_lines(folder / ".old.rejects.jsonl.partial", ['{"file": "old.jsonl", "line": 1}'])
    result = cli("ingest", folder)
    assert result.stdout == "loaded 1, rejected 0, skipped 0 duplicates\n", result.output
    assert "1 file(s) in the folder(s) skipped" in result.stderr
    assert str(folder / ".upload.jsonl") in result.stderr
    assert "old.rejects" not in result.stderr


@ON_SQLITE_ALONE
def test_a_file_named_otherwise_is_read_by_its_first_bytes(cli, engine, tmp_path):
    sat = write_lines(tmp_path / "traffic.txt", [json.dumps(rec(counter=1))])
    assert cli("ingest", sat).stdout == "loaded 1, rejected 0, skipped 0 duplicates\n"
    notes = tmp_path / "notes.txt"
    notes.write_text("# not records\n")
    refused = cli("ingest", notes)
    assert refused.exit_code == 2 and "neither DUIS XML nor JSON Lines" in refused.stderr


@ON_SQLITE_ALONE
def test_rejects_option_naming_the_input_is_refused_and_the_input_kept(cli, engine, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [json.dumps(rec(counter=1)), "bad"])
    before = path.read_bytes()
    result = cli("ingest", path, "--rejects", path)
    assert result.exit_code != 0
    assert "--rejects" in result.stderr
    assert path.read_bytes() == before
    assert count(engine, "sat_record") == 0


def test_a_nul_in_a_payload_is_rejected_on_every_engine(cli, tmp_path):
    """PostgreSQL text cannot hold NUL: it must be a clean reject, not a failed load."""
    good = {
        "logged_at": "2025-01-01T00:00:00Z",
        "kind": "request",
        "srv": "4.1.1",
        "request_id": "90-B3-D5-1F-30-01-00-01:00-DB-00-00-00-00-00-01:1",
        "user_id": "90-B3-D5-1F-30-01-00-01",
        "device_id": "00-DB-00-00-00-00-00-01",
        "response_code": "",
        "payload": "fine",
    }
    bad = dict(good, request_id=good["request_id"][:-1] + "2", payload="a\x00b")
    path = tmp_path / "nul.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert "loaded 1, rejected 1, skipped 0 duplicates" in result.stdout
    reject = json.loads((tmp_path / "nul.rejects.jsonl").read_text())
    assert reject["line"] == 2 and "NUL" in reject["reason"]


def test_a_conflicting_resend_is_rejected_naming_the_stored_record(cli, engine, tmp_path):
    """SPEC section 4: the same identity with other content is a conflict, never a silent skip."""
    first = write_lines(
        tmp_path / "first.jsonl", [json.dumps(rec(counter=7, payload="<original/>"))]
    )
    assert cli("ingest", first).exit_code == 0
    [original] = stored(engine)
    resend = write_lines(
        tmp_path / "resend.jsonl",
        [
            json.dumps(rec(counter=7, payload="<original/>")),  # 1 the same message: a duplicate
            json.dumps(rec(counter=7, payload="<tampered/>")),  # 2 same identity, other payload
            json.dumps(
                rec(counter=7, payload="<original/>", srv="4.1.2")
            ),  # 3 same identity, other SRV
            json.dumps(rec(counter=8, payload="a")),  # 4 new
            json.dumps(rec(counter=8, payload="b")),  # 5 conflicts with line 4, same batch
        ],
    )
    result = cli("ingest", resend)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 3, skipped 1 duplicates\n"
    rejects = rejects_of(tmp_path / "resend.rejects.jsonl")
    assert [r["line"] for r in rejects] == [2, 3, 5]
    assert all(f"stored record {original['id']}" in r["reason"] for r in rejects[:2])
    assert [r["raw"] for r in rejects] == resend.read_text().splitlines()[
        1:3
    ] + resend.read_text().splitlines()[4:]
    after = stored(engine)
    assert after[0] == original  # nothing stored changed
    assert [(a["request_id"].rsplit(":", 1)[1], a["payload"]) for a in after] == [
        ("7", "<original/>"),
        ("8", "a"),
    ]
    assert f"stored record {after[1]['id']}" in rejects[2]["reason"]


@ON_SQLITE_ALONE
def test_a_misspelt_field_is_rejected_and_the_line_put_right_loads(cli, engine, tmp_path):
    """A misspelt field was taken for a missing one: the request was stored without its body,
    and the line put right was a conflict with it for ever after (audit 35c)."""
    misspelt = {k if k != "payload" else "paylaod": v for k, v in rec(payload="<b/>").items()}
    first = write_lines(tmp_path / "first.jsonl", [json.dumps(misspelt)])
    result = cli("ingest", first)
    assert (result.exit_code, result.stdout) == (1, "loaded 0, rejected 1, skipped 0 duplicates\n")
    [rejected] = rejects_of(tmp_path / "first.rejects.jsonl")
    assert rejected["line"] == 1 and rejected["raw"] == json.dumps(misspelt)
    assert rejected["reason"].startswith("unknown field(s) 'paylaod': a record's are ")
    put_right = write_lines(tmp_path / "put_right.jsonl", [json.dumps(rec(payload="<b/>"))])
    assert cli("ingest", put_right).stdout == "loaded 1, rejected 0, skipped 0 duplicates\n"
    assert [r["payload"] for r in stored(engine)] == ["<b/>"]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (
            '{"logged_at": "2025-01-01T00:00:00Z", "logged_at": "2025-01-02T00:00:00Z", {rest}}',
            "logged_at",
        ),
        ('{{rest}, "payload":"<a/>","payload":"<b/>"}', "payload"),
        # a payload holding `":` brings the exact check, which finds nothing wrong
        ('{{rest}, "payload":"{\\"a\\":1}"}', None),
    ],
)
@ON_SQLITE_ALONE
def test_a_field_given_twice_is_rejected_not_taken_at_its_last(cli, engine, tmp_path, line, field):
    """orjson keeps a repeated key's last value: the first was dropped without a word, and
    a line that says two things was stored as one of them (audits 42b, 43a)."""
    fields = {k: v for k, v in rec().items() if k not in ("logged_at", "payload")}
    rest = json.dumps(fields)[1:-1]
    if field != "logged_at":
        rest = '"logged_at": "2025-01-01T00:00:00Z", ' + rest
    text = line.replace("{rest}", rest)
    result = cli("ingest", write_lines(tmp_path / "twice.jsonl", [text]))
    if field is None:
        assert result.stdout == "loaded 1, rejected 0, skipped 0 duplicates\n"
        assert [r["payload"] for r in stored(engine)] == ['{"a":1}']
        return
    assert result.stdout == "loaded 0, rejected 1, skipped 0 duplicates\n" and not stored(engine)
    [rejected] = rejects_of(tmp_path / "twice.rejects.jsonl")
    assert rejected["raw"] == text
    assert (
        rejected["reason"] == f'the field "{field}" is given twice: which value is meant is unclear'
    )


@ON_SQLITE_ALONE
def test_a_line_nested_deeper_than_the_exact_check_reads_is_a_reject_and_the_rest_loads(
    cli, engine, tmp_path
):
    """orjson reads 1,023 levels, the json module's exact check of repeated fields fewer: a
    line of 1,000 that brought the check stopped the whole ingest with a traceback (43d)."""
    deep = '{"a":"x\\":", "b":' + "[" * 1000 + "]" * 1000 + "}"
    path = write_lines(tmp_path / "deep.jsonl", [deep, json.dumps(rec())])
    result = cli("ingest", path)
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n", result.output
    [rejected] = rejects_of(tmp_path / "deep.rejects.jsonl")
    assert rejected["line"] == 1 and rejected["reason"] == "nested too deeply to be a record"


@starts_with_personas
def test_a_partys_own_export_reads_back_as_duplicates(cli, engine, tmp_path):
    """The other fields of an API item or a report row are ignored, not refused as unknown:
    refused, re-ingesting an export no longer said it matched the store (review 35f)."""
    P.load_personas(engine)
    shown = cli("records", "--party", P.SOUTHENERGY, "--format", "jsonl")
    own = [line for line in shown.stdout.splitlines() if json.loads(line)["access"] == "own"]
    assert own and all("srv_title" in json.loads(line) for line in own)
    span = ("--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z")
    report = cli("report", "own", "--party", P.SOUTHENERGY, *span, "--format", "jsonl")
    rows = report.stdout.splitlines()
    assert rows and all("execution_at" in json.loads(line) for line in rows)
    for name, lines in (("items", own), ("report", rows)):
        path = write_lines(tmp_path / f"{name}.jsonl", lines)
        result = cli("ingest", path)
        assert result.stdout == f"loaded 0, rejected 0, skipped {len(lines)} duplicates\n"


@starts_with_personas
def test_a_title_only_item_is_refused_as_not_a_record(cli, engine, tmp_path):
    """An export of all a Party may see holds other Users' titles without their payload: read
    back, each was "a conflict with stored record N, different content", which told the
    analyst nothing (review of the README, session 37). Such an item is refused saying what it
    is; the Party's own items are duplicates as before."""
    P.load_personas(engine)
    shown = cli("records", "--party", P.SOUTHENERGY, "--format", "jsonl").stdout.splitlines()
    titles = [line for line in shown if json.loads(line)["access"] == "mp141"]
    own = [line for line in shown if json.loads(line)["access"] == "own"]
    assert titles and own
    path = write_lines(tmp_path / "everything.jsonl", shown)
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == (f"loaded 0, rejected {len(titles)}, skipped {len(own)} duplicates\n")
    rejected = rejects_of(tmp_path / "everything.rejects.jsonl")
    assert [r["raw"] for r in rejected] == titles
    assert all(r["reason"].startswith("a title-only item (access mp141)") for r in rejected)


@ON_SQLITE_ALONE
def test_records_on_lines_ending_in_cr_alone_are_said_so(cli, engine, tmp_path):
    """One line of three records was "not JSON", and nothing said why (audit 35c)."""
    path = tmp_path / "cr.jsonl"
    lines = [json.dumps(rec(counter=n)) for n in (1, 2, 3)]
    path.write_bytes("\r".join(lines).encode() + b"\r")
    result = cli("ingest", path)
    assert result.exit_code == 1
    [rejected] = rejects_of(tmp_path / "cr.rejects.jsonl")
    assert rejected["reason"].endswith(
        "(a carriage return inside the line: lines end in LF or CRLF)"
    )
    assert rejected["raw"] == "\r".join(lines)
    broken = write_lines(tmp_path / "broken.jsonl", ['{"kind":\r "request",'])
    cli("ingest", broken)  # a CR is JSON's white space: no sign of it in a line broken otherwise
    [said] = rejects_of(tmp_path / "broken.rejects.jsonl")
    assert said["reason"].startswith("not JSON") and "carriage return" not in said["reason"]


@ON_SQLITE_ALONE
def test_utf16_json_lines_are_refused_whole_saying_so(cli, engine, tmp_path):
    """Split on its line ends, each line was a reject of its own, none saying why (35c)."""
    path = tmp_path / "u16.jsonl"
    path.write_bytes("\n".join(json.dumps(rec(counter=n)) for n in (1, 2)).encode("utf-16"))
    result = cli("ingest", path)
    assert result.exit_code == 2
    assert "is UTF-16 text; JSON Lines are read as UTF-8 (save it as UTF-8)" in result.output
    assert not (tmp_path / "u16.rejects.jsonl").exists() and stored(engine) == []
    folder = tmp_path / "inbox"  # in a folder too: skipped as neither form, it went unsaid (35f)
    folder.mkdir()
    (folder / "u16.jsonl").write_bytes(path.read_bytes())
    (folder / "ok.jsonl").write_text(json.dumps(rec(counter=9)) + "\n")
    result = cli("ingest", folder)
    assert result.exit_code == 2 and "u16.jsonl: is UTF-16 text" in result.output


def test_command_variant_is_an_optional_request_field(cli, engine, tmp_path):
    path = write_lines(
        tmp_path / "cv.jsonl",
        [
            json.dumps({**rec(counter=1), "command_variant": 4}),
            json.dumps({**rec(counter=2), "command_variant": 9}),
            json.dumps({**rec(counter=3), "command_variant": "4"}),
            json.dumps({**rec(counter=4, kind="response", code="I0"), "command_variant": 1}),
            json.dumps({**rec(counter=5), "command_variant": None}),
            json.dumps({**rec(counter=6), "command_variant": 2**70}),
        ],
    )
    result = cli("ingest", path)
    assert result.stdout == "loaded 2, rejected 4, skipped 0 duplicates\n"
    rejected = rejects_of(tmp_path / "cv.rejects.jsonl")
    assert [r["line"] for r in rejected] == [2, 3, 4, 6]
    # an integer past 64 bits, which orjson reads as a float, was said to be a float (43a)
    assert rejected[3]["reason"] == "command_variant must be 1-8, not a number of 22 digits"
    with engine.connect() as conn:
        assert sorted(
            conn.execute(text("SELECT command_variant FROM sat_record")).scalars(), key=str
        ) == [4, None]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("workers", ["0", "2"])
@ON_SQLITE_ALONE
def test_a_line_longer_than_any_records_is_rejected_unread_and_copied_whole(
    cli, engine, tmp_path, monkeypatch, use_settings, compressed, workers
):
    """A line over the loader's line limit is not held (a 190 MB line of garbage took 1 GB;
    audit of hostile inputs, session 17): it is passed over, and its reject entry is copied
    from the input, still byte for byte. The limit is ~97 MiB; set low here, the reading,
    numbering and copying are the real ones, with and without parsing workers."""
    from servicetrail.ingest import sources

    monkeypatch.setattr(sources, "max_line_bytes", lambda: 1000)
    use_settings(SERVICETRAIL_PARSE_WORKERS=workers, SERVICETRAIL_WORKER_MIN_BYTES=0)
    long_text = "é" * 450 + "\\u0001 \"quoted\" " + "x" * 300  # valid UTF-8, JSON to escape
    long_bytes = b"\xff\xfe" + b"\x80abc" * 300  # not UTF-8
    lines = [
        json.dumps(rec(counter=1)).encode(),
        long_text.encode() + b"\r",  # CRLF: the \r is the line end's, not the record's
        json.dumps(rec(counter=2)).encode(),
        long_bytes,
        json.dumps(rec(counter=3)).encode(),
        b"{" + b"y" * 1500,  # the last line, with no line end
    ]
    body = b"\n".join(lines)
    path = tmp_path / ("long.jsonl.gz" if compressed else "long.jsonl")
    path.write_bytes(gzip.compress(body) if compressed else body)
    result = cli("ingest", path)
    assert result.stdout == "loaded 3, rejected 3, skipped 0 duplicates\n", result.output
    rejects = rejects_of(
        tmp_path / ("long.jsonl.rejects.jsonl" if compressed else "long.rejects.jsonl")
    )
    assert [r["line"] for r in rejects] == [2, 4, 6]
    assert all("over 1000 bytes" in r["reason"] for r in rejects)
    assert rejects[0]["raw"] == long_text and "raw_base64" not in rejects[0]
    assert base64.b64decode(rejects[1]["raw_base64"]) == long_bytes
    assert rejects[1]["raw"] == long_bytes.decode("utf-8", "replace")
    assert rejects[2]["raw"] == "{" + "y" * 1500
    assert count(engine, "sat_record") == 3


@pytest.mark.parametrize("field", ["user_id", "device_id", "srv", "kind", "logged_at"])
@ON_SQLITE_ALONE
def test_a_reason_quotes_a_long_value_cut_short(cli, engine, tmp_path, field):
    """A reason is one line: a 1 MB field made a 1 MB reason (audit, session 17)."""
    # a time: spaces around it are taken off before it is judged, so its text is short
    long_value = (
        " " * (1 << 20) + "2025-13-01T00:00:00Z" if field == "logged_at" else "A" * (1 << 20)
    )
    path = write_lines(tmp_path / "long.jsonl", [json.dumps({**rec(counter=1), field: long_value})])
    assert cli("ingest", path).exit_code == 1
    [reject] = rejects_of(tmp_path / "long.rejects.jsonl")
    # (a time's reason ends with a fixed example of what to type: 120 characters)
    assert len(reject["reason"]) < 320, reject["reason"][:400]
    assert reject["raw"] == json.dumps({**rec(counter=1), field: long_value})


@pytest.mark.parametrize("capture", [False, True], ids=["sat", "duis-capture"])
@ON_SQLITE_ALONE
def test_a_line_that_is_not_utf8_is_said_to_be_so(cli, engine, tmp_path, capture):
    """Its reason was orjson's "str is not valid UTF-8: surrogates not allowed" (audit 28a)."""
    good = json.dumps(rec(counter=1)).encode()
    bad = b'{"logged_at": "2025-01-01T00:00:00Z", "duis": "\xff"}' if capture else b'{"a": "\xff"}'
    path = tmp_path / "in.jsonl"
    path.write_bytes((bad + b"\n") if capture else (good + b"\n" + bad + b"\n"))
    result = cli("ingest", path)
    assert result.exit_code == 1, result.output
    [entry] = rejects_of(tmp_path / "in.rejects.jsonl")
    assert entry["reason"].startswith("not UTF-8 text (byte "), entry
    assert "surrogates" not in entry["reason"]


# --- found missing by mutation testing (audit 29b) ----------------------------------------


def test_the_first_byte_that_is_not_utf8_is_counted_from_one():
    """sj1: the reason names where in the line to look; counted from 1 as an editor's
    column is (and as the registry's `field` numbers are). The 0xff is the 8th byte."""
    with pytest.raises(InvalidValue) as refused:
        parse_values(b'{"id": \xff}')
    assert str(refused.value) == "not UTF-8 text (byte 8 of the line)"


# --- found missing by mutation testing (audit 30b) ----------------------------------------


@ON_SQLITE_ALONE
def test_a_file_named_otherwise_is_read_by_its_first_bytes_after_a_byte_order_mark(
    cli, engine, tmp_path
):
    """so4: an editor's UTF-8 byte order mark before the first record: the form is told by
    what follows it (the file was "neither DUIS XML nor JSON Lines")."""
    sat = tmp_path / "traffic.txt"
    sat.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec(counter=1)).encode() + b"\n")
    assert cli("ingest", sat).stdout == "loaded 1, rejected 0, skipped 0 duplicates\n"
