"""The edges of SPEC section 4's inputs that a first reading misses: times at the ends of the
calendar, a byte order mark, a damaged gzip, a request carrying a response code, a registry
file whose later line corrects an earlier one, loose CSV, and the files a command cannot
write. Each good record still loads; each bad one is a reject with its line and reason, or
the command stops with a message before doing anything, never with a traceback."""

from __future__ import annotations

import gzip
import json
import tempfile
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import ON_SQLITE_ALONE
from tests.conftest import SHARED_DUIS_SAMPLES, beside_the_checkout
from tests.ingest.registry_files import (
    DEVICES_HEADER,
    METER,
    NORTH_IS,
    RESP_HEADER,
    SOUTH_IS,
    USERS_HEADER,
    rows,
    write,
)
from tests.ingest.sat_records import count, rec, rejects_of, stored, utc, write_lines

OTHER_METER = "00-DB-00-00-00-00-00-02"


def test_times_at_both_ends_of_the_calendar_load_on_every_engine(cli, engine, tmp_path):
    """December 9999's partition ends in the year 10000, past Python's dates (PostgreSQL)."""
    times = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2025-02-01T10:00:00Z"]
    lines = [json.dumps(rec(counter=n, logged_at=t)) for n, t in enumerate(times, start=1)]
    path = write_lines(tmp_path / "ends.jsonl", lines)
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "loaded 3, rejected 0, skipped 0 duplicates\n"
    assert sorted(utc(g["logged_at"]) for g in stored(engine)) == sorted(map(utc, times))
    assert cli("ingest", path).stdout == "loaded 0, rejected 0, skipped 3 duplicates\n"


@ON_SQLITE_ALONE
def test_a_byte_order_mark_before_the_first_record_is_no_part_of_it(cli, engine, tmp_path):
    path = tmp_path / "bom.jsonl"
    lines = [json.dumps(rec(counter=n)) for n in (1, 2)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "loaded 2, rejected 0, skipped 0 duplicates\n"


@pytest.mark.parametrize("workers", ["0", "2"])
@ON_SQLITE_ALONE
def test_a_rejected_first_line_keeps_its_byte_order_mark(
    cli, engine, tmp_path, use_settings, workers
):
    """A rejected record is written as it came: a first line's BOM was dropped from its raw
    input (audit 23c)."""
    use_settings(SERVICETRAIL_PARSE_WORKERS=workers, SERVICETRAIL_WORKER_MIN_BYTES="1")
    path = tmp_path / "bom.jsonl"
    bad = json.dumps(rec(counter=1, code="I0"))  # a request with a response code
    path.write_bytes(b"\xef\xbb\xbf" + bad.encode() + b"\n" + json.dumps(rec(counter=2)).encode())
    result = cli("ingest", path)
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n", result.output
    [reject] = rejects_of(tmp_path / "bom.rejects.jsonl")
    assert (reject["line"], reject["raw"]) == (1, "\ufeff" + bad)


@pytest.mark.parametrize("workers", ["0", "2"])
@ON_SQLITE_ALONE
def test_a_line_of_form_feeds_or_vertical_tabs_is_a_reject_not_a_blank_line(
    cli, engine, tmp_path, use_settings, workers
):
    """A blank line (spaces, tabs, line ends: JSON's white space) is read past; a line of a
    form feed or vertical tab is no blank line to JSON and was dropped in silence, counted
    nowhere (audit 42b)."""
    use_settings(SERVICETRAIL_PARSE_WORKERS=workers, SERVICETRAIL_WORKER_MIN_BYTES="1")
    good = [json.dumps(rec(counter=n)).encode() for n in (1, 2)]
    lines = [good[0], b"", b" \t", b"\x0c", b"\x0b", b"\r", b" \x0c ", good[1]]
    path = tmp_path / "odd-space.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = cli("ingest", path)
    assert result.stdout == "loaded 2, rejected 3, skipped 0 duplicates\n", result.output
    rejects = rejects_of(tmp_path / "odd-space.rejects.jsonl")
    assert [(r["line"], r["raw"]) for r in rejects] == [(4, "\x0c"), (5, "\x0b"), (7, " \x0c ")]
    assert all(r["reason"].startswith("not JSON") for r in rejects)


@ON_SQLITE_ALONE
def test_a_csv_line_of_a_form_feed_is_a_reject_not_a_blank_line(cli, engine, tmp_path):
    users = write(
        tmp_path / "users.csv",
        USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n\n \t\n\x0c\n\x0b\n{SOUTH_IS},SOUTH,South,IS\n",
    )
    result = cli("load", "users", users)
    assert result.stdout == "loaded 2, rejected 2, skipped 0 duplicates\n", result.output
    rejects = rejects_of(tmp_path / "users.rejects.jsonl")
    assert [(r["line"], r["raw"]) for r in rejects] == [(5, "\x0c"), (6, "\x0b")]


@ON_SQLITE_ALONE
def test_a_request_with_a_response_code_is_rejected(cli, engine, tmp_path):
    path = write_lines(
        tmp_path / "rc.jsonl",
        [json.dumps(rec(counter=1, code="I0")), json.dumps(rec(counter=2))],
    )
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "rc.rejects.jsonl")
    assert reject["line"] == 1 and "response_code must be empty for a request" in reject["reason"]


@pytest.mark.parametrize("workers", [0, 1, 2])
@ON_SQLITE_ALONE
def test_a_gzip_cut_short_loads_what_it_holds_and_rejects_the_rest(
    cli, engine, tmp_path, monkeypatch, workers
):
    """In this process or in parse workers, each of which meets the damage: the chunk it
    falls in reports it once, in file order."""
    monkeypatch.setenv("SERVICETRAIL_WORKER_MIN_BYTES", "0")
    monkeypatch.setenv("SERVICETRAIL_PARSE_WORKERS", str(workers))
    monkeypatch.setattr("servicetrail.ingest.trail_load.CHUNK_LINES", 40)
    whole = "".join(json.dumps(rec(counter=n, payload="p" * 300)) + "\n" for n in range(1, 400))
    packed = gzip.compress(whole.encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    result = cli("ingest", path)
    assert result.exit_code == 1
    loaded = count(engine, "sat_record")
    assert 0 < loaded < 399
    assert result.stdout == f"loaded {loaded}, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "cut.jsonl.rejects.jsonl")
    assert reject["line"] > loaded and reject["raw"] == ""
    assert "compressed input cannot be read" in reject["reason"]


@ON_SQLITE_ALONE
def test_a_file_that_is_not_gzip_at_all_is_a_reject_not_a_traceback(cli, engine, tmp_path):
    bad = write_lines(tmp_path / "broken.jsonl.gz", ["garbage"])
    upper = tmp_path / "UPPER.JSONL.GZ"  # the suffix is read case-blind, as detection reads it
    upper.write_bytes(gzip.compress((json.dumps(rec(counter=7)) + "\n").encode()))
    result = cli("ingest", bad, upper)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "broken.jsonl.rejects.jsonl")
    assert reject["line"] == 1 and "compressed input cannot be read" in reject["reason"]


