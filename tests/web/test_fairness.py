"""Per-Party bounds on work in flight (issue 10, finding 9, and the bounded share of the pool
of finding 1): past a bound a request is answered 429 with Retry-After at once, and other
Parties are not held back. The bounds first, then through the API and the screen on both
engines, with the slots held by the test itself (a search in flight, deterministically)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from servicetrail.store.accounts import create_account, create_token
from servicetrail.domain.search import Search
from servicetrail.web.app import create_app
from servicetrail.web.fairness import Bounds, Busy, PartyLimits

from tests import personas as P
from tests.live_server import wait_until
from tests.web.screen_sign_in import PASSWORD, form_token, sign_in
from servicetrail.web.fairness import share_of

BROAD = "/api/v1/records?srv=4.1.1"


# --- the bounds ------------------------------------------------------------------------------


def test_a_party_gets_at_most_its_bounds_and_other_parties_are_not_held_back():
    limits = PartyLimits(Bounds(request=3, heavy=2, download=1), heavy_total=10)
    heavy = [limits.take("A", "request", "heavy") for _ in range(2)]
    with pytest.raises(Busy) as refused:
        limits.take("A", "request", "heavy")
    assert refused.value.retry_after == 2 and "broad searches or reports running" in str(
        refused.value
    )
    assert "as it may (2)" in str(refused.value)
    light = limits.take("A", "request")  # a search by Device ID still fits: 3 requests in all
    with pytest.raises(Busy) as refused:
        limits.take("A", "request")
    assert refused.value.retry_after == 1
    other = limits.take("B", "request", "heavy")
    assert limits.held("A") == {"request": 3, "heavy": 2} and limits.held("B") == {
        "request": 1,
        "heavy": 1,
    }
    heavy[0].release()
    heavy[0].release()  # once only, whoever calls it again
    assert limits.held("A") == {"request": 2, "heavy": 1}
    for slots in (heavy[1], light, other):
        slots.release()
    assert limits.held() == {}


def test_a_refused_request_holds_nothing():
    limits = PartyLimits(Bounds(request=5, heavy=1, download=1), heavy_total=10)
    limits.take("A", "heavy")
    with pytest.raises(Busy):
        limits.take("A", "request", "heavy")  # the request slot is free, the heavy one is not
    assert limits.held("A") == {"heavy": 1}


def test_all_parties_together_hold_at_most_the_servers_heavy_bound():
    limits = PartyLimits(Bounds(request=5, heavy=2, download=1), heavy_total=3)
    for party in "ABC":
        limits.take(party, "request", "heavy")
    with pytest.raises(Busy) as refused:
        limits.take("D", "request", "heavy")
    assert "server is busy" in str(refused.value)
    limits.take("D", "request")  # light work is never refused for others' heavy work


def test_a_broad_search_waits_a_moment_for_its_partys_heavy_slot():
    """The screen's first page is a broad search, and a Party's analysts share one heavy slot:
    two tabs opened at once were refused (audit of the screen, session 18)."""
    limits = PartyLimits(Bounds(request=3, heavy=1, download=1), heavy_total=10, heavy_wait=5)
    first = limits.take("A", "request", "heavy")
    # timed from before the release's timer starts: from after, a test thread not run for
    # 0.1 s on a loaded machine measured a wait of 0.09 s (the folder's run, session 67)
    started = time.monotonic()
    threading.Timer(0.2, first.release).start()
    with limits.search("A", Search()):
        assert 0.1 < time.monotonic() - started < 4
        assert limits.held("A") == {"request": 1, "heavy": 1}
    limits.heavy_wait = 0.2
    limits.take("A", "request", "heavy")
    started = time.monotonic()
    with pytest.raises(Busy) as refused:
        limits.take("A", "request", "heavy", wait=0.2)
    assert refused.value.bound == "heavy" and time.monotonic() - started >= 0.2
    assert limits.held("A") == {"request": 1, "heavy": 1}  # the refused one holds nothing
    limits.take("A", "request")
    limits.take("A", "request")
    with pytest.raises(Busy) as refused:  # the request bound is not waited for
        limits.take("A", "request", wait=5)
    assert refused.value.bound == "request"


def test_searches_waiting_for_the_heavy_slot_hold_request_slots_and_the_total_is_not_waited():
    """A waiting search held no slot: eleven of a Party's could sleep on threads (review,
    session 18). They count against its request bound now, and a server at its total of
    heavy work answers at once."""
    limits = PartyLimits(Bounds(request=3, heavy=1, download=1), heavy_total=2, heavy_wait=5)
    first = limits.take("A", "request", "heavy")
    waiting = [
        threading.Thread(target=lambda: limits.take("A", "request", "heavy", wait=5).release())
        for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    # both waiters count, once their threads run: 1 s was too little for that on two cores
    # shared by six test workers (session 66)
    both_wait = {"request": 3, "heavy": 1}
    assert wait_until(lambda: limits.held("A") == both_wait, 30), limits.held("A")
    with pytest.raises(Busy) as refused:
        limits.take("A", "request", "heavy", wait=5)
    assert refused.value.bound == "request"
    limits.take("B", "request", "heavy")  # the server's total (2) is reached
    started = time.monotonic()
    with pytest.raises(Busy) as refused:  # at once: not at the end of a wait of a minute
        limits.take("C", "request", "heavy", wait=60)
    # 30 s, not 1: the bound it proves is the wait's, and a loaded machine took 1 s's share of
    # "at once" from the tests of this module before (session 52)
    assert refused.value.bound == "heavy_total" and time.monotonic() - started < 30
    first.release()
    for thread in waiting:
        thread.join(30)
    assert not any(thread.is_alive() for thread in waiting), limits.held("A")
    assert limits.held("A") == {}


def test_concurrent_requests_never_run_past_the_bound():
    limits = PartyLimits(Bounds(request=3, heavy=3, download=1), heavy_total=10)
    running, most, refused, lock = [0], [0], [0], threading.Lock()

    def search() -> None:
        for _ in range(200):
            try:
                with limits.holding("A", "request", "heavy"):
                    with lock:
                        running[0] += 1
                        most[0] = max(most[0], running[0])
                    time.sleep(0.0001)
                    with lock:
                        running[0] -= 1
            except Busy:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=search) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 3 and refused[0] > 0 and limits.held() == {}


# --- through the API and the screen -----------------------------------------------------------


@pytest.fixture
def app(engine, world):
    return create_app(engine)


@pytest.fixture
def api(app, engine):
    tokens = {}
    with engine.begin() as conn:
        for party in (P.NORTHPOWER, P.LOOKER):
            create_account(conn, party.lower(), party, PASSWORD)
            tokens[party] = {"Authorization": f"Bearer {create_token(conn, party.lower())}"}
    with TestClient(app) as client:
        yield client, tokens


def hold(app, party: str, *kinds: str, times: int | None = None) -> list:
    """Slots held as a request in flight would hold them, up to the Party's bound."""
    bound = times or min(getattr(app.state.limits.bounds, kind) for kind in kinds)
    return [app.state.limits.take(party, *kinds) for _ in range(bound)]


