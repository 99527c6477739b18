"""Webhook deliveries (SPEC section 6) on both engines, to a local receiver that verifies
every signature with the `standardwebhooks` reference library: retries on the schedule with
the same webhook-id, 410 disabling, a receiver that never answers, registry corrections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import aiohttp  # noqa: F401  (why: see below)
import pytest

from servicetrail import settings
from servicetrail.domain.model import Responsibility
from servicetrail.domain.watches import watch_spec
from servicetrail.store.accounts import create_account
from servicetrail.store.outbox import pending_count
from servicetrail.store.watches import create_watch, list_watches
from servicetrail.store.registry import load_responsibility
from servicetrail.webhooks import outbound
from servicetrail.webhooks import deliver
from servicetrail.webhooks.deliver import QUEUE_FACTOR, Deliverer
from servicetrail.webhooks.posting import client_session as client
from servicetrail.webhooks.signing import new_secret
from servicetrail.webhooks.worker_report import Stats
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.web.screen import signed_in
from tests.web.screen_sign_in import PASSWORD
from tests.webhooks.receiver import Received, Receiver
from tests.personas import starts_with_personas
from tests.live_server import wait_until
from tests.store.stamped_behind import stamped_behind
from tests.store.two_deliveries import two_deliveries

LATER = P.t("2025-04-01T10:00:00Z")


@pytest.fixture(autouse=True)
def loopback(monkeypatch):
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()


def hook(engine, receiver: Receiver, path: str, party: str = P.SOUTHENERGY, **fields) -> dict:
    secret = new_secret()
    with engine.begin() as conn:
        made = create_watch(
            conn,
            party,
            watch_spec({"name": path, "webhook": {"url": receiver.url(path)}, **fields}),
            secret,
        )
    receiver.secrets[path] = made["webhook"]["secret"]
    return made


def unreached_watch(engine, name: str = "w") -> dict:
    """SOUTHENERGY's watch of everything, with a webhook no test's round ever posts to."""
    with engine.begin() as conn:
        return create_watch(
            conn,
            P.SOUTHENERGY,
            watch_spec({"name": name, "webhook": {"url": "https://hooks.example.com/w"}}),
            new_secret(),
        )


def lk_requests(engine, *numbers: int, at=LATER) -> None:
    P.requests_to_esme_1(engine, numbers, counter_from=900, payload="<secret body>", at=at)


# aiohttp is imported above, as this module is collected, not by a pytest process's first
# delivery: 0.18 s of CPU that held the loop 1-2.4 s at load 15-20 while it was imported on
# it, and no round renewed a test's 3-s leases meanwhile (the worker imports it on a thread
# now, test_first_delivery, where it still contends for the GIL with the loop). The
# queued-past-lease test, first in its process, had one lapse and leased it again (`9 == 8`
# leases: 2 runs in 8, one per worker, session 66); the lease-left tests' empty `left` (2 in
# 8 too) fits the same cause.

# How often `run` asks a condition that reads the store (a connection and a query or two:
# the watches' failing state, the outbox's count): asked every POLL_SECONDS, as one the
# receivers' lists answer, test_a_refused_port_... read `list_watches` some 150 times in its
# 3 s, 0.73 s of CPU for the client and PostgreSQL together, 0.50 s at this pace (session
# 61). Each such test's times are a lower bound (no sooner than n limits) or seconds wide
POLL_SECONDS, STORE_POLL_SECONDS = 0.02, 0.1


def run(
    deliverer: Deliverer,
    until,
    seconds: float = 20,
    cancel: bool = False,
    poll: float = POLL_SECONDS,
) -> bool:
    """Run the worker until `until()` holds (True) or `seconds` pass (False), asking it every
    `poll` seconds. `cancel`: end it as at Ctrl-C, its attempts in flight at once, not after
    their time limit (a stop's wait): so a test may give a receiver that never answers a time
    limit long enough that a loaded machine's slowness is not taken for waiting behind it."""

    async def main() -> bool:
        stop = asyncio.Event()
        worker = asyncio.create_task(deliverer.run(stop))
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if until():
                    return True
                await asyncio.sleep(poll)
            return until()
        finally:
            if cancel:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            else:
                stop.set()
                await worker

    return asyncio.run(main())


def arrived_before(first: Received, receivers: list[Receiver]) -> int:
    """How many deliveries `receivers` had had when `first` arrived at its own: by their
    arrival, not counted at a poll that a loaded machine may run late."""
    return sum(r.at < first.at for each in receivers for r in each.received)


def test_every_delivery_verifies_with_the_reference_library(engine, world, monkeypatch) -> None:
    """The HTTP session (aiohttp, 0.2 s of CPU to import) is opened by the first delivery
    due, not by every server's worker at its start (session 59), and closed as it stops."""
    opened: list = []
    monkeypatch.setattr(
        deliver, "client_session", lambda *a: opened.append(client(*a)) or opened[-1]
    )
    with Receiver() as receiver:
        made = hook(engine, receiver, "/a")
        worker = Deliverer(engine, schedule=[0.1])
        assert not run(worker, lambda: False, seconds=0.3) and opened == []  # nothing due
        lk_requests(engine, 1, 2, 3)
        assert run(worker, lambda: len(receiver.received) >= 3)
        assert len(opened) == 1 and opened[0].closed
        assert [r.error for r in receiver.received] == ["", "", ""]
        events = receiver.events("/a")
        assert sorted(e["event_id"] for e in events) == [1, 2, 3]
        assert all(e["watch_id"] == made["id"] and "payload" not in e["record"] for e in events)
        body = receiver.bodies()[0]
        assert body["type"] == "record.matched"
        # when the event occurred (Standard Webhooks), not when the attempt was made
        assert body["timestamp"] == body["data"]["matched_at"] and body["timestamp"].endswith("Z")
        assert {r.headers["webhook-id"] for r in receiver.received} == {
            f"evt_{made['id']}_{n}" for n in (1, 2, 3)
        }
        with engine.connect() as conn:
            assert pending_count(conn) == 0


@ON_SQLITE_ALONE
def test_a_wrong_secret_fails_verification(engine, world) -> None:
    """The receiver's check can fail: with another secret, the reference library refuses."""
    with Receiver() as receiver:
        hook(engine, receiver, "/a")
        receiver.secrets["/a"] = new_secret()
        lk_requests(engine, 1)
        assert run(Deliverer(engine, schedule=[0.1]), lambda: len(receiver.received) >= 1)
        assert receiver.received[0].error.startswith("WebhookVerificationError")


def test_failed_attempts_are_retried_with_the_same_webhook_id(engine, world) -> None:
    with Receiver(answer=lambda path, n: (503 if n < 3 else 200, 0)) as receiver:
        hook(engine, receiver, "/flaky")
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[0.2, 0.2, 0.2])
        assert run(deliverer, lambda: len(receiver.received) >= 3)
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == 3 and len(set(ids)) == 1
        assert len({r.body for r in receiver.received}) == 1  # the same body, retry after retry
        assert all(r.verified for r in receiver.received)
        # nothing more in a second: a retry, were there one, is due 0.2 s after the last
        # answer, and this worker's looks in its second (at 0, 0.1, 0.3 and 0.7 s) find it. No
        # sleep before it: the 0.3 s slept here only moved the retry ahead of the first look;
        # a slow machine can only make this second more lenient, never fail it
        assert not run(
            Deliverer(engine, schedule=[0.2]), lambda: len(receiver.received) > 3, seconds=1
        )
        with engine.connect() as conn:
            assert pending_count(conn) == 0


def test_a_receiver_answering_any_2xx_is_delivered_once_and_not_retried(engine, world) -> None:
    """Success is any 2xx (SPEC section 6): a receiver answering 202 Accepted or 204 No
    Content has its delivery, and is not sent it again; counting 200 alone as success sent
    each of them on the whole retry schedule and named them failing (audit 27c)."""
    statuses = {"/accepted": 202, "/no-content": 204, "/ok": 200}
    with Receiver(answer=lambda path, n: (statuses[path], 0)) as receiver:
        made = [hook(engine, receiver, path) for path in statuses]
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[0.2, 0.2])

        def settled() -> bool:
            with engine.connect() as conn:
                return len(receiver.received) >= 3 and pending_count(conn) == 0

        assert run(deliverer, settled, seconds=15, poll=STORE_POLL_SECONDS)
        # nothing more in a second: a retry, were there one, is due 0.2 s after its answer
        # (as in test_failed_attempts_are_retried_with_the_same_webhook_id); no sleep before
        assert not run(
            Deliverer(engine, schedule=[0.2]), lambda: len(receiver.received) > 3, seconds=1
        )
        assert sorted(r.path for r in receiver.received) == sorted(statuses)
        assert all(r.verified for r in receiver.received)
        assert deliverer.stats.delivered == 3
        with engine.connect() as conn:
            watches = list_watches(conn, P.SOUTHENERGY, with_state=True)
        assert {w["id"] for w in watches} == {m["id"] for m in made}
        assert [w["webhook"]["failing"] for w in watches] == [None, None, None]


def test_a_2xx_whose_body_stalls_is_delivered_once(engine, world) -> None:
    """The status came at once, and the body never: the attempt was a failure when its time
    ran out, tried again with the same webhook-id and given up (audit 26b). Success is any
    2xx (SPEC section 6)."""
    with Receiver(answer=lambda path, n: (200, 0, 30)) as receiver:
        made = hook(engine, receiver, "/head-only")
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[0.2, 0.2], timeout=25)

        def settled() -> bool:
            with engine.connect() as conn:
                return bool(receiver.received) and pending_count(conn, made["id"]) == 0

        started = time.monotonic()
        assert run(deliverer, settled, seconds=30, poll=STORE_POLL_SECONDS)
        # its slot back well before the time limit (25 s): at a time limit of 3 s, a loaded
        # machine's 3.2 s to deliver at all failed this for the load alone (session 52)
        assert time.monotonic() - started < 15
        assert len(receiver.received) == 1 and deliverer.stats.delivered == 1
        with engine.connect() as conn:
            assert (
                list_watches(conn, P.SOUTHENERGY, with_state=True)[0]["webhook"]["failing"] is None
            )


