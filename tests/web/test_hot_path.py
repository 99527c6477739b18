"""web.hot_path answers the hot reads itself: the client must not be able to tell. Every
request is sent to the app with the hot path and to the app without it (every request
through its FastAPI route), and the two answers must be the same status, headers and bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.merkle_log import seal_store
from servicetrail.web.app import create_app
from servicetrail.web.hot_path import HotPath
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P

PAGE = "/api/v1/records"


@pytest.fixture
def tokens(engine, world) -> dict[str, str]:
    made = {}
    with engine.begin() as conn:
        for party in P.PARTIES:
            create_account(conn, f"user_{party.lower()}", party, "correct horse battery staple")
            made[party] = create_token(conn, f"user_{party.lower()}")
    return made


@pytest.fixture
def clients(engine, world) -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(create_app(engine), raise_server_exceptions=False) as hot,
        TestClient(create_app(engine, hot_path=False), raise_server_exceptions=False) as routed,
    ):
        yield hot, routed


def _same_answer(clients, path: str, headers: dict[str, str]) -> dict:
    hot, routed = (client.get(path, headers=headers, follow_redirects=False) for client in clients)
    assert (hot.status_code, hot.content) == (routed.status_code, routed.content), path
    assert hot.headers.multi_items() == routed.headers.multi_items(), path
    return hot.json() if hot.headers["content-type"] == "application/json" else {}


def _searches() -> list[str]:
    """Device searches and first screens in the forms the screen and scripts send."""
    devices = [d.device_id for d in P.DEVICES] + [P.UNKNOWN_DEVICE, P.ESME_1.lower()]
    found = [f"{PAGE}?device_id={d}" for d in devices]
    found += [f"{PAGE}?device_id={P.ESME_1}&scope={s}&limit=2" for s in ("own", "others", "all")]
    found += [f"{PAGE}?device_id={P.ESME_1}&kind={k}" for k in ("request", "response")]
    found += [
        PAGE,
        f"{PAGE}?limit=1",
        f"{PAGE}?scope=own",
        f"{PAGE}?scope=others&limit=3",
        f"{PAGE}?kind=device_alert",
        f"{PAGE}?srv=4.1.1",
        f"{PAGE}?srv=read%20inventory",
        f"{PAGE}?from=2025-02-01T00:00:00Z&to=2025-04-01T00:00:00%2B01:00",
        f"{PAGE}?device_id={P.ESME_1}&from=2025-03-01T00:00:00Z",
    ]
    return found


# a Responsible Supplier before and after a change, a Network Operator, an Other User
VIEWERS = (P.NORTHPOWER, P.SOUTHENERGY, P.WIRESCO, P.LOOKER)


def test_searches_and_their_next_pages_answer_the_same(clients, tokens) -> None:
    for party in VIEWERS:
        token = tokens[party]
        headers = {"Authorization": f"Bearer {token}"}
        for path in _searches():
            body = _same_answer(clients, path, headers)
            pages = 0
            while body.get("next_cursor") and pages < 2:  # the walk as a client does it
                joiner = "&" if "?" in path else "?"
                body = _same_answer(clients, f"{path}{joiner}cursor={body['next_cursor']}", headers)
                pages += 1


def test_one_record_answers_the_same_seen_hidden_or_missing(clients, tokens, world) -> None:
    ids = sorted(world.ids.values())
    candidates = [*ids, max(ids) + 1, 0, 2**63 - 1, 2**63, 10**19, "00" + str(ids[0])]
    for party in VIEWERS:
        headers = {"Authorization": f"Bearer {tokens[party]}"}
        for record_id in candidates:
            _same_answer(clients, f"{PAGE}/{record_id}", headers)


def test_a_proof_answers_the_same_seen_hidden_or_missing(clients, tokens, world) -> None:
    seal_store(clients[0].app.state.engine)
    ids = sorted(world.ids.values())
    candidates = [*ids, max(ids) + 1, 0, 2**63, "00" + str(ids[0])]
    for party in VIEWERS:
        headers = {"Authorization": f"Bearer {tokens[party]}"}
        for record_id in candidates:
            _same_answer(clients, f"{PAGE}/{record_id}/proof", headers)


BAD_QUERIES = (
    "device_id=not-a-device",  # said by build_search, on either path
    "request_id=nope",
    "from=yesterday",
    "from=2025-03-01T00:00:00Z&to=2025-02-01T00:00:00Z",
    "cursor=garbage",
    "srv=%00",
    "srv=%ED%A0%80",
    "srv=%E2%80%AE",
    "limit=0",  # the rest are left to the route, which words them
    "limit=1001",
    "limit=007",
    "limit=%201",
    "limit=",
    "kind=REQUEST",
    "kind=",
    "scope=mine",
    "device_id=",
    f"device_id={P.ESME_1}&device_id={P.GSME_1}",
    "unknown=1",
)


def test_bad_parameters_answer_the_same(clients, tokens) -> None:
    for query in BAD_QUERIES:
        _same_answer(clients, f"{PAGE}?{query}", {"Authorization": f"Bearer {tokens[P.WIRESCO]}"})


@ON_SQLITE_ALONE
def test_no_valid_token_answers_the_same(clients, world) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "bearer  nope  "},
    ):
        for path in (PAGE, f"{PAGE}?device_id={P.ESME_1}", f"{PAGE}?limit=0", f"{PAGE}/1"):
            _same_answer(clients, path, headers)


def test_a_busy_party_is_refused_the_same(engine, world, tokens) -> None:
    """The per-Party bounds hold on the hot path: past them, the same 429 and Retry-After."""
    headers = {"Authorization": f"Bearer {tokens[P.SOUTHENERGY]}"}
    apps = [create_app(engine), create_app(engine, hot_path=False)]
    with (
        TestClient(apps[0], raise_server_exceptions=False) as hot,
        TestClient(apps[1], raise_server_exceptions=False) as routed,
    ):
        for app in apps:
            for _ in range(app.state.limits.bounds.request):
                app.state.limits.take(P.SOUTHENERGY, "request")
        for path in (f"{PAGE}?device_id={P.ESME_1}", PAGE, f"{PAGE}/{world.ids['se_req']}"):
            answers = [client.get(path, headers=headers) for client in (hot, routed)]
            assert answers[0].status_code == 429
            assert answers[0].content == answers[1].content
            assert answers[0].headers["retry-after"] == answers[1].headers["retry-after"]


class _Rest:
    """The rest of the app, as the hot path sees it: whatever it passes on lands here."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("passed on", status_code=299)(scope, receive, send)


