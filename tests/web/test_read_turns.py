"""web.read_turns, through the real web.gate: while another Party reads, a Party's requests
take turns to run before anything of theirs is looked up in the store (audit 49d 2: one
Party's 12 connections of cheap reads, each token looked up before the Party's turn in
web.fairness, made another Party's device searches 7-10 times as slow on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json

from servicetrail.web.read_turns import CONTENDED_READS, ReadTurns
from tests.web.gate_world import HeldRoute, ask, scope_for, world  # noqa: F401 (fixture)


def run(coroutine):
    """Within 5 s: without the turns, a request meant to be refused waits in the route."""
    return asyncio.run(asyncio.wait_for(coroutine, 5))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_partys_requests_take_turns_before_the_route_while_another_party_reads(world):  # noqa: F811
    app, route, gate = world
    at_once = CONTENDED_READS

    async def flood():
        other = asyncio.create_task(ask(gate, scope_for(app, token="token-of-b")))
        await _settle()
        flood = [
            asyncio.create_task(ask(gate, scope_for(app, token="token-of-a")))
            for _ in range(at_once + 3)
        ]
        await _settle()
        entered = route.entered  # the route is where the token would be looked up
        route.release.set()
        return entered, await asyncio.gather(other, *flood)

    entered, answers = run(flood())
    assert entered == 1 + at_once  # the other Party's, then the flood's turns only
    # the rest waited for turns as the first ended, and were served within the wait
    assert [status for status, _ in answers] == [200] * (at_once + 4)
    assert gate._reads.running() == {} and gate.in_flight() == {}


def test_alone_on_the_server_a_party_runs_its_whole_share(world):  # noqa: F811
    app, route, gate = world

    async def alone():
        tasks = [
            asyncio.create_task(ask(gate, scope_for(app, token="token-of-a")))
            for _ in range(CONTENDED_READS + 3)
        ]
        await _settle()
        entered = route.entered
        route.release.set()
        await asyncio.gather(*tasks)
        return entered

    assert run(alone()) == CONTENDED_READS + 3


def test_a_turn_not_come_free_within_the_wait_is_answered_429(world):  # noqa: F811
    """A wait of 0.2 s here (the real one is a second), so the test takes that."""
    app, route, gate = world
    gate._reads = ReadTurns(at_once=1, wait=0.2)

    async def stuck():
        held = [
            asyncio.create_task(ask(gate, scope_for(app, token="token-of-b"))),
            asyncio.create_task(ask(gate, scope_for(app, token="token-of-a"))),
        ]
        await _settle()
        refused = await ask(gate, scope_for(app, token="token-of-a"))
        entered = route.entered
        route.release.set()
        await asyncio.gather(*held)
        return refused, entered

    (status, body), entered = run(stuck())
    assert status == 429 and entered == 2
    assert "take turns" in json.loads(body)["message"]


def test_the_turn_ends_when_the_answer_starts_and_credentials_not_yet_seen_take_none(world):  # noqa: F811
    """A stream or a download holds its own slots while it sends (web.fairness), not the
    Party's turn; and after a restart each Party's first request (its credential not yet
    seen) is let through even while its Party is at its turns."""
    app, route, gate = world
    gate._reads = ReadTurns(at_once=1, wait=0.2)
    body_sent = asyncio.Event()

    async def streaming(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await body_sent.wait()
        await send({"type": "http.response.body", "body": b"streamed"})

    gate.app = _routed(streaming, route)

    async def scene():
        other = asyncio.create_task(ask(gate, scope_for(app, token="token-of-b")))
        stream = asyncio.create_task(
            ask(gate, scope_for(app, path="/api/v1/watches/1/stream", token="token-of-a"))
        )
        await _settle()
        read = asyncio.create_task(ask(gate, scope_for(app, token="token-of-a")))
        first = asyncio.create_task(ask(gate, scope_for(app, token="new-token-of-a")))
        await _settle()
        entered = route.entered
        route.release.set()
        body_sent.set()
        return entered, await asyncio.gather(other, stream, read, first)

    entered, answers = run(scene())
    assert entered == 3  # B's, A's read beside its stream, and the credential not yet seen
    assert [status for status, _ in answers] == [200] * 4


def _routed(streaming, held):
    async def app(scope, receive, send):
        if scope["path"].endswith("/stream"):
            await streaming(scope, receive, send)
        else:
            await held(scope, receive, send)

    return app