def test_a_receiver_that_never_answers_is_said_so_to_its_party(engine, world) -> None:
    """Of the attempt's limit and the HTTP client's own (the same time), whichever came first
    said it: the client's was "TimeoutError: " (review 26d)."""
    with Receiver(answer=lambda path, n: (200, 30)) as stuck:
        made = hook(engine, stuck, "/stuck")
        lk_requests(engine, *range(1, 33))  # many races of the two limits
        deliverer = Deliverer(engine, schedule=[60], timeout=1, per_host=32)

        def said() -> str | None:
            with engine.connect() as conn:
                [watch] = list_watches(conn, P.SOUTHENERGY, with_state=True)
            failing = watch["webhook"]["failing"]
            return failing["last_error"] if failing and failing["attempts"] else None

        assert run(deliverer, lambda: said() is not None, seconds=15, poll=STORE_POLL_SECONDS)
        # the Party's words are those of any connection that failed (tests/webhooks/
        # test_posting.py); the operator's say which
        assert said() == "no answer: the connection or TLS failed, or no answer came in 1 s"
        assert set(deliverer.stats.errors) == {"no answer in 1 s"}, deliverer.stats.errors
        assert made["id"]


@starts_with_personas
def test_a_refused_port_and_a_silent_one_fail_alike_in_time(pg_engine) -> None:
    """A port that refuses the connection and one that takes it and never answers: each
    failure is shown to the Party (`watch list`, the API, the screen) at the attempt's time
    limit, and a receiver's next attempt starts when the one before ends, at that limit for
    both. Shown at once, the refusal told a closed port from a filtered one to a User who
    named any host and port and watched the count (finding 56c). Three deliveries each, one
    at a time (per_host 2: a receiver a Party has to itself has all but one slot), a 1 s
    limit: about 3 s, on PostgreSQL alone (the worker's timing, not the store's)."""
    limit = 1.0
    P.load_personas(pg_engine)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: every connection refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel takes the connections; nothing ever reads or answers
    made = {}
    with pg_engine.begin() as conn:
        for name, sock in (("closed", closed), ("silent", silent)):
            # https: the silent port is sent a TLS hello it never answers (an http:// URL,
            # loopback's alone, is not held to the limit: the next test)
            url = f"https://127.0.0.1:{sock.getsockname()[1]}/hook"
            spec = watch_spec({"name": name, "webhook": {"url": url}})
            made[name] = create_watch(conn, P.SOUTHENERGY, spec, new_secret())["id"]
    lk_requests(pg_engine, 1, 2, 3)
    deliverer = Deliverer(pg_engine, schedule=[600], timeout=limit, per_host=2)
    seen: dict[str, list[tuple[float, dict]]] = {"closed": [], "silent": []}
    started = time.monotonic()

    def all_failed() -> bool:
        with pg_engine.connect() as conn:
            shown = {
                w["id"]: w["webhook"]["failing"] for w in list_watches(conn, P.SOUTHENERGY, True)
            }
        for name, timeline in seen.items():
            failing = shown[made[name]]
            if failing and (not timeline or timeline[-1][1] != failing):
                timeline.append((time.monotonic() - started, failing))
        return all(t and t[-1][1]["waiting"] == 3 for t in seen.values())

    try:
        assert run(deliverer, all_failed, seconds=20, poll=STORE_POLL_SECONDS), seen
    finally:
        closed.close()
        silent.close()
    for name, timeline in seen.items():
        # the n-th failure shown no sooner than n limits from the start: each attempt of the
        # three waited for the one before (the refusals: all three within 0.3 s, before)
        shown_at = {f["waiting"]: at for at, f in timeline}
        for n, at in shown_at.items():
            assert at >= n * limit - 0.05, (name, timeline)
    said = {name: {f["last_error"] for _, f in t} for name, t in seen.items()}
    assert said["closed"] == said["silent"] and len(said["closed"]) == 1, said
    assert seen["closed"][-1][1] == seen["silent"][-1][1], seen
    # the operator's log tells them apart: one refusal, one silence, as the test meant
    errors = sorted(e.split(":")[0] for e in deliverer.stats.errors)
    assert errors == ["ClientConnectorError", "no answer in 1 s"], deliverer.stats.errors


def refusing_watch(engine, scheme: str) -> tuple[socket.socket, int]:
    """A socket bound and never listening (every connection refused), and a watch of
    SOUTHENERGY's whose webhook goes to it by `scheme`."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"{scheme}://127.0.0.1:{closed.getsockname()[1]}/hook"
    with engine.begin() as conn:
        spec = watch_spec({"name": scheme, "webhook": {"url": url}})
        return closed, create_watch(conn, P.SOUTHENERGY, spec, new_secret())["id"]


@starts_with_personas
def test_a_local_receiver_not_started_yet_is_retried_on_the_schedule(pg_engine) -> None:
    """An http:// receiver (loopback alone, under SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK=1: a
    local receiver, a test's) that refuses is retried on SPEC 6's schedule from its refusal,
    not from a time limit: its port's state is no secret to a User who may already reach the
    server's local ports (and a receiver started late had its deliveries a limit each later)."""
    P.load_personas(pg_engine)
    closed, made = refusing_watch(pg_engine, "http")
    lk_requests(pg_engine, 1)
    deliverer = Deliverer(pg_engine, schedule=[0.2, 0.2, 600], timeout=20)

    def failed_thrice() -> bool:
        with pg_engine.connect() as conn:
            watches = {w["id"]: w for w in list_watches(conn, P.SOUTHENERGY, True)}
        failing = watches[made]["webhook"]["failing"]
        return bool(failing) and failing["attempts"] >= 3

    started = time.monotonic()
    try:
        assert run(deliverer, failed_thrice, seconds=15, poll=STORE_POLL_SECONDS)
    finally:
        closed.close()
    assert time.monotonic() - started < 10  # three limits of 20 s, held


@starts_with_personas
def test_an_attempt_held_to_its_limit_takes_no_slot_of_the_worker(pg_engine) -> None:
    """A refused attempt waits out its time limit (test_a_refused_port_and_a_silent_one_fail_
    alike_in_time) in its Party's and receiver's counts alone: with one slot in the worker,
    another Party's receiver that answers has its delivery at once, not when the refusal's
    limit (20 s) ends."""
    P.load_personas(pg_engine)
    closed, _ = refusing_watch(pg_engine, "https")
    lk_requests(pg_engine, 1)
    deliverer = Deliverer(pg_engine, schedule=[600], timeout=20, concurrency=1)
    with Receiver() as fine:

        def delivered() -> bool:
            # the refusal made (held, or before its hold recorded at once): then the other
            # Party's watch and a record for it, sent while the refusal waits
            if (getattr(deliverer, "_held", None) or deliverer.stats.failed) and not fine.secrets:
                hook(pg_engine, fine, "/fine", party=P.WIRESCO)
                lk_requests(pg_engine, 2)
            return bool(fine.received)

        try:
            assert run(deliverer, delivered, seconds=10, cancel=True), deliverer.stats
        finally:
            closed.close()
    assert deliverer.stats.failed == 0, deliverer.stats  # the refusal was still held


def test_failing_deliveries_are_shown_to_their_party_and_logged(engine, world, caplog) -> None:
    """A receiver that keeps failing is retried for days: its Party sees it in its watch's
    state (the Watches page and `watch list`), and the operator in the worker's log."""
    with Receiver(answer=lambda path, n: (503, 0)) as receiver:
        made = hook(engine, receiver, "/down")
        lk_requests(engine, 1, 2)
        deliverer = Deliverer(engine, schedule=[0.1, 3600])
        with caplog.at_level("WARNING", logger="servicetrail.webhooks"):
            assert run(deliverer, lambda: len(receiver.received) >= 4)
        with engine.connect() as conn:
            listed = {w["id"]: w for w in list_watches(conn, P.SOUTHENERGY, with_state=True)}
        assert listed[made["id"]]["webhook"]["failing"] == {
            "waiting": 2,
            "at_least": False,
            "attempts": 2,
            "last_error": "answered 503",
        }
        assert "answered 503" in caplog.text and f"watch {made['id']}" in caplog.text
        with engine.begin() as conn:
            create_account(conn, P.SOUTHENERGY.lower(), P.SOUTHENERGY, PASSWORD)
        page = signed_in(engine, P.SOUTHENERGY).get("/watches").text
        assert "2 deliveries failing" in page and "answered 503" in page


def test_the_schedule_runs_out_then_the_delivery_is_given_up(engine, world) -> None:
    with Receiver(answer=lambda path, n: (500, 0)) as receiver:
        hook(engine, receiver, "/down")
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[0.1, 0.1])
        assert run(deliverer, lambda: deliverer.stats.given_up == 1)
        assert len(receiver.received) == 3  # the first attempt and two retries


def test_410_disables_the_webhook(engine, world) -> None:
    with Receiver(answer=lambda path, n: (410, 0)) as receiver:
        made = hook(engine, receiver, "/gone")
        lk_requests(engine, 1, 2)
        deliverer = Deliverer(engine, schedule=[0.1])
        assert run(deliverer, lambda: deliverer.stats.gone >= 1)
        time.sleep(0.2)
        lk_requests(engine, 3, 4)
        run(Deliverer(engine, schedule=[0.1]), lambda: False, seconds=1)
        assert len(receiver.received) <= 2
        with engine.connect() as conn:
            listed = {w["id"]: w for w in list_watches(conn, P.SOUTHENERGY, with_state=True)}
            assert listed[made["id"]]["webhook"]["enabled"] is False
            assert pending_count(conn) == 0


def test_nothing_more_is_sent_to_a_receiver_after_its_410(engine, world) -> None:
    """One attempt in flight at a time, five deliveries leased: the 410 of the first stops
    the four queued behind it, which were already leased when it came."""
    with Receiver(answer=lambda path, n: (410, 0.2)) as receiver:
        hook(engine, receiver, "/gone")
        lk_requests(engine, 1, 2, 3, 4, 5)
        deliverer = Deliverer(engine, schedule=[0.1], per_host=1)
        assert run(deliverer, lambda: deliverer.stats.gone >= 1)
        run(deliverer, lambda: False, seconds=1)
        assert len(receiver.received) == 1
        with engine.connect() as conn:
            assert pending_count(conn) == 0