def test_past_its_heavy_bound_a_party_is_answered_429_and_others_are_served(app, api, world):
    """Refused once its wait for the heavy slot (HEAVY_WAIT_SECONDS) is over, not queued
    until the slot frees: told by a release thirty waits on, which a search still waiting
    would be served by, not by 2 s of wall, which a loaded machine took 2.05-2.2 s for
    (helper 69b, six CPU spinners and a worker's GC pauses; a release ten waits on came
    before one refusal there)."""
    client, tokens = api
    held = hold(app, P.NORTHPOWER, "request", "heavy", times=app.state.limits.bounds.heavy)
    wait, released = app.state.limits.heavy_wait, []

    def release_late() -> None:
        released.append(True)
        for slots in held:
            slots.release()

    releaser = threading.Timer(30 * wait, release_late)
    releaser.start()
    started = time.monotonic()
    refused = client.get(BROAD, headers=tokens[P.NORTHPOWER])
    took = time.monotonic() - started
    releaser.cancel()
    assert refused.status_code == 429 and took >= 0.9 * wait, took
    assert not released, took  # answered before the release: the rest needs the slots held
    assert refused.headers["retry-after"] == "2"
    assert (
        refused.json()["error"] == "too_many_requests" and "Device ID" in refused.json()["message"]
    )
    report = client.get(
        "/api/v1/reports/own.csv",
        headers=tokens[P.NORTHPOWER],
        params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    )
    assert report.status_code == 429 and report.headers["retry-after"] == "2"
    # a search by Device ID or Request ID, one record, another Party's broad search: served
    own = world.records["np_req"]
    assert (
        client.get(
            f"/api/v1/records?device_id={P.ESME_1}", headers=tokens[P.NORTHPOWER]
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/api/v1/records?request_id={own.request_id}", headers=tokens[P.NORTHPOWER]
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/api/v1/records/{world.ids['np_req']}/why", headers=tokens[P.NORTHPOWER]
        ).status_code
        == 200
    )
    assert client.get(BROAD, headers=tokens[P.LOOKER]).status_code == 200
    for slots in held:
        slots.release()
    assert client.get(BROAD, headers=tokens[P.NORTHPOWER]).status_code == 200
    assert app.state.limits.held() == {}


