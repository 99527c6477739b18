"""The watches API (SPEC section 6) on both engines: create, list, delete, the events page,
titles only, another Party's 404, and hostile input."""

from __future__ import annotations

import json

import socket
import threading
import time
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import event, text, update

from servicetrail import settings
from servicetrail.store.watch_tables import watch as watch_table
from servicetrail.store.watch_tables import webhook_outbox
from servicetrail.web.app import create_app
from servicetrail.webhooks import outbound
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.live_server import TLS_CONTEXT, LiveServer
from tests.web.watch_traffic import ingest_and_match, lk_request


@pytest.fixture
def south(bearer):
    return bearer(P.SOUTHENERGY)


@pytest.fixture
def wires(bearer):
    return bearer(P.WIRESCO)


def test_create_list_events_delete(client, engine, south) -> None:
    made = client.post("/api/v1/watches", json={"name": "others on my meters"}, headers=south)
    assert made.status_code == 201, made.text
    watch = made.json()
    assert watch == {
        "id": watch["id"],
        "name": "others on my meters",
        "devices": "mine",
        "srvs": "all",
        "kinds": ["request"],
        "senders": "others",
        "webhook": None,
    }
    assert client.get("/api/v1/watches", headers=south).json() == {"items": [watch]}
    ingest_and_match(engine, lk_request(1), lk_request(2))
    page = client.get(f"/api/v1/watches/{watch['id']}/events", headers=south).json()
    assert [e["event_id"] for e in page["events"]] == [1, 2] and page["next_after"] == 2
    assert all("payload" not in e["record"] for e in page["events"])
    assert client.get(f"/api/v1/watches/{watch['id']}/events?after=2", headers=south).json() == {
        "events": [],
        "next_after": None,
    }
    one = client.get(f"/api/v1/watches/{watch['id']}/events?after=0&limit=1", headers=south).json()
    assert [e["event_id"] for e in one["events"]] == [1] and one["next_after"] == 1
    assert client.delete(f"/api/v1/watches/{watch['id']}", headers=south).status_code == 204
    assert client.get(f"/api/v1/watches/{watch['id']}/events", headers=south).status_code == 404
    assert client.get("/api/v1/watches", headers=south).json() == {"items": []}


def test_the_201_answer_is_the_watch_as_posted(client, south) -> None:
    """SPEC section 6: "Answers 201 with the watch": lists in the order posted, not sorted."""
    posted = {
        "name": "out of order",
        "devices": [P.GSME_1, P.ESME_1],
        "srvs": ["11.2", "1.1.1", "4.1.1"],
        "kinds": ["response", "request"],
        "senders": "all",
        "webhook": None,
    }
    made = client.post("/api/v1/watches", json=posted, headers=south)
    assert made.status_code == 201, made.text
    assert made.json() == {"id": made.json()["id"], **posted}
    assert client.get("/api/v1/watches", headers=south).json()["items"] == [made.json()]


def test_another_partys_watch_is_404_everywhere(client, engine, south, wires) -> None:
    watch = client.post("/api/v1/watches", json={"name": "x"}, headers=south).json()
    assert client.get(f"/api/v1/watches/{watch['id']}/events", headers=wires).status_code == 404
    assert client.delete(f"/api/v1/watches/{watch['id']}", headers=wires).status_code == 404
    assert client.get("/api/v1/watches", headers=wires).json() == {"items": []}
    for missing in ("999999", "0", "-1", "1e3", "٣", "9" * 30):
        assert client.get(f"/api/v1/watches/{missing}/events", headers=south).status_code == 404
    assert client.get("/api/v1/watches").status_code == 401