def test_a_410_that_comes_while_a_round_leases_stops_what_it_leased(
    engine, world, monkeypatch
) -> None:
    """The receiver answers 410 while the worker's next round is leasing (slowed here) more
    of the same watch: what that round leased is not sent (the next round records the 410,
    which deletes it). Sent, the receiver had more after saying it was gone (review 35g: 2
    posts in 2 runs of 3)."""
    from servicetrail.webhooks import rounds

    real_lease = rounds.lease_deliveries

    def slow_lease(*args, **kwargs):
        if receiver.received:  # the first attempt is in flight: its 410 comes meanwhile
            time.sleep(0.6)
        return real_lease(*args, **kwargs)

    def answer(path: str, n: int) -> tuple[float, ...]:
        if len(receiver.received) == 1:  # more for the same watch while it is being answered
            lk_requests(engine, 2, 3)
        return (410, 0.3)

    monkeypatch.setattr(rounds, "lease_deliveries", slow_lease)
    with Receiver(answer=answer) as receiver:
        hook(engine, receiver, "/gone")
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[0.1], per_host=1)
        assert run(deliverer, lambda: deliverer.stats.gone >= 1)
        run(deliverer, lambda: False, seconds=1.5)
        assert len(receiver.received) == 1
        with engine.connect() as conn:
            assert pending_count(conn) == 0


def test_a_receiver_that_never_answers_does_not_hold_up_another(engine, world) -> None:
    with (
        Receiver(answer=lambda path, n: (200, 30 if path == "/stuck" else 0)) as stuck,
        Receiver() as fine,
    ):
        hook(engine, stuck, "/stuck")
        hook(engine, fine, "/fine")
        lk_requests(engine, *range(1, 41))
        # a time limit of 30 s, ended by a cancel: the 40 are sent before any stuck attempt
        # ends, not within 10 s of wall, which a loaded machine may take (session 52)
        deliverer = Deliverer(engine, schedule=[60], per_host=2, concurrency=8, timeout=30)
        assert run(deliverer, lambda: len(fine.events("/fine")) >= 40, seconds=25, cancel=True)
        assert len(stuck.received) <= 2  # its share, not the worker


def test_one_partys_receivers_that_never_answer_do_not_hold_up_another_partys(
    engine, world
) -> None:
    """A hostile Party points watches at several receivers that never answer: each is a
    receiver of its own (host and port), so the per-receiver bound alone let them take every
    slot of the worker, and no other Party's webhook was sent. A Party's receivers together
    get at most half of the worker."""
    with (
        Receiver(answer=lambda path, n: (200, 30)) as stuck_1,
        Receiver(answer=lambda path, n: (200, 30)) as stuck_2,
        Receiver(answer=lambda path, n: (200, 30)) as stuck_3,
        Receiver(answer=lambda path, n: (200, 30)) as stuck_4,
        Receiver() as fine,
    ):
        stuck = (stuck_1, stuck_2, stuck_3, stuck_4)
        for n, receiver in enumerate(stuck):
            hook(engine, receiver, f"/stuck{n}", party=P.SOUTHENERGY)
        hook(engine, fine, "/fine", party=P.WIRESCO)  # ESME-1's network operator
        lk_requests(engine, *range(1, 21))
        # a time limit of 30 s, ended by a cancel: with 3 s, a loaded machine took 10 s to
        # deliver the 20 and failed a bound of 10 s for the load alone (session 52)
        deliverer = Deliverer(engine, schedule=[60], per_host=2, concurrency=8, timeout=30)
        assert deliverer.per_party == 4
        # without the Party's bound the four took all 8 slots: nothing is sent to the fine
        # receiver within the first round of timeouts
        assert run(deliverer, lambda: len(fine.events("/fine")) >= 20, seconds=25, cancel=True)
        assert sum(len(r.received) for r in stuck) <= 4  # its share, within the first round


def test_two_partys_receivers_that_never_answer_do_not_hold_up_a_third_partys(
    engine, world
) -> None:
    """Two hostile Parties, each with receivers that never answer and a backlog for them: at
    half the worker each, they held every slot and the whole queue, nothing more was leased,
    and a third Party's delivery was not even read for ten minutes (audit 30c). Each Party's
    share of the queue now leaves as much again for one more Party, and a slot that frees
    goes to the Party with the fewest in flight: the third is sent when the first stuck
    attempt times out.

    Counted in the stuck attempts begun meanwhile, not as 3.5 s of wall; and the run given
    40 s, not 20: a loaded machine took most of 20 s to begin the first eight, and the third
    Party never came in time, for the load alone (session 52)."""
    with contextlib.ExitStack() as stack:
        stuck = [stack.enter_context(Receiver(answer=lambda path, n: (200, 30))) for _ in range(4)]
        fine = stack.enter_context(Receiver())
        for n, receiver in enumerate(stuck):
            hook(engine, receiver, f"/stuck{n}", party=(P.SOUTHENERGY, P.WIRESCO)[n % 2])
        lk_requests(engine, *range(1, 41))  # 80 deliveries a hostile Party
        deliverer = Deliverer(engine, schedule=[60], per_host=4, concurrency=8, timeout=2)
        tried: dict[str, int] = {}  # the stuck attempts begun, at a moment

        def the_newcomers_arrives() -> bool:
            if "came" not in tried and sum(len(r.received) for r in stuck) >= 8:
                hook(engine, fine, "/fine", party=P.LOOKER, devices=[P.ESME_1], senders="all")
                lk_requests(engine, 500)
                tried["came"] = sum(len(r.received) for r in stuck)
                tried["room"] = QUEUE_FACTOR * deliverer.concurrency - len(deliverer.queues)
            return bool(fine.events("/fine"))

        # before: never (the queue full of the two's backlog, nothing leased)
        assert run(deliverer, the_newcomers_arrives, seconds=40, cancel=True), tried
        tried["arrived"] = arrived_before(fine.received[0], stuck)
        assert tried["arrived"] - tried["came"] <= 8, tried  # one round of time limits
    # The newcomer is leased by either of two protections: the room the two leave in the
    # queue, told here, and a round leased even when the queue is full, which the next
    # test tells alone. Each holds at most a third of the queue (128): a third is left
    assert tried["room"] >= 128 // 3, tried


def test_a_newcomer_behind_hostile_parties_that_came_one_after_another_is_leased_at_once(
    engine, world
) -> None:
    """Six Parties whose receivers never answer arrive one after another, each with a
    backlog: each was leased its share of the queue when it came (a half, a third, a quarter
    ...), together more than all of it, and nothing more was leased until their attempts
    had timed out one by one: a seventh Party's first delivery waited about six time limits
    (review 30f: 12 s at 2 s; here, not within 25 s). A Party under its share is now leased
    even when the queue is full, and sent once each Party that came before it has had its
    first attempt (a free slot goes to the Party with the fewest in flight, then to the one
    served least lately)."""
    hostile = [
        (P.NORTHPOWER, P.NP_IS),
        (P.SOUTHENERGY, P.SE_IS),
        (P.WIRESCO, P.WS_ED),
        (P.SUNEXPORT, P.SX_ES),
        (P.AGENTCO, P.AG_RSA),
        (P.FUTURECO, P.FU_XR),
    ]
    mine = {"devices": [P.ESME_1], "senders": "all"}
    with contextlib.ExitStack() as stack:
        stuck = [stack.enter_context(Receiver(answer=lambda path, n: (200, 30))) for _ in hostile]
        fine = stack.enter_context(Receiver())
        deliverer = Deliverer(engine, schedule=[60], per_host=2, concurrency=2, timeout=2)
        moments: dict[str, float] = {"start": time.monotonic()}

        def parties_arrive() -> bool:
            since = time.monotonic() - moments["start"]
            for n, (party, user_id) in enumerate(hostile):
                if since >= 0.4 * n and party not in moments:
                    hook(engine, stuck[n], f"/stuck{n}", party=party, **mine)
                    P.requests_to_esme_1(
                        engine, range(1000 * n, 1000 * n + 40), counter_from=0, user_id=user_id
                    )
                    moments[party] = time.monotonic()
            if since >= 0.4 * len(hostile) + 0.5 and "came" not in moments:
                hook(engine, fine, "/fine", party=P.LOOKER, **mine)
                P.requests_to_esme_1(engine, [9000], counter_from=0)
                moments["came"] = time.monotonic()
            return bool(fine.events("/fine"))

        assert run(deliverer, parties_arrive, seconds=25, cancel=True), moments
        # the most attempts begun to a hostile Party's receiver before the newcomer's arrived
        most = max(arrived_before(fine.received[0], [each]) for each in stuck)
        # when it comes, the hostile Parties that came last have not been sent anything yet
        # (on a quiet machine, two): the next slots that free are theirs, and the next its
        # own, while hostile Parties have their second attempts at most (the slot freed with
        # its own may start one first). So counted in attempts, not as 5.5 s of wall, which
        # a loaded machine took 7.5 s for (session 52); and by arrival, not at a poll, which a
        # loaded machine may take late, after more attempts had begun (session 64)
        assert most <= 2, (moments, most)


def test_a_receiver_spelt_many_ways_gets_one_receivers_share(engine, world) -> None:
    """A Party's watches name one receiver that never answers, spelt four ways the resolver
    reads as one address: each spelling had its own per-receiver bound, four times the
    slots at that receiver."""
    with Receiver(answer=lambda path, n: (200, 30)) as stuck:
        for n, spelling in enumerate(("127.0.0.1", "127.1", "2130706433", "0x7f000001")):
            secret = new_secret()
            url = f"http://{spelling}:{stuck.port}/stuck{n}"
            with engine.begin() as conn:
                create_watch(
                    conn, P.SOUTHENERGY, watch_spec({"name": url, "webhook": {"url": url}}), secret
                )
        lk_requests(engine, *range(1, 11))
        deliverer = Deliverer(engine, schedule=[60], per_host=3, concurrency=16, timeout=3)
        assert deliverer.per_party == 8  # room for all four spellings' three slots each
        run(deliverer, lambda: len(stuck.received) > 2, seconds=2.5)
        # one receiver's, all the Party's but the slot kept for another Party's first
        assert len(stuck.received) == 2


