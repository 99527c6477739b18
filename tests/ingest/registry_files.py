"""Registry CSV files for the loader's tests: their headers, the Parties and Devices they
name, files written from rows and the rows a store holds."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text


USERS_HEADER = "user_id,party_id,party_name,role\n"
DEVICES_HEADER = "device_id,device_type,smets\n"
RESP_HEADER = "device_id,party_id,relation,valid_from,valid_to\n"

NORTH_IS = "90-B3-D5-1F-30-02-00-01"
SOUTH_IS = "90-B3-D5-1F-30-02-00-11"


METER = "00-DB-00-00-00-00-00-01"


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]
