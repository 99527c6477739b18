"""Party IDs, roles, response codes and numbers are validated as ASCII, exactly as stored
(issue 10, finding 6), through the loaders, the API and the CLI: the registry's on both
engines, the refusals made before the store on SQLite alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P

USERS_HEADER = "user_id,party_id,party_name,role\n"


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8", newline="")
    return path


def rejects_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_users_with_non_ascii_or_lower_case_party_ids_or_roles_are_rejected(cli, engine, tmp_path):
    lines = [
        "90-B3-D5-1F-30-02-00-01,SUPA,Supa Energy,IS",  # 2 good
        "90-B3-D5-1F-30-02-00-02,supa,Supa Energy,GS",  # 3 a second Party beside SUPA
        "90-B3-D5-1F-30-02-00-03,\u0131NC,Dotless Inc,IS",  # 4 upper-cases to INC
        "90-B3-D5-1F-30-02-00-04,STRA\u00dfE,Strasse,IS",  # 5 upper-cases to STRASSE
        "90-B3-D5-1F-30-02-00-05,SUPA,Supa Energy,\uff29\uff33",  # 6 fullwidth IS
        "90-B3-D5-1F-30-02-00-06,SUPA,Supa Energy,\u0131s",  # 7 upper-cases to IS
        "90-B3-D5-1F-30-02-00-07,SUPA,Supa Energy,gs",  # 8 good: a role is upper-cased
    ]
    users = write(tmp_path / "users.csv", USERS_HEADER + "\n".join(lines) + "\n")
    result = cli("load", "users", users)
    assert result.exit_code == 1
    assert result.stdout == "loaded 2, rejected 5, skipped 0 duplicates\n"
    rejects = rejects_of(tmp_path / "users.rejects.jsonl")
    assert [r["line"] for r in rejects] == [3, 4, 5, 6, 7]
    assert ["party_id" in r["reason"] for r in rejects] == [True, True, True, False, False]
    assert all("role" in r["reason"] for r in rejects[3:])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT party_id FROM party")).scalars().all() == ["SUPA"]
        assert sorted(conn.execute(text("SELECT role FROM dcc_user")).scalars()) == ["GS", "IS"]


def test_registry_codes_that_only_case_map_to_a_valid_one_are_rejected(cli, engine, tmp_path):
    write(tmp_path / "users.csv", USERS_HEADER + "90-B3-D5-1F-30-02-00-01,SUPA,Supa,IS\n")
    assert cli("load", "users", tmp_path / "users.csv").exit_code == 0
    devices = write(
        tmp_path / "devices.csv",
        "device_id,device_type,smets\n"
        "00-DB-00-00-00-00-00-01,ESME,2\n"
        "00-DB-00-00-00-00-00-02,e\u017fme,2\n"  # long s: upper-cases to ESME
        "00-DB-00-00-00-00-00-03,GSME,\u017fmets1\n",
    )
    result = cli("load", "devices", devices)
    assert result.stdout == "loaded 1, rejected 2, skipped 0 duplicates\n"
    assert [r["line"] for r in rejects_of(tmp_path / "devices.rejects.jsonl")] == [3, 4]
    resp = write(
        tmp_path / "resp.csv",
        "device_id,party_id,relation,valid_from,valid_to\n"
        "00-DB-00-00-00-00-00-01,supa,supplier,2025-01-01T00:00:00Z,\n"
        "00-DB-00-00-00-00-00-01,SUPA,\u017fupplier,2025-01-01T00:00:00Z,\n"
        "00-DB-00-00-00-00-00-01,SUPA,supplier,2025-01-01T00:00:00Z,\n",
    )
    result = cli("load", "responsibilities", resp)
    assert result.stdout == "loaded 1, rejected 2, skipped 0 duplicates\n"
    reasons = [r["reason"] for r in rejects_of(tmp_path / "resp.rejects.jsonl")]
    assert "party_id" in reasons[0] and "relation" in reasons[1]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT party_id, relation FROM responsibility")).all() == [
            ("SUPA", "supplier")
        ]


@ON_SQLITE_ALONE
def test_a_sat_record_with_a_fullwidth_response_code_is_rejected(cli, engine, tmp_path):
    base = {
        "logged_at": "2025-01-01T00:00:00Z",
        "kind": "response",
        "srv": "4.1.1",
        "request_id": f"{P.NP_IS}:{P.ESME_1}:7",
        "user_id": P.NP_IS,
        "device_id": P.ESME_1,
        "payload": "",
    }
    sat = write(
        tmp_path / "sat.jsonl",
        "\n".join(
            json.dumps(dict(base, response_code=code, logged_at=at))
            for code, at in (
                ("E4", "2025-01-01T00:00:00Z"),
                ("\uff25\uff14", "2025-01-01T00:00:01Z"),
                ("E\u0664", "2025-01-01T00:00:02Z"),
            )
        )
        + "\n",
    )
    result = cli("ingest", sat)
    assert result.stdout == "loaded 1, rejected 2, skipped 0 duplicates\n"
    assert all("response_code" in r["reason"] for r in rejects_of(tmp_path / "sat.rejects.jsonl"))


@P.starts_with_personas
@pytest.mark.parametrize("limit", ["\u0663", "1_0", "+5", " 5", "\uff15", "5.0"])
@ON_SQLITE_ALONE
def test_a_page_size_in_other_than_ascii_digits_is_422(engine, limit):
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np", P.NORTHPOWER, "correct horse battery staple")
        headers = {"Authorization": f"Bearer {create_token(conn, 'np')}"}
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/records", headers=headers, params={"limit": limit})
        assert response.status_code == 422
        assert response.json()["parameter"] == "limit"
        assert (
            client.get("/api/v1/records", headers=headers, params={"limit": "3"}).status_code == 200
        )


@P.starts_with_personas
@pytest.mark.parametrize("limit", ["\u0663", "1_0"])
@ON_SQLITE_ALONE
def test_the_cli_limit_takes_ascii_digits_only(cli, engine, limit):
    P.load_personas(engine)
    result = cli("records", "--party", P.NORTHPOWER, "--limit", limit)
    assert result.exit_code == 2
    assert "digits 0-9" in result.output
    assert (
        len(
            cli(
                "records", "--party", P.NORTHPOWER, "--limit", "3", "--format", "jsonl"
            ).stdout.splitlines()
        )
        == 3
    )