@ON_SQLITE_ALONE
def test_a_damaged_gzipped_duis_document_is_said_to_be_lost_whole(cli, engine, tmp_path):
    """A compressed file of one document is read whole or not at all: its reject said "the
    lines before it were read", as a damaged JSON Lines file's does (review 44b)."""
    sample = beside_the_checkout(SHARED_DUIS_SAMPLES / "ECS50_9.1_SUCCESS_REQUEST_DUIS.XML")
    whole = gzip.compress(sample.read_bytes())
    (tmp_path / "cut.xml.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "good.xml.gz").write_bytes(whole)
    rejects = tmp_path / "rejects.jsonl"
    result = cli("ingest", tmp_path / "cut.xml.gz", tmp_path / "good.xml.gz", "--rejects", rejects)
    assert result.exit_code == 1
    assert result.stdout.startswith("loaded 1, rejected 1")
    [reject] = rejects_of(rejects)
    assert reject["reason"].startswith("the compressed document cannot be read")
    assert "nothing of it was stored" in reject["reason"] and "lines before" not in reject["reason"]


@ON_SQLITE_ALONE
def test_files_a_command_cannot_write_stop_it_before_anything_is_done(cli, engine, tmp_path):
    path = write_lines(tmp_path / "ok.jsonl", [json.dumps(rec(counter=1))])
    ingest = cli("ingest", path, "--rejects", tmp_path / "missing" / "r.jsonl")
    assert ingest.exit_code == 2 and "does not exist" in ingest.output
    assert count(engine, "sat_record") == 0
    users = write(tmp_path / "users.csv", USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n")
    load = cli("load", "users", users, "--rejects", tmp_path / "missing" / "r.jsonl")
    assert load.exit_code == 2 and "does not exist" in load.output
    assert cli("load", "users", users).exit_code == 0
    report = cli(
        "report", "own", "--party", "NORTH", "--from", "2025-01-01T00:00:00Z",
        "--to", "2025-03-01T00:00:00Z", "--output", tmp_path / "missing" / "r.csv",
    )  # fmt: skip
    assert report.exit_code == 2 and "does not exist" in report.output
    # '' (the working folder, once read) and '-' (a file named '-') are refused up front too
    for unnamed, said in (("", "the file name is empty"), ("-", "not written to standard output")):
        ingest = cli("ingest", path, "--rejects", unnamed)
        assert ingest.exit_code == 2 and said in ingest.output, ingest.output
        assert not Path("-").exists()
    assert count(engine, "sat_record") == 0


@ON_SQLITE_ALONE
def test_a_file_option_is_read_as_typed(cli, engine, tmp_path, monkeypatch):
    """A trailing '/' names a folder (it made a file without it), and './-' is a file named
    '-', not the word for standard output."""
    monkeypatch.chdir(tmp_path)
    path = write_lines(tmp_path / "ok.jsonl", [json.dumps(rec(counter=1))])
    report = ["report", "own", "--party", "NORTH", "--from", "2025-01-01T00:00:00Z",
              "--to", "2025-03-01T00:00:00Z"]  # fmt: skip
    for command in (["ingest", path, "--rejects"], [*report, "--output"]):
        for folder in ("out/", "out/.", "out/.."):  # pathlib drops the '/' and the '/.'
            result = cli(*command, folder)
            assert result.exit_code == 2 and "names a folder" in result.output, result.output
            assert not (tmp_path / "out").exists()
    assert count(engine, "sat_record") == 0
    users = write(tmp_path / "users.csv", USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n")
    assert cli("load", "users", users).exit_code == 0
    bad = write_lines(tmp_path / "bad.jsonl", ["garbage"])
    assert cli("ingest", path, bad, "--rejects", "./-").exit_code == 1
    [reject] = rejects_of(tmp_path / "-")
    assert reject["raw"] == "garbage"
    (tmp_path / "-").unlink()
    to_file = cli(*report, "--output", "./-")
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert (tmp_path / "-").read_text().startswith("id,logged_at,")
    to_stdout = cli(*report, "--output", "-")
    assert to_stdout.stdout == (tmp_path / "-").read_text()


def test_a_signing_key_that_cannot_sign_stops_an_ingest_before_it_stores(
    cli, engine, tmp_path, monkeypatch
):
    key = tmp_path / "bad.key"
    key.write_text("not a key")
    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", str(key))
    path = write_lines(tmp_path / "ok.jsonl", [json.dumps(rec(counter=1))])
    result = cli("ingest", path)
    assert result.exit_code == 2 and "signing key" in result.output
    assert count(engine, "sat_record") == 0


def _registry(cli, tmp_path: Path) -> None:
    cli("load", "users", write(tmp_path / "u.csv", USERS_HEADER + f"{NORTH_IS},NORTH,N,IS\n"
        f"{SOUTH_IS},SOUTH,S,IS\n"))  # fmt: skip
    cli("load", "devices", write(tmp_path / "d.csv", DEVICES_HEADER + f"{METER},ESME,2\n"))


def test_a_file_correcting_its_own_interval_reloads_as_a_no_op(cli, engine, tmp_path):
    """Line 2 opens an interval, line 3 closes it, line 4 starts the next supplier where it
    ends: the batch's last word for the interval is line 3's. Applied in turn on a re-load,
    line 2 overlapped line 4's interval, stored by the first load, and was rejected."""
    _registry(cli, tmp_path)
    path = write(
        tmp_path / "seq.csv",
        RESP_HEADER
        + f"{METER},NORTH,supplier,2024-01-01T00:00:00Z,\n"
        + f"{METER},NORTH,supplier,2024-01-01T00:00:00Z,2024-05-01T00:00:00Z\n"
        + f"{METER},SOUTH,supplier,2024-05-01T00:00:00Z,\n",
    )
    first = cli("load", "responsibilities", path)
    assert first.exit_code == 0, first.output
    assert first.stdout == "loaded 2, rejected 0, skipped 1 duplicates\n"
    assert "a later line of the file gives again" in first.stderr
    held = "SELECT party_id, valid_to IS NULL FROM responsibility ORDER BY valid_from"
    assert rows(engine, held) == [("NORTH", False), ("SOUTH", True)]
    again = cli("load", "responsibilities", path)
    assert again.exit_code == 0, again.output
    assert again.stdout == "loaded 0, rejected 0, skipped 3 duplicates\n"
    assert rows(engine, held) == [("NORTH", False), ("SOUTH", True)]


def test_an_interval_given_again_lines_later_reloads_as_a_no_op(cli, engine, tmp_path):
    """The file's last word for an interval wins wherever it comes: line 2 opens NORTH's
    interval, line 3 is another Device's, line 4 closes NORTH's, line 5 opens SOUTH's. Applied
    in turn, a re-load corrected the stored interval back to line 2's open end, which
    overlapped SOUTH's, and was rejected (the session-13 audit)."""
    _registry(cli, tmp_path)
    cli("load", "devices", write(tmp_path / "d2.csv", DEVICES_HEADER + f"{OTHER_METER},ESME,2\n"))
    path = write(
        tmp_path / "far.csv",
        RESP_HEADER
        + f"{METER},NORTH,supplier,2024-01-01T00:00:00Z,\n"
        + f"{OTHER_METER},NORTH,supplier,2024-01-01T00:00:00Z,\n"
        + f"{METER},NORTH,supplier,2024-01-01T00:00:00+00:00,2024-05-01T00:00:00Z\n"
        + f"{METER},SOUTH,supplier,2024-05-01T00:00:00Z,\n",
    )
    first = cli("load", "responsibilities", path)
    assert first.exit_code == 0, first.output
    assert first.stdout == "loaded 3, rejected 0, skipped 1 duplicates\n"
    held = "SELECT device_id, party_id, valid_to IS NULL FROM responsibility ORDER BY 1, valid_from"
    after_first = rows(engine, held)
    assert after_first == [
        (METER, "NORTH", False),
        (METER, "SOUTH", True),
        (OTHER_METER, "NORTH", True),
    ]
    again = cli("load", "responsibilities", path)
    assert again.exit_code == 0, again.output
    assert again.stdout == "loaded 0, rejected 0, skipped 4 duplicates\n"
    assert rows(engine, held) == after_first


def test_a_superseded_line_is_still_checked_on_its_own(cli, engine, tmp_path):
    _registry(cli, tmp_path)
    path = write(
        tmp_path / "seq.csv",
        RESP_HEADER
        + f"{METER},NOBODY,supplier,2024-01-01T00:00:00Z,\n"
        + f"{METER},NORTH,supplier,2024-01-01T00:00:00Z,\n",
    )
    result = cli("load", "responsibilities", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "seq.rejects.jsonl")
    assert reject["line"] == 2 and "unknown party_id" in reject["reason"]


@ON_SQLITE_ALONE
def test_loose_csv_is_rejected_not_guessed_at(cli, engine, tmp_path):
    lines = [
        f"{NORTH_IS},NORTH,North,IS",  # 2 good
        "90-B3-D5-1F-30-02-00-03,EXTRA,Extra,IS,surplus",  # 3 a field no column names
        '90-B3-D5-1F-30-02-00-04,QUOTE,"bad "quote" here",IS',  # 4 a quote out of place
        "90-B3-D5-1F-30-02-00-05,NONAME,,IS",  # 5 party_name given empty
        "90-B3-D5-1F-30-02-00-06,ESCAPE,Bad\x1b[2JName,IS",  # 6 a terminal's escape in a name
    ]
    path = write(tmp_path / "users.csv", USERS_HEADER + "".join(line + "\n" for line in lines))
    result = cli("load", "users", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 4, skipped 0 duplicates\n"
    rejects = {r["line"]: r for r in rejects_of(tmp_path / "users.rejects.jsonl")}
    assert sorted(rejects) == [3, 4, 5, 6]
    assert "5 fields; the header names 4" in rejects[3]["reason"]
    assert "not a CSV record" in rejects[4]["reason"]
    assert "party_name is empty" in rejects[5]["reason"]
    assert "no control, direction" in rejects[6]["reason"]
    assert [r["raw"] for _, r in sorted(rejects.items())] == lines[1:]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT party_id FROM party")).scalars().all() == ["NORTH"]


@ON_SQLITE_ALONE
def test_a_header_naming_a_column_twice_is_refused_before_anything_is_loaded(cli, engine, tmp_path):
    path = write(
        tmp_path / "users.csv",
        "user_id,party_id,party_name,role,user_id\n"
        f"{NORTH_IS},NORTH,North,IS,90-B3-D5-1F-30-02-00-06\n",
    )
    result = cli("load", "users", path)
    assert result.exit_code == 2
    assert "names a column more than once: user_id" in result.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dcc_user")).scalar() == 0


@ON_SQLITE_ALONE
def test_rejects_naming_a_file_that_is_not_a_reject_file_is_refused_and_the_file_kept(
    cli, tmp_path
):
    """It was emptied and deleted, even by a run that rejected nothing."""
    precious = write(tmp_path / "precious.csv", "not,a,reject,file\n")
    path = write(tmp_path / "users.csv", USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n")
    result = cli("load", "users", path, "--rejects", precious)
    assert result.exit_code == 2 and "is not a reject file" in result.stderr
    assert precious.read_text() == "not,a,reject,file\n"


@ON_SQLITE_ALONE
def test_a_pipe_is_refused_as_an_input_not_waited_on(cli, tmp_path):
    import os

    pipe = tmp_path / "live.jsonl"
    os.mkfifo(pipe)
    for command in (("ingest", pipe), ("load", "users", pipe)):
        result = cli(*command)
        assert result.exit_code == 2 and "not a regular file" in result.stderr


@ON_SQLITE_ALONE
def test_a_reject_file_that_cannot_be_written_stops_the_run_with_a_clear_error(cli, tmp_path):
    """A full disk (/dev/full): it was a traceback without a summary."""
    good = '{"logged_at":"2025-03-01T10:00:00Z","kind":"request","request_id":"'
    good += f'{NORTH_IS}:00-DB-12-34-56-78-90-A1:1","srv":"4.1.1","user_id":"{NORTH_IS}",'
    good += '"device_id":"00-DB-12-34-56-78-90-A1","response_code":"","payload":""}\n'
    path = write(tmp_path / "day.jsonl", good + '{"not": "a record"}\n')
    result = cli("ingest", path, "--rejects", "/dev/full")
    assert result.exit_code == 2
    assert "cannot write the reject file /dev/full" in result.stderr
    assert "Traceback" not in result.output


@ON_SQLITE_ALONE
def test_an_input_that_cannot_be_read_is_named_in_a_clear_error(cli, tmp_path):
    """/proc/self/mem answers every read with an I/O error (and root reads a chmod 000 file)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "mem.jsonl").symlink_to("/proc/self/mem")
    for target in (folder / "mem.jsonl", folder):
        result = cli("ingest", target)
        assert result.exit_code == 2, result.output
        assert "mem.jsonl: cannot be read (Input/output error)" in result.stderr
        assert "Traceback" not in result.output


@ON_SQLITE_ALONE
def test_a_folder_given_as_dot_has_its_reject_file_inside_named_after_it(
    cli, tmp_path, monkeypatch
):
    folder = tmp_path / "day"
    folder.mkdir()
    write(folder / "bad.jsonl", '{"not": "a record"}\n')
    monkeypatch.chdir(folder)
    assert cli("ingest", ".").exit_code == 1
    assert (tmp_path / "day.rejects.jsonl").exists()  # beside the folder, named after it
    assert not (tmp_path / ".rejects.jsonl").exists()


@ON_SQLITE_ALONE
def test_a_reject_file_tells_inputs_apart_from_whichever_folder_each_run_was(
    cli, engine, tmp_path, monkeypatch
):
    """Entries named their input as typed, and a later run read those names against its own
    working folder: a clean run of ./a.jsonl deleted sub/a.jsonl's reject, and a run of
    in.jsonl from its folder kept the entry of the same input, typed as day/in.jsonl from
    above, beside its own (audit 25d)."""
    sub = tmp_path / "sub"
    sub.mkdir()
    write_lines(sub / "a.jsonl", ["{from-sub"])
    monkeypatch.chdir(sub)
    assert cli("ingest", "--rejects", "../shared.rejects.jsonl", "a.jsonl").exit_code == 1
    write_lines(tmp_path / "a.jsonl", [json.dumps(rec(counter=1))])
    monkeypatch.chdir(tmp_path)
    clean = cli("ingest", "--rejects", "shared.rejects.jsonl", "a.jsonl")
    assert clean.exit_code == 0, clean.output
    [kept] = rejects_of(tmp_path / "shared.rejects.jsonl")
    assert (kept["file"], kept["raw"]) == (str(sub / "a.jsonl"), "{from-sub")

    day = tmp_path / "day"
    day.mkdir()
    write_lines(day / "in.jsonl", ["{once"])
    assert cli("ingest", "day/in.jsonl").exit_code == 1
    monkeypatch.chdir(day)
    assert cli("ingest", "in.jsonl").exit_code == 1
    [entry] = rejects_of(day / "in.rejects.jsonl")
    assert entry["file"] == str(day / "in.jsonl")
    assert count(engine, "sat_record") == 1


@ON_SQLITE_ALONE
def test_a_reject_entry_names_the_file_read_through_a_link_and_dot_dot(cli, tmp_path, monkeypatch):
    """`link/../bad.jsonl` made absolute as text named the working folder's bad.jsonl: each
    run added an entry beside the old one, and a run of that other file took them as its
    own (review 25e)."""
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    write_lines(tmp_path / "real" / "bad.jsonl", ["garbage-real"])
    write_lines(tmp_path / "bad.jsonl", ["garbage-here"])
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert cli("ingest", "link/../bad.jsonl").exit_code == 1
    [entry] = rejects_of(tmp_path / "real" / "bad.rejects.jsonl")
    assert (entry["file"], entry["raw"]) == (str(tmp_path / "real" / "bad.jsonl"), "garbage-real")


@ON_SQLITE_ALONE
def test_a_folders_reject_file_forgets_a_file_since_removed_from_it(cli, tmp_path):
    folder = tmp_path / "day"
    folder.mkdir()
    write_lines(folder / "gone.jsonl", ["{bad"])
    write_lines(folder / "stays.jsonl", ["{bad too"])
    assert cli("ingest", folder).exit_code == 1
    assert len(rejects_of(tmp_path / "day.rejects.jsonl")) == 2
    (folder / "gone.jsonl").unlink()
    assert cli("ingest", folder).exit_code == 1
    [entry] = rejects_of(tmp_path / "day.rejects.jsonl")
    assert entry["file"] == str(folder / "stays.jsonl")


@ON_SQLITE_ALONE
def test_a_reject_file_whose_last_entry_was_cut_short_is_still_taken_as_one(cli, tmp_path):
    """A run that died writing its last entry: the next run replaces the torn end."""
    path = write(tmp_path / "users.csv", USERS_HEADER + "not-a-user,NORTH,North,IS\n")
    assert cli("load", "users", path).exit_code == 1
    rejects = tmp_path / "users.rejects.jsonl"
    rejects.write_bytes(rejects.read_bytes() + b'{"file": "other.csv", "li')
    assert cli("load", "users", path).exit_code == 1
    assert len(rejects_of(rejects)) == 1


@ON_SQLITE_ALONE
def test_a_shared_reject_file_cut_short_by_another_inputs_run_stays_a_reject_file(cli, tmp_path):
    """Cut short by a run of another input (a full disk), the file was added to as it was:
    this run's first entry ran on from the cut one, was lost, and every later run refused
    the file as not a reject file (audit 28a). The cut entry is dropped, the rest kept."""
    first = write(tmp_path / "first.csv", USERS_HEADER + "not-a-user,NORTH,North,IS\n")
    second = write(tmp_path / "second.csv", USERS_HEADER + "neither-a-user,SOUTH,South,IS\n")
    shared = tmp_path / "shared.rejects.jsonl"
    assert cli("load", "users", first, "--rejects", shared).exit_code == 1
    shared.write_bytes(shared.read_bytes() + b'{"file": "' + bytes(tmp_path / "x.csv") + b'", "li')
    for _ in range(2):
        result = cli("load", "users", second, "--rejects", shared)
        assert result.exit_code == 1, result.output
        assert sorted(entry["raw"] for entry in rejects_of(shared)) == [
            "neither-a-user,SOUTH,South,IS",
            "not-a-user,NORTH,North,IS",
        ]


@pytest.mark.parametrize(
    "held", [b"db_password=hunter2", b'{"a": 1}', b""], ids=["notes", "json", "empty"]
)
@ON_SQLITE_ALONE
def test_rejects_naming_a_file_of_one_unfinished_line_leaves_it_as_it_was(cli, tmp_path, held):
    """A last line with no line end was taken for an entry cut short by a dying run and
    dropped; the file, left empty, was deleted, or replaced by the run's rejects (audit of
    hostile inputs, session 17). An empty file stays, for the run's entries."""
    notes = tmp_path / "notes.conf"
    notes.write_bytes(held)
    good = write(tmp_path / "users.csv", USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n")
    result = cli("load", "users", good, "--rejects", notes)
    assert notes.read_bytes() == held
    if held:
        assert result.exit_code == 2 and "is not a reject file" in result.stderr
        bad = write(tmp_path / "bad.csv", USERS_HEADER + "not-a-user,NORTH,North,IS\n")
        assert cli("load", "users", bad, "--rejects", notes).exit_code == 2
        assert notes.read_bytes() == held
    else:
        assert result.exit_code == 0, result.output


@ON_SQLITE_ALONE
def test_a_reject_file_that_is_a_symbolic_link_is_refused(cli, tmp_path):
    """Whoever may write the input's folder could point its reject file anywhere the loader
    may write (audit of hostile inputs, session 17)."""
    elsewhere = tmp_path / "elsewhere.txt"
    path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
    (tmp_path / "in.rejects.jsonl").symlink_to(elsewhere)
    result = cli("ingest", path)
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr
    assert not elsewhere.exists()


@pytest.mark.parametrize("given", [False, True])
@ON_SQLITE_ALONE
def test_a_reject_file_that_is_another_name_of_an_input_is_refused(cli, tmp_path, given):
    """A hard link to the input at the reject file's name (or named with --rejects) was
    added to, and the input with it (audit 42b); a link made by name is refused above."""
    entry = '{"file": "x", "line": 1, "reason": "x", "raw": "y"}\n'  # a reject file's form
    path = write(tmp_path / "q.jsonl", entry)
    (tmp_path / "q.rejects.jsonl").hardlink_to(path)
    result = cli("ingest", path, *(["--rejects", tmp_path / "q.rejects.jsonl"] if given else []))
    assert result.exit_code == 2 and "would overwrite an input" in result.stderr, result.output
    assert path.read_text() == entry


@ON_SQLITE_ALONE
def test_rejects_named_inside_a_folder_read_let_the_same_command_run_again(cli, engine, tmp_path):
    """`ingest incoming --rejects incoming/rejects.jsonl`: the first run made the file in the
    folder, and the same command run again took it for an input and refused to write over it
    (exit 2), where a re-run is to change nothing (SPEC section 4; audit 49c). A file of the
    folder that is no reject file is still not written over."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    write_lines(folder / "day.jsonl", [json.dumps(rec(counter=1)), '{"not": "a record"}'])
    target = folder / "rejects.jsonl"
    first = cli("ingest", folder, "--rejects", target)
    assert first.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n", first.output
    again = cli("ingest", folder, "--rejects", target)
    assert again.exit_code == 1, again.output
    assert again.stdout == "loaded 0, rejected 1, skipped 1 duplicates\n"
    assert [r["line"] for r in rejects_of(target)] == [2]
    kept = write_lines(folder / "more.jsonl", [json.dumps(rec(counter=2))])
    refused = cli("ingest", folder, "--rejects", kept)
    assert refused.exit_code == 2 and kept.read_text() == json.dumps(rec(counter=2)) + "\n"


@ON_SQLITE_ALONE
def test_a_new_reject_file_is_readable_by_its_owner_only(cli, tmp_path):
    """It holds records as they came, and an input may be a link to a file others cannot read
    (a folder's link to /etc/shadow put the file into a reject file anyone could read)."""
    path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
    assert cli("ingest", path).exit_code == 1
    assert (tmp_path / "in.rejects.jsonl").stat().st_mode & 0o777 == 0o600


def test_an_input_whose_name_is_not_utf8_has_its_rejects_written(cli, engine, tmp_path):
    """The name's bytes that are not UTF-8 are written as \\xNN; it was a traceback, which
    stopped the run before the file's good records (audit of hostile inputs, session 17)."""
    import os

    lines = [json.dumps(rec(counter=1)), '{"not": "a record"}', json.dumps(rec(counter=2))]
    name = os.fsdecode(b"caf\xe9.jsonl")
    path = write_lines(tmp_path / name, lines)
    result = cli("ingest", path)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == "loaded 2, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / os.fsdecode(b"caf\xe9.rejects.jsonl"))
    assert reject["file"].endswith("caf\\xe9.jsonl") and reject["line"] == 2
    # and a run again replaces the entry, not adds a second
    assert cli("ingest", path).exit_code == 1
    assert len(rejects_of(tmp_path / os.fsdecode(b"caf\xe9.rejects.jsonl"))) == 1


@ON_SQLITE_ALONE
def test_a_file_named_twice_in_one_run_is_read_once(cli, engine, tmp_path, monkeypatch):
    lines = [json.dumps(rec(counter=1)), '{"not": "a record"}']
    path = write_lines(tmp_path / "day.jsonl", lines)
    monkeypatch.chdir(tmp_path)
    result = cli("ingest", "day.jsonl", path, tmp_path)
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    assert len(rejects_of(tmp_path / "day.rejects.jsonl")) == 1


@ON_SQLITE_ALONE
def test_a_pipe_or_dangling_link_in_a_folder_is_named_as_skipped(cli, tmp_path):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "live.jsonl")
    (folder / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    write(folder / "bad.jsonl", '{"not": "a record"}\n')
    result = cli("ingest", folder)
    assert result.exit_code == 1, result.output
    assert "2 file(s) in the folder(s) skipped" in result.stderr
    assert "live.jsonl" in result.stderr and "gone.jsonl" in result.stderr


@ON_SQLITE_ALONE
def test_a_file_name_with_a_terminal_escape_is_shown_escaped(cli, tmp_path):
    """A name is printed back (skipped files, reject files, errors): ESC and BEL reached the
    terminal raw, where they can retitle it or rewrite what it shows (audit, session 17)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x\x1b]0;pwned\x07.txt").write_text("neither form\n")
    write(folder / "bad\x1b[2J.jsonl", '{"not": "a record"}\n')
    result = cli("ingest", folder)
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "x\\x1b]0;pwned\\x07.txt" in result.stderr
    missing = cli("ingest", tmp_path / "no\x1bsuch.jsonl")
    assert missing.exit_code == 2 and "\x1b" not in missing.output


@ON_SQLITE_ALONE
def test_load_names_a_gzip_file_as_one_and_an_unreadable_file_by_its_name(cli, tmp_path):
    zipped = tmp_path / "users.csv.gz"
    zipped.write_bytes(gzip.compress((USERS_HEADER + f"{NORTH_IS},NORTH,North,IS\n").encode()))
    result = cli("load", "users", zipped)
    assert result.exit_code == 2 and "gzip-compressed" in result.stderr
    (tmp_path / "mem.csv").symlink_to("/proc/self/mem")
    unreadable = cli("load", "users", tmp_path / "mem.csv")
    assert unreadable.exit_code == 2
    assert "mem.csv: cannot be read (Input/output error)" in unreadable.stderr


@ON_SQLITE_ALONE
def test_rejects_named_through_a_link_are_written_there(cli, tmp_path):
    """A link given with --rejects is the user's own choice (`--rejects /dev/stderr`): only
    a reject file made beside an input is refused as a link (review, session 17)."""
    target = tmp_path / "collected.jsonl"
    link = tmp_path / "rejects-here"
    link.symlink_to(target)
    path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
    for _ in range(3):  # a run replaces its input's entries there: they piled up (audit 28a)
        result = cli("ingest", path, "--rejects", link)
        assert result.exit_code == 1, result.output
        assert link.is_symlink() and len(rejects_of(target)) == 1


@ON_SQLITE_ALONE
def test_runs_sharing_a_reject_file_take_turns_and_lose_no_reject(cli, db_url, tmp_path):
    """A run rewrote the shared reject file (keeping the other inputs' entries) under another
    run's open descriptor: that run's later rejects went to the replaced file, lost (audit
    20c: ten of twenty). A run now holds the file from its start to its end; the other waits.
    On SQLite alone: the turns are the reject file's lock (ingest.rejects), whichever store."""
    import subprocess
    import sys
    import time

    from servicetrail.ingest.rejects import RejectFile

    shared = tmp_path / "shared.rejects.jsonl"
    first_input = write(tmp_path / "first.jsonl", "")
    other = write(tmp_path / "other.jsonl", '{"not": "a record"}\n')
    running = RejectFile(shared, sources=[first_input], inputs=[first_input], named=True)
    running.add(1, "early", b"early", first_input)
    running._opened().flush()
    waiting = subprocess.Popen(
        [sys.executable, "-c", "from servicetrail.cli import main; main()"]
        + ["--db", db_url, "ingest", str(other), "--rejects", str(shared)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # until the other run says it waits (a fixed 3 s was too short on a loaded machine
        # for it to start at all, and it then ran after this one, with nothing to wait for)
        said = _lines_until(waiting, f"waiting for another run that writes {shared}", 60)
        time.sleep(0.5)  # it would have rewritten the file by now
        running.add(2, "late", b"late", first_input)
        running.close()
        assert waiting.wait(timeout=60) == 1
        said += waiting.stderr.read() if waiting.stderr else ""
    finally:
        waiting.kill()
        waiting.wait()
        if waiting.stderr:  # else open to the collector: a ResourceWarning (session 59)
            waiting.stderr.close()
    entries = rejects_of(shared)
    assert sorted(e["raw"] for e in entries) == sorted(['{"not": "a record"}', "early", "late"])
    assert f"waiting for another run that writes {shared}" in said


def _lines_until(process, wanted: str, seconds: float) -> str:
    """The process's standard error up to the line holding `wanted`, read in a thread so that
    a process that never says it fails the test in `seconds` rather than hanging it."""
    import threading

    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if wanted in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(seconds), "".join(lines)
    return "".join(lines)


@pytest.mark.parametrize("named", ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"])
def test_rejects_to_standard_error_sent_to_a_file_lose_nothing(sqlite_url, tmp_path, named):
    """`--rejects /dev/stderr` with `2>log`: opened again, the stream had an offset of its own,
    and the lines the command wrote after the rejects overwrote the first of them (audit
    25d). On SQLite alone, a command a run: where the rejects go is the reject file's and the
    command's streams' business (ingest.rejects), the same whichever store takes no record
    here (the PostgreSQL runs cost the suite ~2 s of CPU and proved nothing more)."""
    import subprocess
    import sys

    bad = write(tmp_path / "in.jsonl", "{bad one\n{bad two\n")
    with open(tmp_path / "log", "w") as log:  # as a shell's 2>log: no O_APPEND
        ran = subprocess.run(
            [sys.executable, "-c", "from servicetrail.cli import main; main()"]
            + ["--db", sqlite_url, "ingest", str(bad), "--rejects", named],
            stderr=log,
            stdout=subprocess.PIPE,
            check=False,
        )
    assert ran.returncode == 1
    said = (tmp_path / "log").read_text().splitlines()
    entries = [json.loads(line) for line in said if line.startswith('{"file":')]
    assert [e["raw"] for e in entries] == ["{bad one", "{bad two"], said
    assert said[-1] == "Error: 2 record(s) rejected"


@pytest.mark.parametrize("stream", ["pipe", "appended log", "log"])
@pytest.mark.parametrize(
    "to", ["/dev/stderr", "relative /proc/self/fd/2", "folder link", "/proc/thread-self/fd/2"]
)
def test_rejects_through_a_link_to_standard_error_are_written_to_the_stream(
    sqlite_url, tmp_path, stream, to
):
    """A link of the user's own to /dev/stderr was followed to what it ended at and that was
    rewritten: a pipe's `pipe:[...]` could not be opened (the run stopped), and a log that
    `2>>log` was adding to was refused as not a reject file (review 28d). Then, opened anew,
    `2>log` had its first entry written over, and a relative link into /proc was missed
    (review 28e). The command's own stream is written through. On SQLite alone, as the test
    above (12 more commands on PostgreSQL cost the suite ~8 s of CPU)."""
    import subprocess
    import sys

    bad = write(tmp_path / "in.jsonl", "{bad one\n{bad two\n")
    link = tmp_path / "to-stderr"
    if to.startswith("relative"):
        link.symlink_to("../" * len(tmp_path.parts) + "proc/self/fd/2")
    elif to == "folder link":  # review 28f: a hop through a linked folder was missed
        (tmp_path / "fds").symlink_to("/proc/self/fd")
        link.symlink_to("fds/2")
    else:
        link.symlink_to(to)
    command = [sys.executable, "-c", "from servicetrail.cli import main; main()"]
    command += ["--db", sqlite_url, "ingest", str(bad), "--rejects", str(link)]
    if stream == "pipe":
        ran = subprocess.run(command, capture_output=True, check=False)
        said = ran.stderr.decode()
    else:
        log = tmp_path / "app.log"
        log.write_text("an earlier line of the log\n" if stream == "appended log" else "")
        with open(log, "a" if stream == "appended log" else "w") as err:  # 2>>log, 2>log
            ran = subprocess.run(command, stderr=err, stdout=subprocess.PIPE, check=False)
        said = log.read_text()
        if stream == "appended log":
            assert said.startswith("an earlier line of the log\n")
    assert ran.returncode == 1, said
    entries = [json.loads(line) for line in said.splitlines() if line.startswith('{"file":')]
    assert [e["raw"] for e in entries] == ["{bad one", "{bad two"], said


@pytest.mark.parametrize(
    "named", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", "link", "folder link"]
)
def test_rejects_to_standard_output_are_refused_as_its_summary_goes_there(tmp_path, named):
    """`--rejects /dev/stdout | ...` had the summary line among the reject lines (review 47j):
    refused as `--rejects -` is, by any name or link that leads there; standard error takes
    them."""
    from servicetrail.ingest.rejects import NotARejectFile, RejectFile

    given = Path(named)
    if named == "link":
        given = tmp_path / "to-stdout"
        given.symlink_to("/dev/stdout")
    elif named == "folder link":
        (tmp_path / "fds").symlink_to("/proc/self/fd")
        given = tmp_path / "fds" / "1"
    with pytest.raises(NotARejectFile, match=r"is standard output, which carries the summary"):
        RejectFile(given, named=True)
    RejectFile(Path("/dev/stderr"), named=True).close()


@pytest.mark.parametrize("named", ["/dev/fd/{fd}", "link"])
def test_rejects_naming_a_descriptor_the_command_opened_itself_are_refused(db_url, tmp_path, named):
    """`--rejects /dev/fd/3` named the store's own file (or its PostgreSQL socket), opened by
    the command itself, and the rejects went into it (review 28f)."""
    import subprocess
    import sys

    bad = write(tmp_path / "in.jsonl", "{bad one\n")
    given = "/dev/fd/3"
    if named == "link":
        (tmp_path / "to-three").symlink_to("/proc/self/fd/3")
        given = str(tmp_path / "to-three")
    store = tmp_path / "store.db"
    url = f"sqlite:///{store}" if db_url.startswith("sqlite") else db_url
    command = [sys.executable, "-c", "from servicetrail.cli import main; main()"]
    ran = subprocess.run(
        command + ["--db", url, "ingest", str(bad), "--rejects", given],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 2, ran.stderr
    # by the name given: its folder resolved, it was /proc/<pid>/fd/3 (review 47b)
    assert f"the reject file {given} names a descriptor this command did not" in ran.stderr
    if url.startswith("sqlite"):
        assert b"bad one" not in store.read_bytes()


def _ingest_with_rejects(db_url, tmp_path, given, **run):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}" if db_url.startswith("sqlite") else db_url
    command = [sys.executable, "-c", "from servicetrail.cli import main; main()"]
    command += ["--db", url, "ingest", str(tmp_path / "in.jsonl"), "--rejects", given]
    return subprocess.run(command, capture_output=True, text=True, check=False, **run)


@ON_SQLITE_ALONE
def test_a_descriptor_the_command_opens_later_is_refused_by_the_name_given(db_url, tmp_path):
    """It was refused only if open as the run began: at the first reject, `/dev/fd/6` was
    the input being read, and the rejects were added to it (review 47b). On SQLite alone:
    which descriptors were open as the run began is the reject file's check (ingest.rejects),
    the same whichever store; the one PostgreSQL opens itself, its socket, is refused in the
    test above (seven more commands on PostgreSQL cost the suite ~5 s of CPU)."""
    bad = write(tmp_path / "in.jsonl", "{bad one\n")
    for number in range(3, 10):
        ran = _ingest_with_rejects(db_url, tmp_path, f"/dev/fd/{number}")
        assert ran.returncode == 2, ran.stderr
        assert (
            f"the reject file /dev/fd/{number} names a descriptor this command did not start "
            "with" in ran.stderr
        )
        assert bad.read_text() == "{bad one\n"


@ON_SQLITE_ALONE
def test_a_descriptor_the_command_started_with_is_said_by_the_name_given(db_url, tmp_path):
    """Its folder resolved, `/dev/fd/3` was said as `/proc/<pid>/fd/3` (review 47b). On SQLite
    alone, as the test above: the name said and the rejects written are the reject file's
    (ingest.rejects), the same whichever store; on PostgreSQL its two commands were 1.5 s
    of CPU."""
    import os

    write(tmp_path / "in.jsonl", "{bad one\n")
    with open(write(tmp_path / "notes", "kept\n"), "rb") as read_only:
        number = read_only.fileno()
        refused = _ingest_with_rejects(db_url, tmp_path, f"/dev/fd/{number}", pass_fds=(number,))
    assert refused.returncode == 2
    assert f"cannot write the reject file /dev/fd/{number}: Bad file" in refused.stderr
    reader, writer = os.pipe()
    with os.fdopen(reader, "rb") as sent:
        try:
            given = f"/dev/fd/{writer}"
            written = _ingest_with_rejects(db_url, tmp_path, given, pass_fds=(writer,))
        finally:
            os.close(writer)
        assert written.returncode == 1, written.stderr
        assert f"with their line and reason: {given}\n" in written.stderr
        assert json.loads(sent.read())["raw"] == "{bad one"


@ON_SQLITE_ALONE
def test_rejects_through_a_link_to_a_file_in_dev_shm_replace_their_own(cli, tmp_path):
    """/dev/shm holds ordinary files: a link to one was taken for a stream, and each run's
    entries piled up again (review 28e)."""
    target = Path(tempfile.mkdtemp(dir="/dev/shm")) / "rejects.jsonl"
    try:
        link = tmp_path / "shm"
        link.symlink_to(target)
        path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
        for _ in range(3):
            assert cli("ingest", path, "--rejects", link).exit_code == 1
            assert len(rejects_of(target)) == 1
    finally:
        shutil.rmtree(target.parent)


@ON_SQLITE_ALONE
def test_a_reject_file_whose_last_whole_entry_has_no_line_end_is_added_to_on_a_line_of_its_own(
    cli, tmp_path
):
    """A whole entry with no line end (a run stopped just after it; an editor) had the next
    run's first entry appended on its line, and every run after that refused the file as
    not a reject file (review 28d)."""
    shared = tmp_path / "shared.rejects.jsonl"
    other = '{"file":"' + str(tmp_path / "other.csv") + '","line":2,"reason":"x","raw":"abc"}'
    shared.write_text(other)
    bad = write(tmp_path / "users.csv", USERS_HEADER + "not-a-user,NORTH,North,IS\n")
    for _ in range(2):
        assert cli("load", "users", bad, "--rejects", shared).exit_code == 1
        assert sorted(e["raw"] for e in rejects_of(shared)) == ["abc", "not-a-user,NORTH,North,IS"]


@ON_SQLITE_ALONE
def test_a_fifo_at_the_reject_files_name_is_refused_not_waited_on(cli, tmp_path):
    """Opening it for writing waited for a reader for ever (audit 20c)."""
    import os

    path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
    os.mkfifo(tmp_path / "in.rejects.jsonl")
    result = cli("ingest", path)
    assert result.exit_code == 2 and "is not a regular file" in result.stderr


@ON_SQLITE_ALONE
def test_a_large_shared_reject_file_resolves_each_input_name_once(cli, tmp_path, monkeypatch):
    """A run keeps the other inputs' entries of a shared reject file, judging each by the
    file it names: resolving that name once per entry (system calls for each part of it) made
    a re-run beside 300,000 entries take 3.6 s in all; once per name, 0.75 s."""
    bad = write(tmp_path / "bad.jsonl", "".join("{not json %d\n" % n for n in range(2_000)))
    other = write(tmp_path / "other.jsonl", '{"not": "a record"}\n')
    shared = tmp_path / "shared.rejects.jsonl"
    assert cli("ingest", bad, "--rejects", shared).exit_code == 1
    resolved = []
    resolve = Path.resolve

    def counted(self, *args, **kwargs):
        resolved.append(self)
        return resolve(self, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", counted)
    assert cli("ingest", other, "--rejects", shared).exit_code == 1
    assert len(rejects_of(shared)) == 2_001
    assert len(resolved) < 50


@ON_SQLITE_ALONE
def test_a_reject_whose_input_holds_unicode_line_separators_stays_one_line(cli, engine, tmp_path):
    """U+2028 and U+2029 are line ends to Python's splitlines() and some editors: a reject's
    raw input holding them, written as it came, cut its reject file's line in three (review
    24d). Written escaped, the raw input still reads back exactly as it came."""
    odd = json.dumps({"kind": "request", "note": "a\u2028b\u2029c"}, ensure_ascii=False)
    path = write_lines(tmp_path / "odd.jsonl", [odd, json.dumps(rec(counter=1))])
    result = cli("ingest", path)
    assert result.exit_code == 1
    lines = (tmp_path / "odd.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["raw"] == odd


@ON_SQLITE_ALONE
def test_a_long_rejects_entry_escapes_line_separators_in_its_file_name(
    cli, engine, tmp_path, use_settings
):
    """A reject too long to hold is copied from its input a piece at a time; the entry's
    head (file, reason) was written as it came, and a U+2028 in the file's name cut the line
    in two (review 24e)."""
    use_settings(SERVICETRAIL_MAX_DUIS_BYTES=1024)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "odd\u2028name.xml").write_text("<x>" + "a" * 3000 + "</x>")
    result = cli("ingest", folder, "--rejects", tmp_path / "r.jsonl")
    assert result.exit_code == 1, result.output
    lines = (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["file"].endswith("odd\u2028name.xml")


@ON_SQLITE_ALONE
def test_something_at_the_name_of_a_reject_files_partial_does_not_stop_the_runs(cli, tmp_path):
    """A run that replaces its input's entries writes the new file at `.NAME.partial` beside
    the old; a folder there (or another user's file in a sticky folder) stopped every run
    with "File exists" (review 26d). The run takes a name of its own then."""
    import os

    path = write(tmp_path / "in.jsonl", '{"not": "a record"}\n')
    assert cli("ingest", path).exit_code == 1
    (tmp_path / ".in.rejects.jsonl.partial").mkdir()
    # a killed run's file under a name of its own, removed; a file of someone else's, kept
    (tmp_path / ".in.rejects.jsonl.partial.k1ll3d_x").write_text('{"file": "old"}\n')
    (tmp_path / ".in.rejects.jsonl.partial.notes").write_text("mine\n")
    for _ in range(2):
        again = cli("ingest", path)
        assert again.exit_code == 1 and "cannot write" not in again.stderr, again.output
        assert len(rejects_of(tmp_path / "in.rejects.jsonl")) == 1
    beside = sorted(n for n in os.listdir(tmp_path) if "rejects" in n)
    assert beside == [
        ".in.rejects.jsonl.partial",
        ".in.rejects.jsonl.partial.notes",
        "in.rejects.jsonl",
    ]  # no run's own left


def test_a_damage_without_words_is_said_by_its_kind() -> None:
    """An error with no message was shown as `()` in the reject's reason (review 44e)."""
    from servicetrail.ingest.sources import damage_reason, damaged_document_reason

    assert "(EOFError)" in damage_reason(EOFError())
    assert "(EOFError)" in damaged_document_reason(EOFError())
    assert "(CRC check failed)" in damaged_document_reason(OSError("CRC check failed"))
