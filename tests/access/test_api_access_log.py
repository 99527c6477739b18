"""Who looked (SPEC section 8) through the API, on both engines: every route that returns SAT
records writes exactly one access-log entry, with the counts of what it returned, before it
answers; a Party reads its own Party's entries; an auditor reads everyone's and no record."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from servicetrail.domain.access_log import MAX_FILTERS
from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.access.conftest import LATE_REQUEST_ID
from tests import rfc9162

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client(engine, world):
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


def bearer(engine, username: str, party: str | None) -> dict[str, str]:
    with engine.begin() as conn:
        create_account(conn, username, party, PASSWORD)
        return {"Authorization": f"Bearer {create_token(conn, username)}"}


@pytest.fixture
def np(engine, world):
    return bearer(engine, "np.analyst", P.NORTHPOWER)


@pytest.fixture
def ws(engine, world):
    return bearer(engine, "ws.analyst", P.WIRESCO)


@pytest.fixture
def auditor(engine, world):
    return bearer(engine, "the.auditor", None)


def entries(client, headers, **params) -> list[dict]:
    """Every entry `headers` may read, newest first, walking the pages."""
    found, cursor = [], None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        answer = client.get("/api/v1/access-log", headers=headers, params=query)
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return found


def expected_counts(items: list[dict]) -> tuple[int, int, list[str]]:
    shared = [i for i in items if i["access"] == "mp141"]
    return len(items), len(shared), sorted({i["device_id"] for i in shared if i["device_id"]})


def counts_of(entry: dict) -> tuple[int, int, list[str]]:
    return entry["records_returned"], entry["mp141_records_returned"], entry["device_ids"]


def test_every_record_route_writes_one_entry_with_what_it_returned(client, np, auditor):
    search = client.get(f"/api/v1/records?device_id={P.ESME_1}&limit=1000", headers=np).json()
    visible = search["items"]
    one = visible[0]["id"]
    assert any(i["access"] == "mp141" for i in visible)
    routes = [
        ("search", f"/api/v1/records?device_id={P.ESME_1}&limit=1000"),
        ("search", "/api/v1/records?scope=others"),
        ("record", f"/api/v1/records/{one}"),
        ("why", f"/api/v1/records/{one}/why"),
        ("triggers", f"/api/v1/records/{one}/triggers"),
        ("report", "/api/v1/reports/own.csv?from=2024-01-01T00:00:00Z&to=2027-01-01T00:00:00Z"),
    ]
    before = len(entries(client, auditor))
    assert before == 1  # the search above
    for action, path in routes:
        answer = client.get(path, headers=np)
        assert answer.status_code == 200, (path, answer.text)
        written = entries(client, auditor)
        assert len(written) == before + 1, path  # exactly one entry per read
        before += 1
        entry = written[0]
        assert (entry["action"], entry["interface"], entry["actor"], entry["party_id"]) == (
            action,
            "api",
            "np.analyst",
            P.NORTHPOWER,
        ), path
        if action == "search":
            assert counts_of(entry) == expected_counts(answer.json()["items"]), path
        elif action == "record":
            assert counts_of(entry) == expected_counts([answer.json()]), path
            assert entry["filters"] == {"record_id": one}
        elif action == "why":
            assert entry["records_returned"] == 1
        elif action == "triggers":
            shown = [t["record"] for t in answer.json()["items"]]  # never the record itself
            assert counts_of(entry) == expected_counts(shown)
            assert entry["filters"] == {"record_id": one}
        elif action == "report":
            rows = answer.text.strip().splitlines()[1:]
            assert entry["records_returned"] == len(rows) > 0
            assert entry["mp141_records_returned"] == 0 and entry["device_ids"] == []


def test_the_search_entry_keeps_the_filters_as_asked(client, np, auditor):
    asked = {"device_id": P.ESME_1.lower(), "kind": "request", "limit": "7"}
    assert client.get("/api/v1/records", headers=np, params=asked).status_code == 200
    assert entries(client, auditor)[0]["filters"] == asked


def test_an_auditor_sees_no_record_and_every_partys_entries(client, np, ws, auditor, world):
    one = next(iter(world.ids.values()))
    for path in (
        "/api/v1/records",
        f"/api/v1/records/{one}",
        f"/api/v1/records/{one}/why",
        f"/api/v1/records/{one}/triggers",
        "/api/v1/reports/own.csv?from=2024-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
        "/api/v1/watches",
        "/api/v1/watches/1/events",
    ):
        answer = client.get(path, headers=auditor)
        assert answer.status_code == 403, path
        assert "records" not in answer.text.lower() or "never SAT records" in answer.text
    assert entries(client, auditor) == []  # a refusal reads nothing, so logs nothing
    # the logs' checkpoints and verifier keys hold no record: an auditor checks entries by them
    published = client.get("/api/v1/logs", headers=auditor)
    assert published.status_code == 200 and published.json()["verifier_key"]
    client.get("/api/v1/records", headers=np)
    client.get("/api/v1/records", headers=ws)
    everyone = entries(client, auditor)
    assert {e["party_id"] for e in everyone} == {P.NORTHPOWER, P.WIRESCO}
    only_ws = entries(client, auditor, party_id=P.WIRESCO)
    assert [e["party_id"] for e in only_ws] == [P.WIRESCO]


def test_an_auditor_is_refused_a_record_endpoint_whatever_it_asks(client, auditor, world):
    """SPEC 8: "403 on every record endpoint". A parameter the route does not take (the
    access log's `party_id`, the one an auditor would try) was a 422 first (audit 42d)."""
    one = next(iter(world.ids.values()))
    for path in (
        f"/api/v1/records?party_id={P.NORTHPOWER}",
        f"/api/v1/records/{one}?foo=1",
        f"/api/v1/records/{one}/why?x=1",
        f"/api/v1/records/{one}/proof?x=1",
        "/api/v1/reports/own.csv?x=1",
        "/api/v1/watches?x=1",
        "/api/v1/watches/1/events?x=1",
    ):
        answer = client.get(path, headers=auditor)
        assert answer.status_code == 403, (path, answer.text)
    # for an account that may read the route, an unknown parameter is still a 422
    assert client.get("/api/v1/access-log?foo=1", headers=auditor).status_code == 422


def test_a_party_never_sees_another_partys_entries(client, np, ws, world):
    client.get("/api/v1/records", headers=np)
    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=ws)
    mine = entries(client, ws)
    assert [e["party_id"] for e in mine] == [P.WIRESCO]
    # asking for another Party's entries gives one's own, never theirs
    assert entries(client, ws, party_id=P.NORTHPOWER) == mine
    assert [e["actor"] for e in entries(client, np)] == ["np.analyst"]