def test_a_broad_search_is_served_when_its_partys_heavy_slot_frees_within_the_wait(app, api):
    """The slot freed once the search is seen waiting for it (its request slot held), the
    wait made 30 s: a release 0.3 s on, against the wait's 1 s, came after the wait's end on
    a loaded machine whose timer thread was not run meanwhile (helper 69b)."""
    client, tokens = api
    app.state.limits.heavy_wait = 30
    (held,) = hold(app, P.NORTHPOWER, "request", "heavy", times=1)
    waiting = {"request": 2, "heavy": 1}

    def release_once_it_waits() -> None:
        if wait_until(lambda: app.state.limits.held(P.NORTHPOWER) == waiting, 30):
            held.release()

    releaser = threading.Thread(target=release_once_it_waits, daemon=True)
    releaser.start()
    assert client.get(BROAD, headers=tokens[P.NORTHPOWER]).status_code == 200
    releaser.join(30)
    assert app.state.limits.held() == {}


def test_past_its_request_bound_every_read_of_a_party_is_answered_429(app, api, world):
    client, tokens = api
    hold(app, P.NORTHPOWER, "request")
    record = world.ids["np_req"]
    for path in (
        f"/api/v1/records?device_id={P.ESME_1}",
        f"/api/v1/records/{record}",
        f"/api/v1/records/{record}/why",
        f"/api/v1/records/{record}/triggers",
        f"/api/v1/records/{record}/proof",
        BROAD,
        # reads that took no slot: a Party's 200 connections of them held every thread
        # (audit of stalled clients, session 17)
        "/api/v1/access-log?limit=1000",
        "/api/v1/logs",
        "/api/v1/logs/consistency?origin=x&from=1&to=2",
        "/api/v1/watches",
    ):
        answer = client.get(path, headers=tokens[P.NORTHPOWER])
        assert answer.status_code == 429 and answer.headers["retry-after"] == "1", path
        # every read, not only a search: the message names what the Party has too many of
        assert "requests being answered" in answer.json()["message"], path
    assert (
        client.get(f"/api/v1/records?device_id={P.ESME_1}", headers=tokens[P.LOOKER]).status_code
        == 200
    )


def test_heavy_work_of_all_parties_together_is_bounded_by_the_pool(app, api, engine):
    from servicetrail.store.engine import pool_capacity

    client, tokens = api
    assert app.state.limits.heavy_total == pool_capacity(engine) // 2
    app.state.limits = PartyLimits(heavy_total=1)
    app.state.limits.take(P.WIRESCO, "request", "heavy")
    refused = client.get(BROAD, headers=tokens[P.NORTHPOWER])
    assert refused.status_code == 429 and "server is busy" in refused.json()["message"]
    assert (
        client.get(
            f"/api/v1/records?device_id={P.ESME_1}", headers=tokens[P.NORTHPOWER]
        ).status_code
        == 200
    )


def test_the_screen_says_so_with_429_and_retry_after(app, engine, world):
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, PASSWORD)
    with TestClient(app) as client:
        assert sign_in(client, "np.analyst").status_code == 303
        csrf = form_token(client.get("/"))
        held = hold(app, P.NORTHPOWER, "request", "heavy", times=app.state.limits.bounds.heavy)
        page = client.get("/", params={"srv": "4.1.1"})
        assert page.status_code == 429 and page.headers["retry-after"] == "2"
        assert (
            "broad searches or reports running" in page.text and 'name="device_id"' in page.text
        )  # the form
        assert "<h3>Too much at once</h3>" in page.text and "Narrow your search" not in page.text
        report = client.post(
            "/report", data={"csrf_token": csrf, "from": "2025-01-01", "to": "2026-01-01"}
        )
        assert report.status_code == 429 and "Too much at once" in report.text
        for slots in held:
            slots.release()
        hold(app, P.NORTHPOWER, "request")
        record = client.get(f"/records/{world.ids['np_req']}")
        assert record.status_code == 429 and "Too much at once" in record.text
        assert record.headers["retry-after"] == "1"
        looked = client.get("/access-log")  # it said "Narrow the dates" to a busy Party
        assert looked.status_code == 429 and looked.headers["retry-after"] == "1"
        assert "<h3>Too much at once</h3>" in looked.text and "Narrow" not in looked.text
        # how to check a proof is no read of records: a busy Party still gets the page, its
        # list of logs left for a moment later (audit 20a's rule for /verify)
        how = client.get("/verify")
        assert how.status_code == 200 and "Check it yourself" in how.text
        assert "could not be read just now" in how.text


