"""A SAT JSON Lines record, numbered: its time and counter follow from the number."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone


UTC = timezone.utc
USER = "90-B3-D5-1F-30-02-00-01"
METER = "00-DB-00-00-00-00-00-01"


def line(n: int) -> str:
    when = datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=n)
    return json.dumps(
        {
            "logged_at": when.isoformat(),
            "kind": "request",
            "request_id": f"{USER}:{METER}:{n}",
            "srv": "4.1.1",
            "user_id": USER,
            "device_id": METER,
            "response_code": "",
            "payload": f"P{n}" if n % 2 else "",
        }
    )
