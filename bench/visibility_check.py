#!/usr/bin/env python3
"""Every Party's whole search of a store against `domain.visibility.decide` over every record:
the check after a race (an ingest while `load responsibilities` corrects the same Devices'
intervals, audit 61d). Reads the store as it stands; prints each Party whose search differs
(records missing, records extra, access wrong) and exits 1 if any does.

    .venv/bin/python bench/visibility_check.py sqlite:////tmp/st.db
    .venv/bin/python bench/visibility_check.py postgresql://postgres@127.0.0.1:PORT/DB

About 40 s of a loaded machine at 20,000 records and 130 Parties (one search each).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import text

from servicetrail.domain.model import Responsibility, SatRecord
from servicetrail.domain.search import Search
from servicetrail.domain.visibility import Viewer, decide
from servicetrail.store import queries
from servicetrail.store.engine import open_store


def utc(value: Any) -> datetime | None:
    """A stored time (a datetime on PostgreSQL, fixed-width text on SQLite) as aware UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


def main(url: str) -> int:
    store = open_store(url)
    with store.connect() as conn:
        user_ids: dict[str, set[str]] = defaultdict(set)
        for user_id, party_id in conn.execute(text("SELECT user_id, party_id FROM dcc_user")):
            user_ids[party_id].add(user_id)
        parties = [row[0] for row in conn.execute(text("SELECT party_id FROM party"))]
        registry: dict[str, list[Responsibility]] = defaultdict(list)
        for device, party, relation, start, end in conn.execute(
            text("SELECT device_id, party_id, relation, valid_from, valid_to FROM responsibility")
        ):
            registry[device].append(Responsibility(device, party, relation, utc(start), utc(end)))  # type: ignore[arg-type]
        records = [
            (row[0], SatRecord(utc(row[1]), row[2], row[3], "", row[4], row[5], "", ""))  # type: ignore[arg-type]
            for row in conn.execute(
                text("SELECT id, logged_at, kind, request_id, user_id, device_id FROM sat_record")
            )
        ]
    differing = visible = 0
    for party in parties:
        viewer = Viewer(party, frozenset(user_ids[party]))
        expected = {}
        for record_id, record in records:
            decision = decide(viewer, record, registry.get(record.device_id, ()))
            if decision.access is not None:
                expected[record_id] = decision.access.value
        with store.connect() as conn:
            found = {i["id"]: i["access"] for i in queries.iter_search(conn, viewer, Search())}
        visible += len(expected)
        if found != expected:
            differing += 1
            missing, extra = set(expected) - set(found), set(found) - set(expected)
            wrong = [i for i in set(expected) & set(found) if expected[i] != found[i]]
            print(
                f"{party}: missing {len(missing)} {sorted(missing)[:5]}, "
                f"extra {len(extra)} {sorted(extra)[:5]}, access wrong {len(wrong)}"
            )
    print(f"{len(parties)} Parties, {len(records)} records, {visible} visible, {differing} differ")
    store.dispose()
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
