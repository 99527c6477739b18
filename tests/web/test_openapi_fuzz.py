"""Schemathesis over /openapi.json: generated requests, valid and not, never get a 5xx and every
response matches the documented schema.

Driven through each operation's Hypothesis strategy (schemathesis's own pytest plugin does
not run under pytest 9). The fuzzer's Party, SOUTHENERGY, reads a sealed store of the persona
world with watches of its own: each operation is first asked the requests aimed at what it
holds (its own records, MP141 titles of others', records the rule hides, its watches, a log's
checkpoints), then drawn ones. Drawn alone, a record's id (then any string) never named a record:
a wrong type in /why's answer and a 500 for rule-3 records went uncaught (62c). A watch's
event stream is read as a client that leaves soon reads it (`ShortReads`); the deletes aim at
watches of their own, and no drawn one names a watch the other operations aim at."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import orjson
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth

from servicetrail.domain.ids import positive_id, stacked_marks
from servicetrail.domain.search import hidden_past_the_bmp
from servicetrail.domain.watches import watch_spec
from servicetrail.store.access_writer import ACCESS_FAMILY
from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import open_store
from servicetrail.store.log_tree import latest_checkpoints
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.watch_tables import webhook_outbox
from servicetrail.store.watches import create_watch
from servicetrail.web.app import create_app
from servicetrail.web.event_streams import SSE_TYPE
from servicetrail.webhooks.signing import new_secret
from tests import personas as P
from tests.conftest import ENGINES, sqlite_store_from
from tests.live_server import PATIENCE
from tests.web.watch_traffic import ingest_and_match, lk_request

STREAM = "GET /api/v1/watches/{watch_id}/stream"
DELETE = "DELETE /api/v1/watches/{watch_id}"
OPERATIONS = [
    "GET /api/v1/records",
    "GET /api/v1/records/{record_id}",
    "GET /api/v1/records/{record_id}/why",
    "GET /api/v1/reports/own.csv",
    "GET /api/v1/records/{record_id}/triggers",
    "GET /api/v1/records/{record_id}/proof",
    "GET /api/v1/logs",
    "GET /api/v1/logs/consistency",
    "GET /api/v1/access-log",
    "POST /api/v1/watches",  # its body's schema named a definition the document did not hold
    "GET /api/v1/watches",
    "GET /api/v1/watches/{watch_id}",
    "GET /api/v1/watches/{watch_id}/webhook",
    "GET /api/v1/watches/{watch_id}/events",
    STREAM,
    DELETE,  # last, in the file's order; in any order, no drawn delete names an aimed watch
]

# The records aimed at, as SOUTHENERGY sees them: its own (rule 1), MP141 titles of others'
# (rule 3; one logged at the very start of its Responsibility), a request the rule hides (it
# was NORTHPOWER's period) and an alert to another User (rule 2)
AIMED_RECORDS = ("se_req", "se_resp", "sx_resp", "lk_cos_resp", "np_req", "np_dcc_alert")

# Every operation's one header, the token, is given to its strategy, not drawn: each request
# is sent with the fuzzer's own token, which replaced a drawn one on the wire (drawing it was
# a third of the CPU of drawing a search's parameters). An operation without parameters is
# then one request whatever is drawn: 80 examples of GET /logs sent it 80 times.
TOKEN_GIVEN = {"Authorization": "Bearer the-fuzzer-s-own-at-each-request"}
EXAMPLES, EXAMPLES_OF_ONE_REQUEST = 80, 1
# How long a drawn request's stream is read when no event comes (its `after` past the last, a
# watch made by the fuzz's POSTs): wall time, no CPU (the stream sleeps its 1-s poll). One cut
# before its first page is read is framed all the same.
DRAWN_STREAM_READ = 0.1
# What the aimed requests of these two must answer: the fuzzer's two watches, another
# Party's; the two watches to delete, another Party's, the first deleted again
AIMED_ANSWERS = {STREAM: [200, 200, 404], DELETE: [204, 204, 404, 404]}


@dataclass
class Fuzzed:
    """A store an engine for the whole module, and what its requests aim at: each
    operation's explicit requests (the parts schemathesis is given), and the parts of each
    aimed strategy (the rest drawn)."""

    app: ShortReads
    token: str
    spared: set[int]  # the watches the other operations aim at, which no delete names
    aimed: dict[str, list[dict[str, Any]]]
    aimed_strategies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class ShortReads:
    """The app, its event streams read by a client that reads a little: until the first piece
    carrying events, or `patience` seconds of none; then it leaves (the stream learns it as
    from a server, receive's `http.disconnect`), and what it read is the answer. An endless
    stream was otherwise read until schemathesis's timeout. Other answers pass as they are.
    One an app: schemathesis starts an app's lifespan once and keeps it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.patience = float(PATIENCE)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        left = anyio.Event()
        streaming = ended = False

        async def leave_later() -> None:
            await anyio.sleep(self.patience)
            left.set()

        async def sent(message: dict[str, Any]) -> None:
            nonlocal streaming, ended
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                streaming = content_type.startswith(SSE_TYPE.encode())
                if streaming:
                    group.start_soon(leave_later)
            elif streaming:
                if left.is_set():
                    return  # sent after the client left: never read
                ended = not message.get("more_body", False)
                if b"\ndata: " in message.get("body", b""):
                    left.set()
            await send(message)

        async def received() -> dict[str, Any]:
            if left.is_set():
                return {"type": "http.disconnect"}
            got = {"type": "http.disconnect"}
            async with anyio.create_task_group() as race:

                async def inner() -> None:
                    nonlocal got
                    got = await receive()
                    race.cancel_scope.cancel()

                race.start_soon(inner)
                await left.wait()
                race.cancel_scope.cancel()
            return got

        async with anyio.create_task_group() as group:
            await self.app(scope, received, sent)
            group.cancel_scope.cancel()
        if streaming and not ended:  # the body as far as it was read
            await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class Shared:
    """The document both engines' apps serve, read once a module, and each operation's
    drawn strategy; each request is sent to its own engine's app (`app=`: an operation
    keeps the app it was read from)."""

    schema: Any = None
    strategies: dict[str, Any] = field(default_factory=dict)

    def operation(self, label: str, app: ShortReads) -> Any:
        if self.schema is None:
            self.schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            # schemathesis's 10 s a request (in process) was passed at load 15 by a 404 for an
            # id not in digits, which takes 8 ms median and 55 ms the most of 200 at load 11
            # (61g): the load
            self.schema.config.update(request_timeout=PATIENCE)
        operations = {op.ok().label: op.ok() for op in self.schema.get_all_operations()}
        assert set(OPERATIONS) <= set(operations), sorted(operations)
        return operations[label]


@pytest.fixture(scope="module")
def shared() -> Shared:
    return Shared()


@pytest.fixture(scope="module", params=ENGINES)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """The persona world, the fuzzer's account, watches with events, sealed: one store an
    engine for every operation (a store, an app and the document of its own took each test
    0.1-0.45 s). The fuzz reads it, each read adding to the access log, and adds watches
    (POST), on which no aim depends."""
    server = None
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_personas_template")
        url = sqlite_store_from(template, tmp_path_factory.mktemp("fuzz"))
    else:
        server = request.getfixturevalue("pg_server")
        url = server.new_database(template=request.getfixturevalue("pg_personas_template"))
    P.cloned_with_personas(url)
    engine = open_store(url)
    try:
        world = P.load_personas(engine)
        with engine.begin() as conn:
            create_account(conn, "fuzzer", P.SOUTHENERGY, "correct horse battery staple")
            token = create_token(conn, "fuzzer")
        watches, doomed = some_watches(engine)
        seal_store(engine)  # each month's log a checkpoint: proofs, consistency proofs
        with engine.connect() as conn:
            logs = [c for c in latest_checkpoints(conn) if c.family != ACCESS_FAMILY]
        app = ShortReads(create_app(engine))
        yield Fuzzed(app, token, set(watches), *aims(world, watches, doomed, logs))
    finally:
        engine.dispose()
        P.forget_the_personas(url)
        if server is not None:
            server.drop_database(url)


def some_watches(engine) -> tuple[list[int], list[int]]:
    """Two watches of the fuzzer's Party (the first's webhook failing), each with events, and
    one of another Party's; then two of the fuzzer's to delete, alike; their ids. A fresh
    store's: 1 to 3, the small ids that a watch id's strategy draws most (1 is its minimum),
    so that drawn requests find them too."""
    with engine.begin() as conn:
        hooked = {"name": "hooked", "webhook": {"url": "https://hooks.example/x"}}
        made = [
            create_watch(conn, P.SOUTHENERGY, watch_spec(hooked), new_secret()),
            create_watch(conn, P.SOUTHENERGY, watch_spec({"name": "plain"}), None),
            create_watch(conn, P.NORTHPOWER, watch_spec({"name": "theirs"}), None),
            create_watch(conn, P.SOUTHENERGY, watch_spec(hooked), new_secret()),
            create_watch(conn, P.SOUTHENERGY, watch_spec({"name": "plain"}), None),
        ]
    ingest_and_match(engine, lk_request(1), lk_request(2))
    with engine.begin() as conn:
        conn.execute(update(webhook_outbox).values(attempts=3, last_error="answered 503"))
    ids = [watch["id"] for watch in made]
    return ids[:3], ids[3:]


def aims(
    world: P.World, watches: list[int], doomed: list[int], logs: list[Any]
) -> tuple[dict, dict]:
    """Each operation's explicit requests, and the fixed parts of its aimed strategies."""
    records = [world.ids[name] for name in AIMED_RECORDS] + [max(world.ids.values()) + 1_000]
    by_record = [{"path_parameters": {"record_id": str(n)}} for n in records]
    by_watch = [{"path_parameters": {"watch_id": n}} for n in watches]
    by_log = [{"query": {"origin": c.origin, "to": c.size}} for c in logs]
    explicit = {
        "GET /api/v1/records": [{"query": {"device_id": P.ESME_1}}, {}],
        "GET /api/v1/reports/own.csv": [{"query": {"from": "2025-01-01", "to": "2025-04-02"}}],
        "GET /api/v1/logs/consistency": [
            {"query": {**log["query"], "from": n}} for log in by_log for n in (1, 2)
        ],
        "POST /api/v1/watches": [{"body": {"name": "aimed"}, "media_type": "application/json"}],
    }
    for label in OPERATIONS:
        if "{record_id}" in label:
            explicit[label] = by_record
        elif "{watch_id}" in label:
            explicit[label] = by_watch
    # its events and pending deliveries with each, another's, the first once it is gone
    explicit[DELETE] = [
        {"path_parameters": {"watch_id": n}} for n in [*doomed, watches[-1], doomed[0]]
    ]
    strategies = {
        "GET /api/v1/records/{record_id}/triggers": by_record,
        "GET /api/v1/watches/{watch_id}/events": by_watch,
        STREAM: by_watch,
        "GET /api/v1/logs/consistency": by_log,
    }
    return explicit, strategies


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_errors_and_matches_its_schema(fuzzed: Fuzzed, shared: Shared, label: str):
    operation = shared.operation(label, fuzzed.app)
    if label not in shared.strategies:
        shared.strategies[label] = operation.as_strategy(headers=TOKEN_GIVEN)
    drawn = shared.strategies[label]
    aimed = [
        operation.as_strategy(headers=TOKEN_GIVEN, **parts)
        for parts in fuzzed.aimed_strategies.get(label, [])
    ]
    if aimed:  # half the draws aimed at what the Party holds, the other parameters drawn
        drawn = st.one_of(drawn, st.one_of(aimed))
    if label == DELETE:  # the watches the other operations aim at are there for them
        drawn = drawn.filter(lambda case: _watch_named(case) not in fuzzed.spared)
    # ignored_auth (is the example sent again without the token, and with a wrong one, refused?)
    # until an answered example has shown it: the token is checked before any parameter is
    # read (web.api), and schemathesis's own runner asks it once an operation for that reason.
    # Asked of every answered example (two more requests each) it was a fifth of the CPU here.
    refuses_without_token: list[bool] = []
    answered: Counter[int] = Counter()
    rules: set[int] = set()
    events_read: list[int] = []

    def check(case) -> int:
        # Rules OpenAPI cannot state: a cursor is opaque (only the server knows which strings it
        # issued), `to` must come after `from` and a consistency proof's `to` be a checkpointed
        # size, and no parameter may hold a NUL (the API's description says so). Such requests
        # may be refused with a 422. Nor can it say that a time, once in UTC, must fall in
        # years 1 to 9999 (`0001-01-01T00:00:00+00:01` is a valid date-time in year 0), nor
        # that a whole number is in the digits 0-9: JSON Schema's integers include `60.0`, which
        # schemathesis draws for one of several alternatives (`limit`'s "" beside it), in a
        # header as its text (`60.0`). Nor, in `srv`, more than four combining marks on a
        # character, or an invisible character past U+FFFF (a pattern may be read in UTF-16
        # code units).
        query = case.query or {}
        beyond_schema = (
            case.method == "POST"  # a watch's printable name, EUI-64s, SRVs and a safe URL
            or query.get("cursor")
            or ("from" in query and "to" in query)
            or any("\x00" in str(value) for value in query.values())
            or any(isinstance(value, float) for value in query.values())
            or _written_as_float((case.headers or {}).get("Last-Event-ID"))
            or any(_outside_utc_years(query.get(bound)) for bound in ("from", "to"))
            or _srv_beyond_pattern(query.get("srv"))
        )
        excluded = [positive_data_acceptance] if beyond_schema else []
        if refuses_without_token:
            excluded.append(ignored_auth)
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {fuzzed.token}"},
            excluded_checks=excluded,
            app=fuzzed.app,
        )
        answered[response.status_code] += 1
        if label == STREAM and response.status_code == 200:
            events_read.append(_events_framed(response, case))
        if label.endswith("/why") and response.status_code == 200:
            rules.add(response.json()["rule"])
        # ignored_auth sends its requests for an answered example whose path is the operation's
        if 200 <= response.status_code < 300 and not (
            case.meta and case.meta.is_negative_at(ParameterLocation.PATH)
        ):
            refuses_without_token.append(True)
        return response.status_code

    fuzzed.app.patience = PATIENCE  # an aimed stream's events are read, however slow its page
    aimed_answers = [check(operation.Case(**parts)) for parts in fuzzed.aimed.get(label, [{}])]
    if label in AIMED_ANSWERS:
        assert aimed_answers == AIMED_ANSWERS[label], label
    if label == STREAM:
        assert all(events_read), events_read  # each of the Party's watches has events
        unasked = operation.Case(**fuzzed.aimed[label][0]).call(app=fuzzed.app)
        assert (unasked.status_code, unasked.json()["error"]) == (401, "unauthorized")
    fuzzed.app.patience = DRAWN_STREAM_READ

    @given(case=drawn)
    @settings(
        max_examples=EXAMPLES
        if operation.path_parameters or operation.query or operation.body
        else EXAMPLES_OF_ONE_REQUEST,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case):
        check(case)

    fuzz()
    # what the aims are for: a change of the world or of the fuzzer's Party that leaves an
    # operation with no answer but its refusals fails here, not by fuzzing nothing
    assert any(200 <= status < 300 for status in answered), (label, answered)
    if label.endswith("/why"):
        assert rules >= {1, 3}, rules