def test_a_party_at_its_bound_does_not_hold_up_others_at_a_receiver_they_share(
    engine, world
) -> None:
    """Parties may share a receiver (a webhook provider's host). A hostile Party holds its
    whole share on a receiver that never answers, and has deliveries queued at the shared
    one, ahead of another Party's: those waited for the hostile Party's slots, and the other
    Party's behind them waited as long."""
    with Receiver(answer=lambda path, n: (200, 30)) as stuck, Receiver() as shared:
        hook(engine, stuck, "/stuck", party=P.SOUTHENERGY)
        hook(engine, shared, "/hostile", party=P.SOUTHENERGY)
        hook(engine, shared, "/other", party=P.WIRESCO)
        lk_requests(engine, *range(1, 11))
        # a time limit of 25 s, ended by a cancel: at 3 s, a loaded machine took 3.4 s to send
        # the second ten and failed a bound of 2.5 s for the load alone (session 52)
        deliverer = Deliverer(engine, schedule=[60], per_host=2, concurrency=4, timeout=25)
        assert deliverer.per_party == 2  # the stuck receiver's two slots are all of it
        moments: dict[str, float] = {}

        def others_get_their_second_ten() -> bool:
            other = len(shared.events("/other"))
            now = time.monotonic()
            if other >= 10 and "first" not in moments:
                moments["first"] = now
            # a moment later the hostile Party's deliveries to the shared receiver are queued
            # there; the next records' deliveries queue behind them
            if "first" in moments and "more" not in moments and now - moments["first"] > 0.5:
                lk_requests(engine, *range(11, 21))
                moments["more"] = time.monotonic()
            if other >= 20 and "done" not in moments:
                moments["done"] = now
            return "done" in moments

        assert run(deliverer, others_get_their_second_ten, seconds=30, cancel=True), moments
        # well before the hostile Party's attempts time out (25 s) and free its slots
        assert moments["done"] - moments["more"] < 15


def test_a_party_holds_at_most_half_of_a_receiver_it_shares_with_others(engine, world) -> None:
    """A webhook provider's host many Parties share: one Party's endpoint there that never
    answers held every slot of the receiver (its Party's share of the worker is larger), and
    another Party's deliveries to the same host waited for its timeouts: 2 of 40 sent in 80 s
    (audit of stalled clients, session 17). A Party now holds at most half of a receiver."""
    slow = lambda path, n: (200, 30 if path.startswith("/stuck") else 0)  # noqa: E731
    with Receiver(answer=slow) as shared:
        for n in range(3):
            hook(engine, shared, f"/stuck{n}", party=P.SOUTHENERGY)
        hook(engine, shared, "/other", party=P.WIRESCO)
        lk_requests(engine, *range(1, 11))
        # a time limit of 30 s, ended by a cancel: no stuck attempt ends in the run, so none
        # frees its slot (at 3 s, a loaded machine may take that to send the ten: session 52)
        deliverer = Deliverer(engine, schedule=[60], per_host=4, concurrency=16, timeout=30)
        assert deliverer.per_party == 8 > deliverer.per_host  # the receiver's bound is the one
        assert run(deliverer, lambda: len(shared.events("/other")) >= 10, seconds=25, cancel=True)
        # counted by arrival, up to the other Party's last delivery: once that is answered the
        # receiver is the stuck Party's alone, whose cap is then all but a slot (Queues), and
        # a poll late on a loaded machine counted a third stuck attempt begun after it (the
        # fresh-clone CI at 871b5fd; counted at the poll since session 39)
        paths = [r.path for r in shared.received]
        last_other = max(i for i, path in enumerate(paths) if path == "/other")
        assert sum(path.startswith("/stuck") for path in paths[:last_other]) <= 2


def test_a_partys_backlog_at_a_shared_receiver_does_not_hold_up_anothers_later_event(
    engine, world
) -> None:
    """A receiver's queue was one for all Parties: one Party's endpoint there that never
    answers filled it, and nothing more was leased for that receiver to anyone until it had
    drained to half, a round of timeouts at a time (audit 26b: another Party's event two
    minutes late). Each Party's queue to a receiver is its own.

    The stuck attempts' time limit (30 s) is past the run's end, the worker ended by a
    cancel: with one queue a receiver, the late event waited for that queue (64) to drain to
    half, 16 rounds of timeouts, so now it arrives before any stuck attempt has timed out.
    Counted in rounds of 3 s timeouts, a loaded machine had begun none 2.2 s in and failed
    for the load alone (session 52), as it had a bound of 2.5 s (session 51)."""
    slow = lambda path, n: (200, 60 if path.startswith("/stuck") else 0)  # noqa: E731
    with Receiver(answer=slow) as shared:
        for n in range(3):
            hook(engine, shared, f"/stuck{n}", party=P.SOUTHENERGY)
        hook(engine, shared, "/other", party=P.WIRESCO)
        deliverer = Deliverer(engine, schedule=[60], per_host=4, concurrency=16, timeout=30)
        stuck: dict[str, int] = {}  # the stuck Party's attempts begun, at a moment

        def stuck_attempts() -> int:
            return sum(1 for r in shared.received if r.path.startswith("/stuck"))

        def the_late_one_arrives() -> bool:
            if "late" not in stuck and stuck_attempts() >= 2:  # the backlog queued, its slots
                lk_requests(engine, 500)
                stuck["late"] = stuck_attempts()
            if any(e["record"]["request_id"].endswith(":1400") for e in shared.events("/other")):
                stuck.setdefault("arrived", stuck_attempts())
            return "arrived" in stuck

        def and_the_rest() -> bool:
            # the other Party's earlier events are not ordered before its late one: on a
            # loaded machine one came after it (59 of 60 at its arrival: the fresh-clone CI,
            # session 64), so each is waited for, not counted at that moment
            return the_late_one_arrives() and len(shared.events("/other")) >= 60

        lk_requests(engine, *range(1, 60))
        assert run(deliverer, and_the_rest, seconds=25, cancel=True), stuck
        # no stuck attempt had timed out (30 s) when the late one arrived: the stuck Party held
        # its slots, at most the receiver's four. Two while the other Party's events waited; a
        # third once none did, a moment a slow machine opens (3 at 568 s of suite, session 68)
        assert stuck["late"] >= 2 and stuck["arrived"] <= 4, stuck
        assert len(shared.events("/other")) == 60  # and each sent once


def test_a_party_alone_at_a_receiver_leaves_a_slot_for_another_partys_first_delivery(
    engine, world
) -> None:
    """Alone at a receiver, a Party whose endpoint there never answers held every slot of it;
    another Party's first delivery there waited for those attempts to time out (audit 26b)."""
    slow = lambda path, n: (200, 30 if path.startswith("/stuck") else 0)  # noqa: E731
    with Receiver(answer=slow) as shared:
        hook(engine, shared, "/stuck", party=P.SOUTHENERGY)
        # a time limit of 30 s, ended by a cancel: it comes before any stuck attempt ends,
        # not within 3 s of wall, which a loaded machine may take (session 52)
        deliverer = Deliverer(engine, schedule=[60], per_host=4, concurrency=16, timeout=30)
        came: list[bool] = []

        def the_newcomers_first_arrives() -> bool:
            if not came and len(shared.received) >= 3:  # the stuck attempts
                hook(engine, shared, "/other", party=P.WIRESCO)
                lk_requests(engine, 500)
                came.append(True)
            return bool(shared.events("/other"))

        lk_requests(engine, *range(1, 21))
        assert run(deliverer, the_newcomers_first_arrives, seconds=25, cancel=True)
        assert len(shared.events("/stuck")) == 3  # all the slots but one


def test_a_receivers_one_slot_is_taken_in_turns_by_the_parties_waiting_for_it(
    engine, world
) -> None:
    """With one slot to a receiver (WEBHOOK_PER_HOST=1), a freed slot went to the oldest
    delivery queued there: a hostile Party's endpoint that never answers had a queue of them
    leased before another Party's first, which waited for every one to time out (16 of them,
    a quarter of an hour at the default time limit). The slot now goes in turns.

    Counted in the stuck attempts begun meanwhile, not as 6.5 s of wall, which a loaded
    machine may take for the load alone (session 52); and from when the newcomer's deliveries
    wait for the slot (leased and queued in the worker, or sent), not from when its records
    were written: matching and leasing them took longer than a stuck attempt at load 15, and
    the attempts begun before they waited were counted against the turns (61g)."""
    slow = lambda path, n: (200, 30 if path.startswith("/stuck") else 0)  # noqa: E731
    with Receiver(answer=slow) as shared:
        hook(engine, shared, "/stuck", party=P.SOUTHENERGY)
        deliverer = Deliverer(engine, schedule=[60], per_host=1, concurrency=4, timeout=1.5)
        stuck: dict[str, int] = {}  # the stuck attempts begun, at a moment

        def stuck_attempts() -> int:
            return sum(1 for r in shared.received if r.path == "/stuck")

        def the_newcomers_three_arrive() -> bool:
            # called on the worker's loop between its steps, so it may read the queues
            if "hooked" not in stuck and shared.received:  # the first stuck attempt
                hook(engine, shared, "/other", party=P.WIRESCO)
                lk_requests(engine, 500, 501, 502)
                stuck["hooked"] = stuck_attempts()
            waiting = P.WIRESCO in deliverer.queues.parties_waiting() or shared.events("/other")
            if "hooked" in stuck and "came" not in stuck and waiting:
                stuck["came"] = stuck_attempts()
            return len(shared.events("/other")) >= 3

        lk_requests(engine, *range(1, 21))
        assert run(deliverer, the_newcomers_three_arrive, seconds=40, cancel=True), stuck
        # counted by arrival, up to the newcomer's third: a poll a moment late also counted
        # the stuck attempt the slot went to once the third was answered (session 64: 1 run
        # in 10 at load 20-25 counted 5 where the arrivals said 4)
        paths = [r.path for r in shared.received]
        third = [i for i, path in enumerate(paths) if path == "/other"][2]
        stuck["arrived"] = sum(path == "/stuck" for path in paths[:third])
        # a stuck attempt between each of the newcomer's (and one that took the slot as it
        # was queued, not yet at the receiver), not sixteen of them
        assert stuck["arrived"] - stuck["came"] <= 3, stuck