def test_the_hot_path_answers_the_ordinary_reads_and_passes_on_the_rest(
    engine, world, tokens
) -> None:
    """Without this the comparisons above would also pass if the hot path answered nothing."""
    app = create_app(engine, hot_path=False)
    hot = HotPath(_Rest())

    async def in_the_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette sets it for its middleware
        await hot(scope, receive, send)

    headers = {"Authorization": f"Bearer {tokens[P.SOUTHENERGY]}"}
    client = TestClient(in_the_app, raise_server_exceptions=False)  # no lifespan: none needed
    for path in (
        PAGE,
        f"{PAGE}?device_id={P.ESME_1}&limit=5",
        f"{PAGE}/{min(world.ids.values())}",
        f"{PAGE}/{min(world.ids.values())}/proof",
    ):
        assert client.get(path, headers=headers).status_code in (200, 404, 409), path
    assert client.get(f"{PAGE}?device_id=nope", headers=headers).status_code == 422
    assert client.get(PAGE).status_code == 401
    for path in (f"{PAGE}?limit=0", f"{PAGE}?x=1", f"{PAGE}/abc", f"{PAGE}/", "/api/v1/x"):
        assert client.get(path, headers=headers).status_code == 299, path
    assert client.post(PAGE, headers=headers).status_code == 299
    assert client.get(f"{PAGE}/1/why", headers=headers).status_code == 299
    assert client.get(f"{PAGE}/1/proof?x=1", headers=headers).status_code == 299