def _events_framed(response, case) -> int:
    """The events of a stream's answer as SPEC section 6 and docs/watches.md frame them (`id:`
    the event_id, `event: record.matched`, `data:` the event as JSON, in event_id order, of
    this watch, titles only), between its `retry:` and keep-alive comments; how many."""
    assert response.headers["content-type"][0].startswith(SSE_TYPE), response.headers
    blocks = response.content.decode().split("\n\n")
    assert blocks[0] == "retry: 2000" and blocks[-1] == "", blocks
    watch_id, ids = _watch_named(case), []
    resumed = (case.headers or {}).get("Last-Event-ID") or (case.query or {}).get("after") or 0
    for block in blocks[1:-1]:
        if block == ": keep-alive":
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert list(fields) == ["id", "event", "data"] and fields["event"] == "record.matched"
        event = orjson.loads(fields["data"])
        assert set(event) == {"event_id", "watch_id", "matched_at", "record"}, event
        assert (event["event_id"], event["watch_id"]) == (int(fields["id"]), watch_id)
        assert not {"payload", "execution_at", "subject_device_id"} & set(event["record"])
        ids.append(event["event_id"])
    assert ids == sorted(set(ids)) and all(n > int(resumed) for n in ids), (resumed, ids)
    return len(ids)


def _watch_named(case) -> int | None:
    """The watch a request's path names, as the server reads it: its path as sent, decoded
    (a drawn `%31` is watch 1), /api/v1/watches/{watch_id}[/...]."""
    sent = urlsplit(case.as_transport_kwargs(base_url="http://fuzz")["url"]).path
    return positive_id(unquote(sent).split("/")[4])


def _written_as_float(header: str | None) -> bool:
    return header is not None and re.fullmatch(r"[0-9]+\.0*", header) is not None


def _srv_beyond_pattern(value: object) -> bool:
    return isinstance(value, str) and (stacked_marks(value) or hidden_past_the_bmp(value))


def _outside_utc_years(value: object) -> bool:
    """Whether a date-time the schema allows has no UTC instant in years 1 to 9999 (read with
    the standard library, not the server's parser)."""
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value).astimezone(UTC)
    except OverflowError:
        return True
    except ValueError:
        return False
    return False