def test_one_partys_names_that_never_resolve_do_not_stop_another_partys_deliveries(
    engine, world, monkeypatch
) -> None:
    """Resolving a name blocks a thread. A hostile Party's names whose DNS never answers
    took every thread of the loop's default pool, which the matcher and the leases also use:
    no other Party's webhook went out, and every attempt waiting was charged as failed. Names
    now resolve on threads of their own, once per name, a Party's on at most half of them.
    The hostile names hang until the other Party's ten are sent: told by that order, not by
    5 s of wall that a loaded machine took to send ten at all (session 52)."""
    real = socket.getaddrinfo
    released = threading.Event()

    def slow_dns(host, *args, **kwargs):
        if host.endswith(".slow.test"):  # the hostile Party's own DNS, which never answers
            released.wait(30)
            raise socket.gaierror(-3, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", slow_dns)
    with Receiver() as fine:
        for n in range(4):
            with engine.begin() as conn:
                create_watch(
                    conn,
                    P.SOUTHENERGY,
                    watch_spec(
                        {"name": f"slow{n}", "webhook": {"url": f"https://h{n}.slow.test/"}}
                    ),
                    new_secret(),
                )
        hook(engine, fine, "/fine", party=P.WIRESCO)
        lk_requests(engine, *range(1, 11))
        deliverer = Deliverer(engine, schedule=[60], per_host=2, concurrency=16, timeout=3)

        def all_ten_sent() -> bool:
            if len(fine.events("/fine")) < 10:
                return False
            released.set()  # and only now may the hostile names' threads give up
            return True

        try:
            assert run(deliverer, all_ten_sent, seconds=30)
        finally:
            released.set()


def end_southenergys_supply_in_may(engine) -> None:
    """A registry correction: SOUTHENERGY's supply of ESME-1 ended in May after all."""
    with engine.begin() as conn:
        load_responsibility(
            conn,
            Responsibility(
                P.ESME_1,
                P.SOUTHENERGY,
                "supplier",
                P.CHANGE_OF_SUPPLIER,
                P.t("2025-05-01T00:00:00Z"),
            ),
        )


def test_a_record_the_party_may_no_longer_see_is_not_delivered(engine, world) -> None:
    with Receiver(answer=lambda path, n: (500, 0)) as receiver:
        hook(engine, receiver, "/late")
        lk_requests(engine, 1, at=P.t("2025-06-01T00:00:00Z"))
        deliverer = Deliverer(engine, schedule=[0.3, 0.3, 0.3])
        assert run(deliverer, lambda: len(receiver.received) >= 1)
        end_southenergys_supply_in_may(engine)
        time.sleep(0.4)
        run(Deliverer(engine, schedule=[0.3]), lambda: False, seconds=1)
        assert len(receiver.received) == 1
        with engine.connect() as conn:
            assert pending_count(conn) == 0


def test_deliveries_waiting_to_be_sent_stop_soon_after_a_correction_hides_them(
    engine, world
) -> None:
    """A delivery was checked when leased, then waited in the worker's queue for its
    receiver for as long as its lease (minutes): a registry correction that hid its record
    did not stop it (audit of races, session 16: seven sent up to 4.7 s after the
    correction). What waits is checked again each round.

    The run ends when none of the 20 is left to send, not 2.5 s after the correction: a
    loaded machine had found 14 hidden by then, for the load alone (session 52)."""
    with Receiver(answer=lambda path, n: (200, 0.3)) as receiver:
        hook(engine, receiver, "/slow")
        lk_requests(engine, *range(1, 21), at=P.t("2025-06-01T00:00:00Z"))
        deliverer = Deliverer(engine, schedule=[60], per_host=1, concurrency=4, timeout=5)
        corrected: list[float] = []

        def correct_after_the_first() -> bool:
            if receiver.received and not corrected:
                end_southenergys_supply_in_may(engine)
                corrected.append(time.monotonic())
            if not corrected:
                return False
            with engine.connect() as conn:
                return pending_count(conn) == 0

        assert run(deliverer, correct_after_the_first, seconds=20, poll=STORE_POLL_SECONDS), (
            deliverer.stats
        )
        # the one in flight, and one more that had left its queue as the round checked
        assert len(receiver.received) <= 3, len(receiver.received)
        # found as they waited (15 on a quiet machine; the rest as they were leased, how
        # many hangs on the machine's speed): none left to send, so none was sent after all
        assert deliverer.stats.hidden >= 1, deliverer.stats


def test_a_url_that_turns_unsafe_is_refused_at_delivery(engine, world, monkeypatch) -> None:
    with Receiver() as receiver:
        hook(engine, receiver, "/a")
        monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK")
        settings.reload()
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[5], timeout=1)
        started = time.monotonic()
        assert run(deliverer, lambda: deliverer.stats.failed >= 1)
        assert receiver.received == []
        assert any(e.startswith("refused") for e in deliverer.stats.errors)
        # servicetrail's own refusal is recorded at the attempt's time limit too, as any
        # failure without an answer: at once, how long the check took (a name resolved by
        # the operator's DNS, or not) showed in when its Party saw it (finding 56c)
        assert time.monotonic() - started >= 1, deliverer.stats


def test_a_lease_takes_only_what_each_watch_is_given(engine, world) -> None:
    """A lease asks, per watch with deliveries due, how many to take: a watch given none (its
    receiver busy) keeps all its deliveries due, and the lease does not read them."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import lease_due
    from servicetrail.store.watch_matcher import catch_up

    made = []
    for name in ("busy", "free"):
        with engine.begin() as conn:
            made.append(
                create_watch(
                    conn,
                    P.SOUTHENERGY,
                    watch_spec({"name": name, "webhook": {"url": f"http://127.0.0.1:9/{name}"}}),
                    new_secret(),
                )["id"]
            )
    busy, free = made
    lk_requests(engine, 1, 2, 3)
    catch_up(engine)  # the matcher, which the worker runs
    asked: list[list[tuple[int, str, str]]] = []

    def share(due: list[tuple[int, str, str]]) -> dict[int, int]:
        asked.append(due)
        return {busy: 0, free: 2}

    with engine.begin() as conn:
        leased = lease_due(conn, datetime.now(timezone.utc), 10, timedelta(minutes=5), share)
    assert asked == [
        [
            (busy, "http://127.0.0.1:9/busy", P.SOUTHENERGY),
            (free, "http://127.0.0.1:9/free", P.SOUTHENERGY),
        ]
    ]
    assert [(d.watch_id, d.event_id) for d in leased] == [(free, 1), (free, 2)]
    with engine.connect() as conn:
        assert pending_count(conn, busy) == 3 and pending_count(conn, free) == 3
    with engine.begin() as conn:  # the two leased are not due again; the busy watch's all are
        again = lease_due(conn, datetime.now(timezone.utc), 10, timedelta(minutes=5))
    assert sorted((d.watch_id, d.event_id) for d in again) == [
        (busy, 1),
        (busy, 2),
        (busy, 3),
        (free, 3),
    ]


def test_a_store_that_fails_for_a_while_pauses_the_worker_and_it_carries_on(
    engine, world, monkeypatch
) -> None:
    """PostgreSQL: every connection of the worker ended by the server (a restart); SQLite: the
    write lock held past the busy timeout. Either way the worker pauses, then delivers what
    was stored meanwhile (it used to log the error and stop until the server restarted)."""
    import sqlite3

    from sqlalchemy import text

    from servicetrail.store import engine as store_engine

    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE_SECONDS", 3600.0)
    # the worker's own engine, made with those settings (a pooled connection keeps its own)
    workers = store_engine.open_store(engine.url.render_as_string(hide_password=False))
    with Receiver() as receiver:
        hook(engine, receiver, "/a")
        lk_requests(engine, 1)
        deliverer = Deliverer(workers, schedule=[0.1])
        state: dict = {"step": "deliver one"}

        def until() -> bool:
            delivered = {e["event_id"] for e in receiver.events("/a")}
            if state["step"] == "deliver one" and delivered == {1}:
                state["step"] = "failing"
                if engine.dialect.name == "postgresql":
                    with engine.connect() as conn:  # every other connection, the worker's too
                        conn.execute(
                            text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            )
                        )
                    lk_requests(engine, 2)
                else:  # a record to match, then the lock: matching it fails within 50 ms
                    lk_requests(engine, 2)
                    lock = sqlite3.connect(engine.url.database, isolation_level=None)
                    lock.execute("BEGIN IMMEDIATE")
                    state.update(lock=lock, until=time.monotonic() + 1.0)
            if "lock" in state and time.monotonic() > state["until"]:
                state.pop("lock").rollback()
            return delivered == {1, 2}

        assert run(deliverer, until, seconds=30), receiver.events("/a")
    workers.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_worker_paused_on_a_store_away_carries_on_once_it_is_back(
    engine, world, monkeypatch
) -> None:
    """Paused on a store that could not be reached, the worker waited out its pause (doubling
    to 30 s) after the store came back (audit 54g: 18.7 s after a PostgreSQL restart). It asks
    the store while paused, and carries on at its first answer. The store is away to the
    worker's connections alone, each new one refused, as by a server restarting; pauses of
    8 s, probes every 0.1 s. About a second: the worker must fail a round, find the store away
    by a probe and then back; without the fix it delivers once its pause is out, 8 s after its
    first refusal at the soonest. The store came back 0.3 s after that refusal, and delivery
    had 1.5 s from there: at load 15-28 on two cores the first probe had not run by then (a
    store back before any probe found it away keeps the pause, as designed), and delivery
    came 2.76 s after (session 57). So the store comes back once a probe has found it away,
    and the worker must deliver before its pause could have ended: an ordering, not a time.
    PostgreSQL alone: the worker's code is the same on both engines."""
    import psycopg
    from sqlalchemy import event, exc

    from servicetrail.store.engine import open_store
    from servicetrail.webhooks import deliver

    pause = 8.0  # the margin a loaded machine's probe and round have (passing, ~1 s in all)
    monkeypatch.setattr(deliver, "PAUSE_SECONDS", pause)
    monkeypatch.setattr(deliver, "PROBE_SECONDS", 0.1)
    probes: list[bool] = []
    answers = Deliverer._store_answers

    def probe(self: Deliverer) -> bool:
        probes.append(answers(self))
        return probes[-1]

    monkeypatch.setattr(Deliverer, "_store_answers", probe)
    workers = open_store(engine.url.render_as_string(hide_password=False))
    away = threading.Event()
    refused: list[float] = []

    @event.listens_for(workers, "checkout")
    def gone(*_: object) -> None:
        if away.is_set():
            raise exc.DisconnectionError  # the pooled connection: ended by the restart

    @event.listens_for(workers, "do_connect")
    def refuse(*_: object) -> None:
        if away.is_set():
            refused.append(time.monotonic())
            raise psycopg.OperationalError("connection refused")

    with Receiver() as receiver:
        hook(engine, receiver, "/a")
        lk_requests(engine, 1)
        deliverer = Deliverer(workers, schedule=[0.1])
        state: dict = {}

        def until() -> bool:
            delivered = {e["event_id"] for e in receiver.events("/a")}
            if not state and delivered == {1}:
                state["away"] = time.monotonic()
                away.set()
                lk_requests(engine, 2)
            if away.is_set() and False in probes:  # the worker has found the store away
                away.clear()
                state["back"] = time.monotonic()
            if delivered == {1, 2}:
                state.setdefault("delivered", time.monotonic())
            return delivered == {1, 2}

        assert run(deliverer, until, seconds=pause + 10), receiver.events("/a")
    workers.dispose()
    # its pause began after its first refusal: delivered sooner, the pause was cut short
    assert state["delivered"] - refused[0] < pause, (state, refused[0])