@pytest.mark.parametrize(
    "body, parameter",
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\u202eb"}, "name"),  # a bidi override: the name would read backwards
        ({"name": "a\x00b"}, "name"),
        ({"name": "Z" + "\u0301" * 120}, "name"),  # drew over the watch list (session 18)
        ({"name": "Z" + ("\u0301" * 4 + "\u034f") * 30}, "name"),  # the joiner reset the count
        ({"name": "x", "webhook": {"url": "https://[fe80::1%25eth0]/hook"}}, "webhook.url"),
        ({"name": "x", "devices": "all"}, "devices"),
        ({"name": "x", "devices": ["not-a-device"]}, "devices"),
        ({"name": "x", "devices": []}, "devices"),
        ({"name": "x", "devices": ["00-DB-12-34-56-78-90-01"] * 1001}, "devices"),
        ({"name": "x", "srvs": ["4.1.1; DROP TABLE watch"]}, "srvs"),
        ({"name": "x", "srvs": ["000000000000"]}, "srvs"),  # an SRV's characters, not its form
        ({"name": "x", "srvs": "none"}, "srvs"),
        ({"name": "x", "kinds": ["alert"]}, "kinds"),
        ({"name": "x", "kinds": "request"}, "kinds"),
        ({"name": "x", "senders": "me"}, "senders"),
        # null is allowed for webhook alone; the others' defaults are for leaving them out
        ({"name": "x", "devices": None}, "devices"),
        ({"name": "x", "srvs": None}, "srvs"),
        ({"name": "x", "kinds": None}, "kinds"),
        ({"name": "x", "senders": None}, "senders"),
        ({"name": "x", "webhook": "https://example.org"}, "webhook"),
        ({"name": "x", "webhook": {"url": "http://example.org/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://127.0.0.1/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://10.1.2.3/hook"}}, "webhook.url"),
        (
            {"name": "x", "webhook": {"url": "https://169.254.169.254/latest/meta-data"}},
            "webhook.url",
        ),
        ({"name": "x", "webhook": {"url": "https://[::1]/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://[::ffff:127.0.0.1]/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://2130706433/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://localhost/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "https://user:pw@example.org/hook"}}, "webhook.url"),
        ({"name": "x", "webhook": {"url": "file:///etc/passwd"}}, "webhook.url"),
        ({"name": "x", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
@ON_SQLITE_ALONE
def test_bad_watches_are_422_naming_the_field(client, south, body, parameter, monkeypatch) -> None:
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()
    answer = client.post("/api/v1/watches", json=body, headers=south)
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == parameter


def test_the_documented_watch_body_is_the_one_the_api_takes(client, south) -> None:
    """The document capped kinds at five, which the API does not, and allowed fields the API
    refuses (review 25e): a client built from it sent what was refused, or refused what
    would be taken."""
    document = client.get("/openapi.json").json()
    body = document["paths"]["/api/v1/watches"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert "maxItems" not in schema["properties"]["kinds"]
    extra = client.post("/api/v1/watches", headers=south, json={"name": "x", "colour": "red"})
    assert extra.status_code == 422
    repeated = {"name": "six kinds", "kinds": ["request"] * 6, "senders": "all"}
    assert client.post("/api/v1/watches", headers=south, json=repeated).status_code == 201


@ON_SQLITE_ALONE
def test_a_body_that_is_not_json_is_422(client, south) -> None:
    assert (
        client.post("/api/v1/watches", content=b"{nope", headers=south).json()["parameter"]
        == "body"
    )


def test_a_body_over_a_watchs_limit_is_413_as_one_over_the_servers_is(client, south) -> None:
    """It was a 422 naming a `body` parameter, where a body over the server's limit is a 413
    (audit 67b): declared, or sent in pieces that declare no length."""
    huge = b'{"name": "' + b"x" * (300 * 1024) + b'"}'

    def pieces():
        yield huge[:1000]
        yield huge[1000:]

    for body in (huge, pieces()):
        answer = client.post("/api/v1/watches", content=body, headers=south)
        assert answer.status_code == 413, answer.text
        assert answer.json() == {
            "error": "request_body_too_large",
            "message": "the request body is larger than 256 KiB, a watch's limit",
        }
    assert client.get("/api/v1/watches", headers=south).json()["items"] == []


@pytest.mark.parametrize(
    "body, said",
    [
        (b"{nope", "must be a JSON object; it is not JSON (unexpected character"),
        (b'{"name": "\xff"}', "is not UTF-8 text (byte 11)"),
        (b"[" * 100_000 + b"]" * 100_000, "must be a JSON object; it is not JSON ("),
    ],
)
@ON_SQLITE_ALONE
def test_a_body_that_is_not_json_says_why(client, south, body: bytes, said: str) -> None:
    """Invalid UTF-8 and nesting past the parser's depth were 'must be a JSON object' (35c)."""
    answer = client.post("/api/v1/watches", content=body, headers=south)
    assert answer.status_code == 422
    assert answer.json()["parameter"] == "body"
    assert said in answer.json()["message"]


@ON_SQLITE_ALONE
def test_a_body_after_a_byte_order_mark_is_read(client, south) -> None:
    body = b"\xef\xbb\xbf" + json.dumps({"name": "bom"}).encode()
    answer = client.post("/api/v1/watches", content=body, headers=south)
    assert (answer.status_code, answer.json()["name"]) == (201, "bom")


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=" + "9" * 25, "after"),
    ],
)
@ON_SQLITE_ALONE
def test_bad_event_parameters_are_422(client, south, query, parameter) -> None:
    watch = client.post("/api/v1/watches", json={"name": "x"}, headers=south).json()
    answer = client.get(f"/api/v1/watches/{watch['id']}/events?{query}", headers=south)
    assert answer.status_code == 422 and answer.json()["parameter"] == parameter
    if query.startswith("after=99"):  # its reason: it was "must be a whole number" (43a)
        assert "too large" in answer.json()["message"]


def hooked_watch(client, south, monkeypatch) -> dict:
    """SOUTHENERGY's new watch with a webhook to a loopback port, as its POST answered it."""
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    return client.post(
        "/api/v1/watches",
        json={"name": "hook", "webhook": {"url": "http://127.0.0.1:9/h"}},
        headers=south,
    ).json()


def test_a_webhook_secret_is_shown_once(client, south, monkeypatch) -> None:
    made = hooked_watch(client, south, monkeypatch)
    assert made["webhook"]["url"] == "http://127.0.0.1:9/h" and made["webhook"][
        "secret"
    ].startswith("whsec_")
    listed = client.get("/api/v1/watches", headers=south).json()["items"][0]
    assert listed["webhook"] == {"url": "http://127.0.0.1:9/h"}  # the watch without its secret
    assert made["webhook"]["secret"] not in client.get("/api/v1/watches", headers=south).text


def test_watches_naming_hosts_whose_dns_hangs_hold_only_the_partys_share(
    engine, world, bearer, use_settings, monkeypatch
) -> None:
    """Creating a watch resolves its webhook's name on a thread of the server. A Party that
    names hosts whose DNS never answers holds one of its requests in flight for each (429
    past its bound), not the server's threads; another Party is answered at once: while
    those names still hang, which is told by the order of events, not by a second of wall a
    loaded machine could take to answer at all (session 52)."""
    use_settings(SERVICETRAIL_PARTY_REQUESTS=2)
    real = socket.getaddrinfo
    resolving: list[str] = []
    released = threading.Event()

    def slow_dns(host, *args, **kwargs):
        if host.endswith(".slow.test"):
            resolving.append(host)
            released.wait(30)
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", slow_dns)
    south, wires = bearer(P.SOUTHENERGY), bearer(P.WIRESCO)
    with LiveServer(create_app(engine)) as live:
        base = f"http://127.0.0.1:{live.port}/api/v1/watches"

        def add(n: int) -> int:
            body = {"name": f"s{n}", "webhook": {"url": f"https://h{n}.slow.test/"}}
            return httpx.post(
                base, json=body, headers=south, timeout=20, verify=TLS_CONTEXT
            ).status_code

        with ThreadPoolExecutor(6) as pool:
            try:
                hanging = [pool.submit(add, n) for n in range(2)]
                deadline = time.monotonic() + 10
                while len(resolving) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)  # each holds its slot while its name resolves
                assert len(resolving) == 2
                refused = pool.submit(add, 9).result()
                other = httpx.get(base, headers=wires, timeout=10, verify=TLS_CONTEXT)
                meanwhile = [f.done() for f in hanging]
            finally:
                released.set()
            made = [f.result() for f in hanging]
    assert refused == 429
    assert other.status_code == 200 and meanwhile == [False, False]
    assert made == [201, 201]  # an https name that does not resolve is taken (checked again later)


@ON_SQLITE_ALONE  # PostgreSQL's readers never wait
def test_a_watchs_backlog_is_deleted_in_short_transactions_on_sqlite(
    client, engine, south, monkeypatch
) -> None:
    """On SQLite a transaction that deletes holds the one write lock, which every Party's read
    waits for to append its access-log entry: a watch's million events deleted in one held it
    4.4 s, and another Party's search waited as long (audit 49d). No statement of the
    deletion, through the API, deletes more than a step of them."""
    monkeypatch.setattr("servicetrail.store.watches.SHED_STEP", 4)
    made = client.post("/api/v1/watches", json={"name": "w"}, headers=south).json()
    ingest_and_match(engine, *(lk_request(n) for n in range(1, 12)))
    deleted: list[int] = []

    def counted(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM WATCH_EVENT"):
            deleted.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", counted)
    try:
        assert client.delete(f"/api/v1/watches/{made['id']}", headers=south).status_code == 204
    finally:
        event.remove(engine, "after_cursor_execute", counted)
    assert sum(deleted) == 11 and max(deleted) <= 4, deleted
    assert client.get(f"/api/v1/watches/{made['id']}/events", headers=south).status_code == 404
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM watch_event")).scalar() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"name": "a", "name": "b"}', "name"),
        (b'{"name" : "a", "devices": "mine", "name" : "b"}', "name"),
        (
            b'{"name": "w", "webhook": {"url": "https://a.example/", "url": "https://b.example/"}}',
            "url",
        ),
        (b'\xef\xbb\xbf{"name": "a", "kinds": ["request"], "kinds": ["response"]}', "kinds"),
    ],
)
@ON_SQLITE_ALONE  # refused before the store
def test_a_field_given_twice_is_422_not_taken_at_its_last(client, south, body, field) -> None:
    """orjson keeps a repeated key's last value: a watch was made of a value the Party may not
    have meant, where a query parameter or a SAT record's field given twice is refused."""
    answer = client.post("/api/v1/watches", content=body, headers=south)
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == "body"
    assert answer.json()["message"] == f'body: the field "{field}" is given twice'
    assert client.get("/api/v1/watches", headers=south).json()["items"] == []


def test_a_webhooks_state_is_read_apart_from_the_watch(client, engine, south, wires, monkeypatch):
    """`watch list` and the Watches page said a webhook failing or turned off; the API did
    not (audit 57h). The watch keeps the fields SPEC section 6 names, in the list as when
    made; its webhook's state is `GET /api/v1/watches/{id}/webhook`, the Party's own only."""
    made = hooked_watch(client, south, monkeypatch)
    plain = client.post("/api/v1/watches", json={"name": "plain"}, headers=south).json()
    state = f"/api/v1/watches/{made['id']}/webhook"
    assert client.get(state, headers=south).json() == {
        "url": "http://127.0.0.1:9/h",
        "enabled": True,
        "disabled_reason": None,
        "failing": None,
    }
    now = datetime(2025, 5, 1, tzinfo=timezone.utc)
    ingest_and_match(engine, lk_request(41))  # its event's delivery, failed three times
    with engine.begin() as conn:
        conn.execute(
            update(webhook_outbox)
            .where(webhook_outbox.c.watch_id == made["id"])
            .values(attempts=3, next_attempt_at=now, last_error="answered 503")
        )
    failing = client.get(state, headers=south).json()["failing"]
    assert failing == {"waiting": 1, "at_least": False, "attempts": 3, "last_error": "answered 503"}
    with engine.begin() as conn:
        conn.execute(
            update(watch_table)
            .where(watch_table.c.id == made["id"])
            .values(webhook_disabled_at=now, webhook_disabled_reason="the receiver answered 410")
        )
    off = client.get(state, headers=south).json()
    assert off["enabled"] is False and off["disabled_reason"] == "the receiver answered 410"
    # the watch itself is as SPEC names it, in the list as when made
    listed = client.get("/api/v1/watches", headers=south).json()["items"]
    assert listed[0]["webhook"] == {"url": "http://127.0.0.1:9/h"}
    # another Party's watch is no such watch, as a missing one; a watch without a webhook says so
    for other in (
        client.get(state, headers=wires),
        client.get("/api/v1/watches/99999/webhook", headers=south),
    ):
        assert other.status_code == 404 and other.json()["message"] == "no such watch"
    bare = client.get(f"/api/v1/watches/{plain['id']}/webhook", headers=south)
    assert bare.status_code == 404 and bare.json()["message"] == "this watch has no webhook"
    assert client.get("/api/v1/watches/x/webhook", headers=south).status_code == 404


def test_a_watch_is_read_by_its_id_as_one_item_of_the_list(client, south, wires, monkeypatch):
    """A client that DELETEs a watch by its id GETs it by its id too (audit 57k): the item
    of the list, its webhook's secret never again; HEAD answers as the GET; another Party's
    watch and a deleted one are no such watch."""
    made = hooked_watch(client, south, monkeypatch)
    posted = {
        "name": "plain",
        "devices": [P.GSME_1],
        "srvs": ["11.2", "4.1.1"],
        "kinds": ["response"],
    }
    plain = client.post("/api/v1/watches", json=posted, headers=south).json()
    for item in client.get("/api/v1/watches", headers=south).json()["items"]:
        one = client.get(f"/api/v1/watches/{item['id']}", headers=south)
        assert one.status_code == 200 and one.json() == item
        head = client.head(f"/api/v1/watches/{item['id']}", headers=south)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(one.content))
    hooked = client.get(f"/api/v1/watches/{made['id']}", headers=south)
    assert hooked.json() == {**made, "webhook": {"url": made["webhook"]["url"]}}
    assert made["webhook"]["secret"] not in hooked.text
    assert client.get(f"/api/v1/watches/{plain['id']}", headers=south).json() == {
        "id": plain["id"], **posted, "senders": "others", "webhook": None
    }  # fmt: skip
    theirs = client.get(f"/api/v1/watches/{made['id']}", headers=wires)
    assert theirs.status_code == 404 and theirs.json()["message"] == "no such watch"
    assert client.delete(f"/api/v1/watches/{plain['id']}", headers=south).status_code == 204
    gone = client.get(f"/api/v1/watches/{plain['id']}", headers=south)
    assert (gone.status_code, gone.json()) == (404, theirs.json())
    assert client.get(f"/api/v1/watches/{made['id']}").status_code == 401
