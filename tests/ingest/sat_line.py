"""A SAT JSON Lines record, numbered: by default its time and payload follow from the number;
a test whose data matters to it says the time, payload, User or Device."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from tests.ingest.sat_records import rec


UTC = timezone.utc
USER = "90-B3-D5-1F-30-02-00-01"
METER = "00-DB-00-00-00-00-00-01"
START = datetime(2025, 3, 1, tzinfo=UTC)


def line(
    n: int,
    when: datetime | None = None,
    payload: str | None = None,
    user: str = USER,
    device: str = METER,
) -> str:
    """Request `n` of `user` to `device`: at `when` (START and n seconds unless given), with
    `payload` (P<n> for an odd n, none for an even one, unless given)."""
    at = START + timedelta(seconds=n) if when is None else when
    body = (f"P{n}" if n % 2 else "") if payload is None else payload
    return json.dumps(
        rec(logged_at=at.isoformat(), counter=n, user=user, device=device, payload=body)
    )
