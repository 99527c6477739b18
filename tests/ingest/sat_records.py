"""SAT JSON Lines records for the ingest tests: a record, a file of them, and what a store and
the rejects file hold after a load."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text


UTC = timezone.utc
NORTH_IS = "90-B3-D5-1F-30-02-00-01"


METER = "00-DB-00-00-00-00-00-01"
DCC = "90-B3-D5-1F-30-00-00-02"


def rec(
    logged_at="2025-02-01T10:00:00Z",
    kind="request",
    counter=1,
    srv="4.1.1",
    user=NORTH_IS,
    device=METER,
    code="",
    payload="",
    request_id=None,
) -> dict:
    return {
        "logged_at": logged_at,
        "kind": kind,
        "request_id": request_id or f"{user}:{device or DCC}:{counter}",
        "srv": srv,
        "user_id": user,
        "device_id": device,
        "response_code": code,
        "payload": payload,
    }


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def rejects_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def stored(engine) -> list[dict]:
    with engine.connect() as conn:
        result = conn.execute(
            text(
                "SELECT r.id, r.logged_at, r.kind, r.request_id, r.srv, r.user_id, r.device_id, "
                "r.response_code, p.payload FROM sat_record r LEFT JOIN sat_payload p ON "
                "p.record_id = r.id ORDER BY r.id"
            )
        )
        return [dict(row._mapping) for row in result]


def utc(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