def test_a_round_the_store_fails_lets_the_attempts_in_flight_finish(
    engine, world, monkeypatch
) -> None:
    """A round the store failed (SQLite's write lock held past the busy timeout by an ingest;
    PostgreSQL's connections ended) cancelled every attempt in flight: the receiver had those
    requests already, no outcome was recorded, and each was sent again when its lease ended
    (finding 47i 2: 15 of 120 twice). The attempts finish while the worker pauses, and the
    next round records them: each webhook-id arrives once. One to two seconds: the attempts must
    be in flight across the failure and the pause, and before the fix the second sends come
    only when the leases end (10 s). The 5-s limit on 0.4-s answers and the 10-s lease (an
    attempt starts within 2.5 s of its lease) are for a loaded machine: at a 2-s limit and a
    4-s lease (1 s to start), 1 run in 10 at load 14 had 7 of 8 answers past their limit and
    one attempt not started (session 64); a quiet run takes as long either way."""
    import sqlite3

    from sqlalchemy import text

    from servicetrail.store import engine as store_engine

    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(store_engine, "PING_AFTER_IDLE_SECONDS", 3600.0)
    workers = store_engine.open_store(engine.url.render_as_string(hide_password=False))
    with Receiver(answer=lambda path, n: (200, 0.4)) as slow:
        hook(engine, slow, "/slow")
        lk_requests(engine, *range(1, 9))
        deliverer = Deliverer(workers, schedule=[60], timeout=5, lease_seconds=10)
        state: dict = {}

        def until() -> bool:
            if not state and len(slow.received) == 8:  # all in flight, answered in 0.4 s
                state["failed"] = True
                lk_requests(engine, 9)  # a record to match: the next round writes
                if engine.dialect.name == "postgresql":
                    with engine.connect() as conn:  # every other connection, the worker's too
                        conn.execute(
                            text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                            )
                        )
                else:
                    lock = sqlite3.connect(engine.url.database, isolation_level=None)
                    lock.execute("BEGIN IMMEDIATE")
                    state.update(lock=lock, until=time.monotonic() + 0.3)
            if "lock" in state and time.monotonic() > state["until"]:
                state.pop("lock").rollback()
            return deliverer.stats.delivered >= 9

        assert run(deliverer, until, seconds=20), deliverer.stats
    workers.dispose()
    sent = [r.headers["webhook-id"] for r in slow.received]
    assert len(sent) == len(set(sent)) == 9, sorted(sent)
    with engine.connect() as conn:
        assert pending_count(conn) == 0


def test_a_cancelled_worker_ends_its_attempts_in_flight_at_once(engine, world) -> None:
    """Attempts in flight outlive a failed round (above), not a shutdown: a worker cancelled
    (asyncio's Runner at Ctrl-C) ends them at once, before its client session closes under
    them, which would have counted them as failed attempts.

    "At once" is well under the attempt's time limit (30 s), not under 1 s, which a loaded
    machine may take to end the worker for the load alone (session 52)."""
    with Receiver(answer=lambda path, n: (200, 60)) as stuck:
        hook(engine, stuck, "/stuck")
        lk_requests(engine, 1)
        deliverer = Deliverer(engine, schedule=[60], timeout=30)

        async def main() -> float:
            worker = asyncio.create_task(deliverer.run(asyncio.Event()))
            deadline = time.monotonic() + 10
            while not stuck.received and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert stuck.received
            worker.cancel()
            cancelled = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await worker
            return time.monotonic() - cancelled

        assert asyncio.run(main()) < 10
    assert (deliverer.stats.delivered, deliverer.stats.failed) == (0, 0)


LOCK_GIVEN_UP = 0.05  # seconds


@pytest.fixture
@starts_with_personas
def store_lockable(sqlite_url, monkeypatch):
    """A SQLite store with one delivery queued, whose writes give up at once (50 ms) while
    the test holds the write lock: a store that fails a round (a Deliverer's rounds wait
    their own `lock_wait_seconds`: LOCK_GIVEN_UP; its default, 10 s, each test waited)."""
    from servicetrail.store import engine as store_engine
    from servicetrail.store.watch_matcher import match_new_records

    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", int(LOCK_GIVEN_UP * 1000))
    engine = store_engine.open_store(sqlite_url)
    P.load_personas(engine)
    made = unreached_watch(engine)
    lk_requests(engine, 1)
    with engine.begin() as conn:
        match_new_records(conn)
    yield engine, made["id"]
    engine.dispose()


def write_locked(engine):
    import sqlite3

    lock = sqlite3.connect(engine.url.database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    return lock


def test_a_failed_rounds_failures_are_counted_once(store_lockable, caplog) -> None:
    """A round the store fails puts its outcomes back for the next round; it had counted
    their failures in the operator's warning already, and the next round counted them again
    (session 36's note): one failed attempt was reported as two."""
    import logging

    from sqlalchemy import text

    from servicetrail.store.outbox import Outcome
    from servicetrail.webhooks.worker_report import FailureLog

    engine, watch_id = store_lockable
    deliverer = Deliverer(engine, schedule=[60], lock_wait_seconds=LOCK_GIVEN_UP)
    deliverer.failure_log = FailureLog(every=0)  # each round's failures said at once
    failed = [Outcome(watch_id, 1, 0, "failed", "answered 503")]
    lock = write_locked(engine)
    with caplog.at_level(logging.WARNING, "servicetrail.webhooks"):
        with pytest.raises(Exception, match="locked"):
            deliverer._settle_and_lease(0, [], failed)
        lock.rollback()
        kept, deliverer._outcomes = deliverer._outcomes, []
        assert kept == failed  # put back for the next round
        deliverer._settle_and_lease(0, [], kept)
    said = [r.getMessage() for r in caplog.records if "to be retried" in r.getMessage()]
    assert said == [
        f"1 webhook deliveries failed, to be retried: watch {watch_id}: 1 (answered 503)"
    ]
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT attempts, last_error FROM webhook_outbox")).all()
    assert recorded == [(1, "answered 503")]


def test_a_stop_whose_last_round_the_store_fails_says_what_was_not_recorded(
    store_lockable, caplog
) -> None:
    """The last round at a stop, the store down: its attempts were neither recorded nor
    counted in any warning, and the stop raised (review 37a)."""
    import logging

    from servicetrail.store.outbox import Outcome

    engine, watch_id = store_lockable
    deliverer = Deliverer(engine, schedule=[60], lock_wait_seconds=LOCK_GIVEN_UP)
    attempts = [
        Outcome(watch_id, 1, 0, "failed", "answered 503"),
        Outcome(watch_id, 2, 0, "delivered"),
    ]
    lock = write_locked(engine)
    try:
        with caplog.at_level(logging.WARNING, "servicetrail.webhooks"):
            deliverer._settle_and_release([], attempts)
    finally:
        lock.rollback()
    said = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "the last 2 webhook attempts (1 of them failed) were not recorded; their deliveries "
        "come due again when their leases end: "
    )


def test_a_clean_stop_leaves_what_it_had_queued_due_at_once(engine, world) -> None:
    """Deliveries leased ahead and still queued when a worker stopped cleanly stayed leased
    until the lease ended: after a deploy the next worker sent them 4.6 minutes late (audit
    21a). They are released at the stop, due again with their attempts as they were."""
    from sqlalchemy import select

    from servicetrail.store.watch_tables import webhook_outbox

    with Receiver(answer=lambda path, n: (200, 0.5)) as slow:
        hook(engine, slow, "/slow")
        lk_requests(engine, *range(1, 21))
        deliverer = Deliverer(engine, schedule=[60], per_host=1, concurrency=2, timeout=5)
        assert run(deliverer, lambda: len(slow.received) >= 1, seconds=15)
        sent = len(slow.received)
        with engine.connect() as conn:
            rows = conn.execute(
                select(webhook_outbox.c.attempts, webhook_outbox.c.next_attempt_at)
            ).all()
        assert len(rows) == 20 - sent and rows
        now = datetime.now(timezone.utc)
        assert all(attempts == 0 and at <= now for attempts, at in rows), rows
        again = Deliverer(engine, schedule=[60], per_host=4, concurrency=8, timeout=5)
        assert run(again, lambda: len(slow.received) >= 20, seconds=15)


def test_a_delivery_whose_lease_ends_before_its_attempt_is_not_sent_on_it(engine, world) -> None:
    """Deliveries wait in a worker's queue for a slot; one that waited past its lease is due
    again in the store, and another worker leases and sends it: sent by the first all the
    same, it went out twice (review 31a: 11 attempts after their lease, with many hostile
    Parties' queues). Two workers, a receiver that never answers, one slot each and a short
    lease: no webhook-id arrives twice (each is attempted once, its retry a minute away)."""
    with Receiver(answer=lambda path, n: (200, 30)) as stuck:
        hook(engine, stuck, "/stuck")
        lk_requests(engine, *range(1, 13))
        workers = [
            Deliverer(
                engine, schedule=[60], per_host=1, concurrency=1, timeout=0.5, lease_seconds=2.5
            )
            for _ in range(2)
        ]

        async def both() -> None:
            stop = asyncio.Event()
            running = [asyncio.create_task(w.run(stop)) for w in workers]
            # past two leases, and on until six are sent: in 6 s alone a machine at load 27
            # sent two (session 64); the longer the two run, the more leases end under them
            begun = time.monotonic()
            while time.monotonic() - begun < 6 or (
                len(stuck.received) < 6 and time.monotonic() - begun < 30
            ):
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*running)

        asyncio.run(both())
    sent = [r.headers["webhook-id"] for r in stuck.received]
    assert len(sent) >= 6, sent  # both workers sent, a lease's worth and more
    assert len(sent) == len(set(sent)), sorted(sent)