def test_a_revoked_token_no_longer_takes_its_partys_turns(app, api, engine):
    """web.gate counts a seen token against its Party's share; once the store no longer knows
    it, it is forgotten, so its holder cannot keep the Party's share full (review, session
    17)."""
    from servicetrail.store.accounts import revoke_tokens
    from servicetrail.web.api import ViewerCache

    client, tokens = api
    app.state.viewers = ViewerCache(seconds=0)  # every request asks the store
    token = tokens[P.NORTHPOWER]["Authorization"].removeprefix("Bearer ")
    assert client.get("/api/v1/watches", headers=tokens[P.NORTHPOWER]).status_code == 200
    assert app.state.seen_credentials.key_of(token) == P.NORTHPOWER
    with engine.begin() as conn:
        revoke_tokens(conn, username=P.NORTHPOWER.lower())
    assert client.get("/api/v1/watches", headers=tokens[P.NORTHPOWER]).status_code == 401
    assert app.state.seen_credentials.key_of(token) is None


def test_the_route_takes_no_turn_of_its_own_while_another_party_reads(monkeypatch):
    """A Party's turn to read is taken once, in web.gate before its credential's look-up
    (web.read_turns): the route took it a second time, which only a credential not yet seen
    could ever wait for (session 51). Its bound of requests still holds.

    Told by no wait taken (a condition's, an event's or a sleep), not by 0.5 s of wall, which
    a loaded machine could fail for the load alone (session 52)."""
    from servicetrail.web.read_turns import CONTENDED_READS

    waited: list[object] = []
    condition_wait, sleep = threading.Condition.wait, time.sleep

    def counted_wait(self, timeout=None):
        waited.append(timeout)
        return condition_wait(self, timeout)

    def counted_sleep(seconds):
        waited.append(seconds)
        sleep(seconds)

    limits = PartyLimits(Bounds(request=CONTENDED_READS + 1, heavy=2, download=1), heavy_total=10)
    with limits.search("B"), ExitStack() as running:  # another Party reads meanwhile
        monkeypatch.setattr(threading.Condition, "wait", counted_wait)  # an Event's too
        monkeypatch.setattr(time, "sleep", counted_sleep)
        for _ in range(CONTENDED_READS + 1):
            running.enter_context(limits.search("A"))
        monkeypatch.undo()
        assert waited == []
        with pytest.raises(Busy) as refused, limits.search("A"):
            pass
        assert refused.value.bound == "request"
    assert limits.held() == {}


# --- found missing by mutation testing (audit 29b) ----------------------------------------


def test_each_auditor_has_a_share_of_its_own():
    alice, bob = share_of(None, "alice"), share_of(None, "bob")
    assert alice != bob
    assert share_of("NORTHPOWER", "alice") == "NORTHPOWER"
    limits = PartyLimits()
    held = [limits.take(alice, "heavy") for _ in range(limits.bounds.heavy)]
    try:
        limits.take(bob, "heavy").release()  # bob is not refused for alice's searches
    finally:
        for slots in held:
            slots.release()


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_search_waiting_for_its_partys_heavy_slot_is_answered_once_the_total_is_the_bound():
    """fa5: a broad search waits for its Party's heavy slot only: once that is free but all
    Parties' heavy work is at the server's total, it is answered at once (the module's note),
    not held on its thread, with a request slot, for the rest of its wait."""
    limits = PartyLimits(Bounds(request=3, heavy=1, download=1), heavy_total=2, heavy_wait=60)
    first = limits.take("A", "request", "heavy")
    other = limits.take("C", "request", "heavy")  # the server's total (2) is reached
    outcome: list[tuple[str, float]] = []

    def broad_search() -> None:
        try:
            limits.take("A", "request", "heavy", wait=60).release()
            outcome.append(("ran", time.monotonic()))
        except Busy as refused:
            outcome.append((refused.bound, time.monotonic()))

    waiter = threading.Thread(target=broad_search)
    waiter.start()
    # the waiter counts with the Party's slots once it waits (once its thread runs)
    waits = {"request": 2, "heavy": 1}
    assert wait_until(lambda: limits.held("A") == waits, 30), limits.held("A")
    # in one step, as a server's threads may: A's first search ends and B's broad search
    # takes the heavy slot it gave back, so the server's total is still reached
    with limits._lock:
        limits._count("A", ("request", "heavy"), -1)
        limits._count("B", ("request", "heavy"), 1)
        limits._heavy_freed.notify_all()
    freed = time.monotonic()
    waiter.join(30)
    assert [bound for bound, _ in outcome] == ["heavy_total"], (outcome, limits.held())
    # not at the end of its minute's wait: bounded at 1.5 s of a 3 s wait, a loaded machine's
    # scheduling could fail it for the load alone (session 52)
    assert outcome[0][1] - freed < 30
    assert limits.held("A") == {}
    first._held = False  # given back above
    other.release()
