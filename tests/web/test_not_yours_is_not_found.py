"""Every API address that names a record or a watch answers another Party's exactly as it
answers one that does not exist: status, headers, body, and the access-log entry it writes
(SPEC section 8; issue 10 finding 7), through the hot path and through the routes alike.
The id itself is the only difference allowed: the answers and entries echo it.
(Session 47f's sweep of every surface; the time of each answer is bench/timing.py's.)"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from servicetrail.store.access_tables import access_log
from servicetrail.web.app import create_app
from tests import personas as P

MISSING_RECORD = 987_654_321
MISSING_WATCH = 987_654
# headers that differ between any two answers
NOISE = {"date"}


def answer(engine, client: TestClient, method: str, path: str, headers: dict, echo: int) -> tuple:
    """What an asker sees and what the access log keeps, the id replaced by N."""
    with engine.connect() as conn:
        before = conn.execute(select(func.coalesce(func.max(access_log.c.id), 0))).scalar_one()
    got = client.request(method, path, headers=headers)
    with engine.connect() as conn:
        entries = conn.execute(
            select(access_log).where(access_log.c.id > before).order_by(access_log.c.id)
        ).mappings()
        logged = [{k: v for k, v in e.items() if k not in ("id", "at")} for e in entries]
    said = {k: v for k, v in got.headers.items() if k not in NOISE}
    # checked with the body, whose echo of the id may change its length
    length = said.pop("content-length", None)
    return (
        got.status_code,
        said,
        re.sub(rb"(?<![0-9])%d(?![0-9])" % echo, b"N", got.content),
        length in (None, str(len(got.content))),
        re.sub(rf"(?<![0-9]){echo}(?![0-9])", "N", json.dumps(logged, default=str)),
    )


@pytest.mark.parametrize("hot_path", [True, False])
@pytest.mark.parametrize(
    "method, address",
    [
        ("GET", "/api/v1/records/{}"),
        ("HEAD", "/api/v1/records/{}"),
        ("GET", "/api/v1/records/{}/why"),
        ("GET", "/api/v1/records/{}/triggers"),
        ("GET", "/api/v1/records/{}/proof"),
        ("GET", "/api/v1/records/{}/proof?x=1"),  # a 422, before any look-up
    ],
)
def test_another_partys_record_is_a_missing_one(
    engine, world, bearer, method, address, hot_path
) -> None:
    client = TestClient(create_app(engine, hot_path=hot_path), raise_server_exceptions=False)
    for viewer, theirs in ((P.SOUTHENERGY, "np_device_alert"), (P.LOOKER, "np_req")):
        hidden = world.ids[theirs]
        asked = [
            answer(engine, client, method, address.format(wanted), bearer(viewer), wanted)
            for wanted in (hidden, MISSING_RECORD)
        ]
        assert asked[0] == asked[1], (viewer, theirs)


WATCH_ADDRESSES = [
    ("GET", "/api/v1/watches/{}"),
    ("HEAD", "/api/v1/watches/{}"),
    ("GET", "/api/v1/watches/{}/webhook"),
    ("GET", "/api/v1/watches/{}/events"),
    ("GET", "/api/v1/watches/{}/events?after=300&limit=200"),  # no echo of a small id
    ("GET", "/api/v1/watches/{}/stream"),
    ("DELETE", "/api/v1/watches/{}"),
]


@pytest.mark.parametrize("method, address", WATCH_ADDRESSES)
def test_another_partys_watch_is_a_missing_one(engine, client, bearer, method, address) -> None:
    theirs = client.post("/api/v1/watches", json={"name": "np"}, headers=bearer(P.NORTHPOWER))
    hidden = theirs.json()["id"]
    asked = [
        answer(engine, client, method, address.format(wanted), bearer(P.SOUTHENERGY), wanted)
        for wanted in (hidden, MISSING_WATCH)
    ]
    assert asked[0] == asked[1]
    assert asked[0][0] == 404
    listed = client.get("/api/v1/watches", headers=bearer(P.NORTHPOWER)).json()
    assert [w["id"] for w in listed["items"]] == [hidden]  # untouched


# ids no watch can have: out of range, signed, not in ASCII digits, not a whole number, padded
ODD_IDS = [
    "0", "-1", "-0", "+1", "9" * 19, "9" * 30, str(2**63), str(2**64 + 1), "1e3", "1.0", "0x1",
    "1_0", " 1", "1 ", "\u0661\u0662", "\uff11", "\u00b2", "\u0000",
]  # fmt: skip


def test_odd_and_deleted_watch_ids_are_missing_ones(engine, client, bearer) -> None:
    """A hostile User's ids on every address that names a watch (audit 57k): each answers as
    a watch that was never made, status, headers and body, and none is a 500. A deleted
    watch's id, its owner's or another's, and another Party's id written with leading zeros,
    also write the access-log entry of a missing one; an id no watch can have is refused
    before any read, and so writes none."""
    south, north = bearer(P.SOUTHENERGY), bearer(P.NORTHPOWER)
    gone = []
    for owner in (south, north):
        made = client.post("/api/v1/watches", json={"name": "gone"}, headers=owner).json()["id"]
        assert client.delete(f"/api/v1/watches/{made}", headers=owner).status_code == 204
        gone.append(made)
    theirs = client.post("/api/v1/watches", json={"name": "np"}, headers=north).json()["id"]
    for method, address in WATCH_ADDRESSES:
        missing = answer(
            engine, client, method, address.format(MISSING_WATCH), south, MISSING_WATCH
        )
        assert missing[0] == 404, (method, address)
        for wanted, echo in [*((n, n) for n in gone), (f"00{theirs}", theirs)]:
            said = answer(engine, client, method, address.format(wanted), south, echo)
            assert said == missing, (method, address, wanted)
        for odd in ODD_IDS:
            said = answer(engine, client, method, address.format(quote(odd, safe="")), south, 0)
            assert said[:4] == missing[:4], (method, address, odd)
    listed = client.get("/api/v1/watches", headers=north).json()["items"]
    assert [w["id"] for w in listed] == [theirs]  # untouched