def test_a_delivery_queued_past_its_first_lease_is_sent_on_it_renewed(engine, world) -> None:
    """Leases are short and renewed while the worker holds them (RENEW_SECONDS), so that a
    worker killed leaves its deliveries for seconds, not minutes (audit 47a). Unrenewed, a
    delivery that waited in the queue past its lease was dropped unsent and leased again when
    the lease ended: late, and with an access-log entry for each lease, so the log said the
    record was sent to the receiver twice. One slot, 0.5-s limits, 3-s leases, 8 deliveries
    queued at once: unrenewed, a lease lets one start no later than 1.75 s in (its limit and
    a quarter of the lease left), and the fifth waits 2 s, the eighth 3.5 s, past the lease.
    Each is leased once, sent once.

    The receiver never answers in time, so each attempt takes its whole limit, and a loaded
    machine only makes the wait longer: with 0.3-s answers (the queue's wait 2.4 s), 1 run
    in 4 at load 27 had one answer past its 0.5-s limit, retried a minute later (session
    64). A failed attempt is still sent once: its retry is on the schedule (60 s). So the
    test waits for the worker's eight attempts to end, not for eight to reach the receiver:
    on a loaded machine an attempt's request may not reach it within the 0.5 s (1 run in 8,
    session 66), and it is attempted once all the same."""
    from sqlalchemy import text

    with Receiver(answer=lambda path, n: (200, 30)) as stuck:
        hook(engine, stuck, "/stuck")
        lk_requests(engine, *range(1, 9))
        worker = Deliverer(
            engine, schedule=[60], per_host=1, concurrency=1, timeout=0.5, lease_seconds=3
        )
        began = time.monotonic()
        attempted = run(worker, lambda: worker.stats.failed >= 8, seconds=20)
        took = time.monotonic() - began
    sent = [r.headers["webhook-id"] for r in stuck.received]
    with engine.connect() as conn:
        leases = conn.execute(
            text("SELECT count(*) FROM access_log WHERE action = 'deliver'")
        ).scalar_one()
        outbox = conn.execute(
            text("SELECT attempts, next_attempt_at, last_error FROM webhook_outbox")
        ).all()
    # all a CI log keeps of a failure: what was sent, in how long, and what the store and
    # the worker say of the rest (64e)
    seen = f"{took:.1f} s, leases {leases}, {worker.stats}, outbox {outbox}, sent {sorted(sent)}"
    assert attempted and worker.stats.failed == 8 and leases == 8, seen
    assert len(sent) == len(set(sent)), seen


class LeaseLeftAtStart:
    """How much of its lease the store says each attempt has left as it starts (`left`,
    seconds): noted as the worker's post begins, not as the receiver reads it, which lags
    by what a loaded machine takes to connect (over 0.3 s, for the load alone: session 52);
    that lag is the attempt's own time, within its time limit. Only the moment is noted on
    the worker's loop: the store's lease ends are read once the lease has ended (`read`),
    as a query at each start blocked the loop it measured, within the attempt's time limit
    (64e). No round renews the lease meanwhile (`rounds_failing_once_leased`)."""

    def __init__(self, engine, worker: Deliverer) -> None:
        self.engine = engine
        self.started: list[tuple[int, int, datetime]] = []
        self.ends: dict[tuple[int, int], datetime] = {}
        post = worker._post

        async def noted(session, delivery, answered=None):
            moment = datetime.now(timezone.utc)
            self.started.append((delivery.watch_id, delivery.event_id, moment))
            return await post(session, delivery, answered)

        worker._post = noted  # type: ignore[method-assign]

    def read(self) -> None:
        from sqlalchemy import select

        from servicetrail.store.watch_tables import webhook_outbox

        outbox = webhook_outbox.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox.watch_id, outbox.event_id, outbox.next_attempt_at))
            self.ends = {(watch, event): at for watch, event, at in rows}

    @property
    def left(self) -> list[float]:
        """Of every attempt started, those after `read` too (past the lease: a failure)."""
        left = []
        for watch_id, event_id, started in self.started:
            end = self.ends[watch_id, event_id]
            if end.tzinfo is None:
                end = end.replace(tzinfo=timezone.utc)
            left.append((end - started).total_seconds())
        return left


def rounds_failing_once_leased(worker: Deliverer) -> list[float]:
    """The worker's rounds fail in the store (SQLite's write lock held, say) once one has
    leased: its attempts go on from its queue, and no round renews their leases, which run
    down to their end (renewed, a lease is topped up each round, and an attempt's start
    never met one near its end: the tests below caught no fix of theirs alone). Gives a list
    that holds, once the lease is taken, when it ends (the worker's monotonic clock, at the
    latest)."""
    import sqlite3

    settle = worker.rounds.settle
    ends: list[float] = []

    def failing(*args, **kwargs):
        if ends:
            raise sqlite3.OperationalError("database is locked")
        settled = settle(*args, **kwargs)
        if settled[0].leased:
            ends.append(time.monotonic() + worker.lease.total_seconds())
        return settled

    worker.rounds.settle = failing  # type: ignore[method-assign]
    return ends


def lease_left_at_each_attempt(
    engine, task_factory=None, timeout: float = 0.5, concurrency: int = 1, enough: int = 2
) -> tuple[list[float], list[Stats]]:
    """One worker (a slot to the receiver, `timeout`-s attempts, 4 s leases) with 30
    deliveries for a receiver that never answers in time, its rounds failing once it has
    leased (`rounds_failing_once_leased`), until that lease ends: so one attempt every
    `timeout` seconds, in every phase of the lease, the last ones near its end. It leases
    8 x `concurrency` (a Party's share of its queue), enough for the lease at 0.5 s each,
    twice that for 0.25 s. How much of its lease each had left as it started, and the
    workers' counts.

    A loaded machine may take most of a lease to start the first attempt, and the worker
    rightly starts none on what is left (six test workers on two cores: none in 2 runs of 8,
    session 66): then a new worker leases what that lease let go, up to three times, until
    `enough` attempts have started."""
    with Receiver(answer=lambda path, n: (200, 30)) as stuck:
        hook(engine, stuck, "/stuck")
        lk_requests(engine, *range(1, 31))
        left: list[float] = []
        stats: list[Stats] = []
        for _ in range(3):
            worker = Deliverer(
                engine,
                schedule=[60],
                per_host=1,
                concurrency=concurrency,
                timeout=timeout,
                lease_seconds=4,
            )
            left += _lease_left_on_one_lease(engine, worker, task_factory)
            stats.append(worker.stats)
            if len(left) >= enough:
                break
    return left, stats


def _lease_left_on_one_lease(engine, worker: Deliverer, task_factory) -> list[float]:
    noted = LeaseLeftAtStart(engine, worker)
    lease_ends = rounds_failing_once_leased(worker)

    async def a_while() -> None:
        if task_factory is not None:
            asyncio.get_running_loop().set_task_factory(task_factory)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 30  # the lease, and the matching before it
        while not (lease_ends and time.monotonic() > lease_ends[0]):
            assert time.monotonic() < deadline, "nothing was leased"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(noted.read)  # what no round has touched since the lease
        stop.set()
        await running

    asyncio.run(a_while())
    return noted.left


def test_a_slot_that_frees_starts_the_next_queued_delivery_at_once(engine, world) -> None:
    """An attempt's end starts the next delivery queued (`_attempt`), in its slot: counted
    as still taken by the attempt that freed it, the slot of a worker at its concurrency
    waited for the next round (one slot here: nothing more was sent while rounds failed)."""
    with Receiver() as receiver:
        hook(engine, receiver, "/fine")
        lk_requests(engine, 1, 2, 3)
        worker = Deliverer(engine, schedule=[60], per_host=1, concurrency=1, timeout=5)
        rounds_failing_once_leased(worker)
        assert run(worker, lambda: len(receiver.received) >= 3, seconds=10), receiver.received


def test_an_attempt_leaves_its_lease_the_time_to_record_what_came_of_it(engine, world) -> None:
    """An outcome is recorded in the round after its attempt: a delivery started with no more
    than its attempt's time left on its lease ended as the lease did, and a worker that leased
    it in between sent it again (two workers, two busy cores: a webhook-id arrived twice,
    session 40). Each attempt starts with its time and a quarter of the lease (at most 5 s) to
    spare.

    Attempts of 0.25 s, so that a loaded machine, whose first attempt may start 1.7 s into
    the lease, still fits more than one in what is left: at 0.5 s, 1 run in 4 at load 27
    sent one alone (session 64)."""
    left, stats = lease_left_at_each_attempt(engine, timeout=0.25, concurrency=2)
    assert len(left) >= 2, (left, stats)  # about ten on a quiet machine, fewer on a loaded one
    # 0.25 s to send and 1 s to record, as it starts
    assert min(left) > 1.0, (sorted(left), stats)