def test_access_log_pages_newest_first_by_keyset(client, np):
    for _ in range(5):
        client.get("/api/v1/records?limit=1", headers=np)
    first = client.get("/api/v1/access-log?limit=2", headers=np).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    walked = entries(client, np)
    assert len(walked) == 5
    assert [e["id"] for e in walked] == sorted((e["id"] for e in walked), reverse=True)
    assert [e["id"] for e in first["items"]] == [e["id"] for e in walked[:2]]
    later = entries(client, np, **{"from": walked[2]["at"]})
    assert [e["id"] for e in later] == [e["id"] for e in walked[:3]]
    earlier = entries(client, np, to=walked[2]["at"])
    assert [e["id"] for e in earlier] == [e["id"] for e in walked[3:]]


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-01"}, "to"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"from": "2025-02-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "to"),
        ({"party_id": "P" * 200}, "party_id"),
        ({"party_id": "NOSUCHPARTY"}, "party_id"),  # a typo read as "nobody looked"
        ({"party_id": "northpower"}, "party_id"),
    ],
)
def test_bad_access_log_parameters_are_422_naming_them(client, auditor, params, parameter):
    answer = client.get("/api/v1/access-log", headers=auditor, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == parameter


def test_a_party_id_in_lower_case_is_told_the_one_registered(client, auditor, np):
    """Audit 60f: an auditor's `party_id=northpower` was "no such Party in the store", read
    as a Party the store lacks. Party ids are upper case (SPEC section 4) and an auditor may
    see every Party's name: still a 422, which says the one it meant. A Party the store does
    not hold in any case is told no more; a Party's account reads its own entries, whatever
    it asks for, as before."""
    for typed in ("northpower", "NorthPower"):
        said = client.get("/api/v1/access-log", headers=auditor, params={"party_id": typed})
        assert said.status_code == 422 and said.json()["parameter"] == "party_id", said.text
        assert "party ids are upper case: did you mean NORTHPOWER?" in said.text
    nobody = client.get("/api/v1/access-log", headers=auditor, params={"party_id": "nobody"})
    assert nobody.status_code == 422 and "did you mean" not in nobody.text
    own = client.get("/api/v1/access-log", headers=np, params={"party_id": "wiresco"})
    assert own.status_code == 200, own.text


@ON_SQLITE_ALONE
def test_the_access_log_needs_a_token(client):
    assert client.get("/api/v1/access-log").status_code == 401


def test_a_value_padded_past_the_bound_is_kept_as_the_search_read_it(client, np, auditor):
    """520 spaces before a Device ID or a Request ID: the search strips them and finds the
    records, and the entry, cut at 512 characters from the start, kept the spaces alone
    (audit 24b)."""
    padded = " " * 520 + P.ESME_1
    answer = client.get(
        "/api/v1/records",
        headers=np,
        params={"device_id": padded, "from": " " * 600 + "2020-01-01T00:00:00Z"},
    )
    assert answer.status_code == 200 and answer.json()["items"], answer.text
    (entry,) = entries(client, auditor)
    assert entry["filters"]["device_id"] == P.ESME_1
    assert entry["filters"]["from"] == "2020-01-01T00:00:00Z"
    assert entry["records_returned"] == len(answer.json()["items"])


def test_hostile_filters_are_refused_before_any_read_or_stored_safely(client, np, auditor):
    # a NUL in any parameter is refused at the door (web.query_guard), before any read
    nul = client.get("/api/v1/records", headers=np, params={"p00": "a\x00b"})
    assert nul.status_code == 422 and nul.json()["parameter"] == "p00"
    # so is a parameter the search does not take (the screen's bound on how many are kept:
    # tests/access/test_screen_and_cli_access_log.py)
    params = {f"p{n:02d}": "x" for n in range(MAX_FILTERS + 10)} | {"device_id": P.ESME_1}
    unknown = client.get("/api/v1/records", headers=np, params=params)
    assert unknown.status_code == 422 and unknown.json()["parameter"] == "p00"
    assert entries(client, auditor) == []
    # as is SRV text with a direction override or bytes that are not UTF-8 (audit 42e)
    for unreadable in (
        "\u202e",
        "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    ):
        refused = client.get("/api/v1/records", headers=np, params={"srv": unreadable})
        assert refused.status_code == 422 and refused.json()["parameter"] == "srv"
    assert entries(client, auditor) == []
    answer = client.get("/api/v1/records", headers=np, params={"srv": "\U0001f4a3e\u0301"})
    assert answer.status_code == 200, answer.text
    stored = entries(client, auditor)[0]["filters"]["srv"]
    assert stored == "\U0001f4a3\u00e9"  # NFC


def test_a_record_one_may_not_see_is_logged_as_nothing_returned(client, np, auditor, world):
    hidden = world.ids  # LOOKER's own requests are not NORTHPOWER's to see
    lk_only = [
        record_id
        for name, record_id in hidden.items()
        if world.records[name].user_id == P.LK_OU and not world.records[name].device_id
    ]
    assert lk_only
    assert client.get(f"/api/v1/records/{lk_only[0]}", headers=np).status_code == 404
    entry = entries(client, auditor)[0]
    assert (entry["action"], entry["records_returned"]) == ("record", 0)


def test_a_proof_writes_one_entry_with_the_record_it_proves(client, engine, np, auditor):
    from servicetrail.store.merkle_log import seal_store

    seal_store(engine)
    search = client.get(f"/api/v1/records?device_id={P.ESME_1}&limit=1000", headers=np).json()
    shared = next(i for i in search["items"] if i["access"] == "mp141")
    before = len(entries(client, auditor))
    answer = client.get(f"/api/v1/records/{shared['id']}/proof", headers=np)
    assert answer.status_code == 200, answer.text
    written = entries(client, auditor)
    assert len(written) == before + 1
    entry = written[0]
    assert (entry["action"], entry["interface"], entry["actor"]) == ("proof", "api", "np.analyst")
    assert counts_of(entry) == expected_counts([shared])
    assert entry["filters"] == {"record_id": shared["id"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reports/own.csv?from=2024-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
        "/api/v1/records?scope=own&limit=1000",
    ],
)
def test_an_entry_counts_what_was_sent_while_an_ingest_stores_more(
    client, np, auditor, lands_after_the_first_read, path
):
    """SPEC section 8: records_returned is what the answer holds. A report was counted in
    one transaction and read in another: a record stored between was sent uncounted."""

    def rows(answer) -> int:
        if path.startswith("/api/v1/reports"):
            return len(answer.text.strip().splitlines()) - 1
        return len(answer.json()["items"])

    answer = client.get(path, headers=np)
    assert answer.status_code == 200 and lands_after_the_first_read == [1]
    assert entries(client, auditor)[0]["records_returned"] == rows(answer)
    again = client.get(path, headers=np)
    assert LATE_REQUEST_ID in again.text  # it landed, whichever answer had it
    assert entries(client, auditor)[0]["records_returned"] == rows(again)


def test_an_access_logs_consistency_proofs_are_an_auditors_only(client, engine, np, ws, auditor):
    """An access-log leaf is the entry's JSON (SPEC section 8), which commits to no secret:
    given the hashes of a consistency proof, one Party confirmed guesses of another's entries
    (which Device its analyst looked at, how many records came back) in seconds."""
    import base64

    from servicetrail.store.merkle_log import seal_store

    def access_checkpoint() -> tuple[str, int, bytes]:
        seal_store(engine)
        listing = client.get("/api/v1/logs", headers=auditor).json()
        (log,) = [log for log in listing["logs"] if "/access/" in log["origin"]]
        return rfc9162.check_checkpoint(log["checkpoint"], listing["verifier_key"])

    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=np)
    origin, old_size, old_root = access_checkpoint()
    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=ws)
    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=np)
    _, new_size, new_root = access_checkpoint()
    asked = {"origin": origin, "from": old_size, "to": new_size}
    for party in (np, ws):
        for sizes in (asked, dict(asked, **{"from": 1})):
            refused = client.get("/api/v1/logs/consistency", params=sizes, headers=party)
            assert refused.status_code == 403
            assert refused.json()["error"] == "forbidden"
            assert "for auditors" in refused.json()["message"]
    given = client.get("/api/v1/logs/consistency", params=asked, headers=auditor)
    assert given.status_code == 200
    proof = [base64.b64decode(h) for h in given.json()["proof"]]
    assert rfc9162.rfc_consistency_ok(old_size, new_size, old_root, new_root, proof)
    # a size that is no checkpoint's, or a month with no access log, answers as one that is:
    # a 422 against a 403 let a Party list every checkpoint's size, step by step (audit 21c)
    elsewhere = origin[: -len("YYYY-MM")] + "1999-01"
    for guess in ({"to": new_size + 1}, {"to": new_size + 7}, {"origin": elsewhere}):
        refused = client.get("/api/v1/logs/consistency", params=dict(asked, **guess), headers=np)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_an_access_logs_checkpoints_are_an_auditors_only(client, engine, np, ws, auditor):
    """The root of an access log of three entries, two of them its own, let a Party test
    guesses of the third, another Party's read of a record, until one matched (audit,
    session 19: 90 s). A Party's listing holds the trail's logs only."""
    from servicetrail.store.merkle_log import seal_store

    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=np)
    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=ws)
    client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=np)
    seal_store(engine)
    for party in (np, ws):
        origins = [
            log["origin"] for log in client.get("/api/v1/logs", headers=party).json()["logs"]
        ]
        assert origins and not [o for o in origins if "/access/" in o], origins
    audited = [log["origin"] for log in client.get("/api/v1/logs", headers=auditor).json()["logs"]]
    assert [o for o in audited if "/access/" in o] and set(origins) < set(audited)