def test_an_attempt_whose_loop_stalled_after_its_dispatch_still_leaves_its_lease_that_time(
    engine, world
) -> None:
    """The same, with the worker's loop blocked for 1.3 s as each attempt is dispatched (as by
    other work on a busy machine), before the attempt first runs: the lease was checked at
    dispatch only, so the second attempt of a lease went out 0.9 s before the lease ended,
    with no time left to record it. Checked again as it starts, it is not sent on that lease
    (nor on one that such stalls eat away while it waits in the queue)."""

    def stalled_after_each_dispatch(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if getattr(coro, "__qualname__", "") == "Deliverer._attempt":
            time.sleep(1.3)  # the loop blocked: the attempt's task has not run yet
        return task

    left, stats = lease_left_at_each_attempt(engine, stalled_after_each_dispatch, enough=1)
    assert left, ("nothing was sent", stats)
    assert min(left) > 1.2, (sorted(left), stats)


@starts_with_personas
def test_a_round_failed_to_break_a_deadlock_runs_again(pg_engine, caplog) -> None:
    """PostgreSQL fails one transaction of a deadlock: a round so failed paused the worker,
    and what it had leased came due again when the lease ended, minutes later and sent
    twice. It runs again at once. The deadlock here is with a transaction of the test's,
    which holds the access log and then takes a delivery the round holds, and waits long
    before it looks for a deadlock (deadlock_timeout), so that the round is the one failed:
    in its lease's access-log entry, which goes through the driver (store.access_writer),
    whose errors SQLAlchemy does not wrap: such a deadlock failed the round (audit 60e)."""
    import threading

    from sqlalchemy import text

    from servicetrail.store.access_log import entries_after
    from servicetrail.store.outbox import Outcome
    from servicetrail.store.watch_matcher import match_new_records

    P.load_personas(pg_engine)
    made = unreached_watch(pg_engine)
    lk_requests(pg_engine, 1, 2, 3)
    with pg_engine.begin() as conn:
        match_new_records(conn)
    deliverer = Deliverer(pg_engine, schedule=[60])
    with pg_engine.connect() as conn:
        first, second, third = conn.execute(
            text("SELECT event_id FROM webhook_outbox WHERE watch_id = :w ORDER BY event_id"),
            {"w": made["id"]},
        ).scalars()
    outcomes = [
        Outcome(made["id"], first, 0, "delivered"),
        Outcome(made["id"], second, 0, "delivered"),
    ]
    failures: list[BaseException] = []
    leased: list[int] = []

    def settle() -> None:
        try:
            leased.extend(d.event_id for d in deliverer._settle_and_lease(1, [], outcomes).leased)
        except BaseException as e:  # the test's to judge
            failures.append(e)

    mark = "SELECT 1 FROM webhook_outbox WHERE watch_id = :w AND event_id = :e FOR UPDATE"
    log_waited_for = text(
        "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'access_log'::regclass"
        " AND NOT granted)"
    )
    with pg_engine.connect() as other, caplog.at_level("INFO", logger="servicetrail.webhooks"):
        other.execute(text("SET deadlock_timeout = '20s'"))
        other.execute(text("LOCK TABLE access_log IN SHARE MODE"))
        round_ = threading.Thread(target=settle, daemon=True)
        round_.start()
        # the round holds both, and its lease's entry waits for the log: seen in pg_locks.
        # A fixed 0.5 s was too short for a round late to start (under load): the test then
        # took the delivery first, no deadlock formed, and it passed having tested nothing
        assert wait_until(lambda: other.execute(log_waited_for).scalar_one(), 30), failures
        other.execute(text(mark), {"w": made["id"], "e": first})  # granted once it failed
        other.rollback()
        round_.join(30)
    assert not round_.is_alive() and failures == [] and leased == [third]
    assert "met another change in a deadlock; it runs again" in caplog.text
    with pg_engine.connect() as conn:
        assert pending_count(conn) == 1 and deliverer._outcomes == []
        assert [e.action for e in entries_after(conn, 0, 10)] == ["deliver"]


@starts_with_personas
def test_a_410_during_a_registry_change_is_recorded_and_its_webhook_leased_nothing(
    pg_engine,
) -> None:
    """Turning a webhook off waits for no registry change (review 35d: behind one waiting for
    a stalled ingest batch, the rounds stalled with no end): the round records every outcome,
    the 410's deleting its watch's deliveries, and leases on, but nothing of that watch until
    a round after the change turns its webhook off (put off whole, the 410's delivery was
    sent again each time its lease ended: review 35e). What waits to be turned off is kept
    in the store: another worker, or this one restarted, leases nothing of it either, and
    turns it off (kept in one worker's memory, the others went on sending: session 35)."""
    import threading

    from sqlalchemy import text

    from servicetrail.store.outbox import Outcome
    from servicetrail.store.visibility_index import lock_registry
    from servicetrail.store.watch_matcher import match_new_records
    from servicetrail.store.watches import list_watches

    P.load_personas(pg_engine)
    gone, fine = (unreached_watch(pg_engine, n) for n in ("gone", "fine"))
    lk_requests(pg_engine, 1, 2, 3)
    with pg_engine.begin() as conn:
        match_new_records(conn)
    deliverer = Deliverer(pg_engine, schedule=[60])
    outcomes = [
        Outcome(gone["id"], 1, 0, "gone"),
        Outcome(fine["id"], 1, 0, "delivered"),
    ]
    waiting = text("SELECT watch_id, event_id FROM webhook_outbox ORDER BY watch_id, event_id")

    def enabled() -> dict[int, bool]:
        with pg_engine.connect() as conn:
            listed = list_watches(conn, P.SOUTHENERGY, with_state=True)
        return {w["id"]: w["webhook"]["enabled"] for w in listed}

    def round_(worker: Deliverer, room: int, outcomes: list[Outcome]) -> list:
        leased: list = []
        thread = threading.Thread(
            target=lambda: leased.extend(worker._settle_and_lease(room, [], outcomes)[0]),
            daemon=True,
        )
        thread.start()
        thread.join(10)
        assert not thread.is_alive()  # it waited for the change
        return leased

    with pg_engine.connect() as change:
        lock_registry(change)
        round_(deliverer, 0, outcomes)
        with pg_engine.connect() as conn:
            assert conn.execute(waiting).all() == [(fine["id"], 2), (fine["id"], 3)]
        assert deliverer._outcomes == [] and enabled() == {gone["id"]: False, fine["id"]: True}
        with pg_engine.begin() as conn:  # one of its deliveries due again all the same
            conn.execute(
                text(
                    "INSERT INTO webhook_outbox (watch_id, event_id, next_attempt_at) "
                    "VALUES (:w, 3, now() - interval '1 second')"
                ),
                {"w": gone["id"]},
            )
        for worker in (deliverer, Deliverer(pg_engine, schedule=[60])):  # another, or restarted
            leased = round_(worker, 10, [])
            assert sorted((d.watch_id, d.event_id) for d in leased) == [
                (fine["id"], 2),
                (fine["id"], 3),
            ]
            with pg_engine.begin() as conn:  # as if their leases had ended (never queued here)
                conn.execute(text("UPDATE webhook_outbox SET next_attempt_at = now()"))
        change.rollback()
    round_(Deliverer(pg_engine, schedule=[60]), 10, [])  # a worker that never saw the 410
    assert enabled() == {gone["id"]: False, fine["id"]: True}
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_gone")).scalar_one() == 0


def test_a_worker_back_from_a_stall_leaves_a_failure_to_the_worker_that_took_its_lease(
    engine, world
) -> None:
    """A worker stalled with two attempts in flight; one delivery's lease lapsed and another
    worker leased it and is sending it. Back, the first recorded both failures: that one's set
    its row due again in 5 s under the other's attempt, and a third send overlapped the
    second's (audit 47i: 20 overlapping attempts of 40 webhook-ids). Its own is recorded."""
    from sqlalchemy import select

    from servicetrail.store.outbox import lease_due
    from servicetrail.store.watch_tables import webhook_outbox

    two_deliveries(engine)
    worker = Deliverer(engine, schedule=[5.0, 5.0], concurrency=4, per_host=4, timeout=15)
    leased, _, _, store_end = worker._settle_and_lease(10, [], [])
    assert len(leased) == 2
    for delivery in leased:
        worker.queues.add(delivery, ("hooks.example.com", 443), time.monotonic() + 30, store_end)
    in_flight = worker.queues.start(2, 0.0)
    other_now = store_end + timedelta(seconds=1)  # the lease lapsed: another worker's now
    with engine.begin() as conn:
        [taken] = lease_due(conn, other_now, 1, timedelta(seconds=30))
    for delivery, host in in_flight:  # back: both attempts failed
        worker.queues.finished(delivery, host)
        worker._outcome(delivery, 500, "")
    worker._settle_and_lease(0, [], worker._take_outcomes())
    o = webhook_outbox.c
    with engine.connect() as conn:
        rows = dict(conn.execute(select(o.event_id, o.attempts)).tuples().all())
    assert rows == {
        taken.event_id: 0,  # the other worker's to record
        3 - taken.event_id: 1,  # the first's own lease: recorded
    }


def test_a_round_waits_for_another_s_lock_a_while_not_for_ever(engine, world) -> None:
    """A round behind another's lock (an administrator's LOCK TABLE, a long transaction
    holding the outbox's rows) waited for ever on PostgreSQL, the worker stalled and its log
    silent (review 48a); on SQLite it waited the busy timeout. It waits the worker's lock
    wait, then fails as a busy store, which pauses the worker and says so."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as StillWaiting

    from sqlalchemy import text

    from servicetrail.store.limits import store_busy
    from servicetrail.store.watch_matcher import catch_up

    with Receiver() as receiver:
        hook(engine, receiver, "/hook")
        lk_requests(engine, 1)
        catch_up(engine)  # a delivery due: the round's lease writes
        deliverer = Deliverer(engine, schedule=[60], lock_wait_seconds=0.2)
        with engine.connect() as holder, ThreadPoolExecutor(1) as pool:
            if engine.dialect.name == "postgresql":
                holder.execute(text("LOCK TABLE webhook_outbox IN ACCESS EXCLUSIVE MODE"))
            else:
                holder.exec_driver_sql("BEGIN IMMEDIATE")
            round_ = pool.submit(deliverer._settle_and_lease, 5, [], [])
            try:
                failed = round_.exception(timeout=5)
            except StillWaiting:
                failed = None
            finally:
                holder.rollback()
        assert failed is not None and store_busy(failed) is not None, failed


def test_a_store_upgraded_under_the_worker_stops_it_saying_so(engine, world, monkeypatch) -> None:
    """It paused and tried again for ever, on a schema it did not know (audit 48d): stopped,
    `servicetrail deliver` says why and exits 2."""
    from servicetrail.store import schema_watch
    from servicetrail.store.schema_watch import StoreUpgraded

    monkeypatch.setattr(schema_watch, "CHECK_EVERY_SECONDS", 0.0)
    stamped_behind(engine, "0026_later")

    async def until_it_stops() -> None:
        await asyncio.wait_for(Deliverer(engine, schedule=[0.1]).run(asyncio.Event()), 5)

    with pytest.raises(StoreUpgraded, match="revision 0026_later"):  # at once, not in 5 s
        asyncio.run(until_it_stops())


@starts_with_personas
def test_the_worker_sheds_what_a_watch_deleted_at_once_left(pg_engine, monkeypatch) -> None:
    """Review 50d: a server's deletion of a watch answers once the watch is gone, and leaves
    a large backlog (past ANSWER_STEPS) to the webhook worker every server runs."""
    from servicetrail.store import watches as store_watches

    P.load_personas(pg_engine)
    monkeypatch.setattr(store_watches, "SHED_STEP", 2)
    monkeypatch.setattr(store_watches, "ANSWER_STEPS", 0)  # all of it left
    with pg_engine.begin() as conn:
        made = create_watch(conn, P.SOUTHENERGY, watch_spec({"name": "w"}), new_secret())["id"]
    lk_requests(pg_engine, 1, 2, 3, 4, 5)
    deliverer = Deliverer(pg_engine)
    assert run(deliverer, lambda: _events_of(pg_engine, made) == 5, 10, poll=STORE_POLL_SECONDS)
    assert store_watches.delete_watch_at_once(pg_engine, P.SOUTHENERGY, made)
    assert _events_of(pg_engine, made) == 5
    assert run(
        Deliverer(pg_engine), lambda: _events_of(pg_engine, made) == 0, 10, poll=STORE_POLL_SECONDS
    )


def _events_of(engine, watch_id: int) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM watch_event WHERE watch_id = :w"), {"w": watch_id}
        ).scalar_one()
