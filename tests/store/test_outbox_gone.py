"""A webhook whose receiver answered 410 Gone, turned off apart from the outbox's leases
(store/outbox_gone.py): kept while its watch's row is held or a registry change is at work,
off at once for every worker all the same, its queue dropped a bounded step a round, and
never a lock taken out of the order the matcher, deletions and leases take them in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine

from servicetrail.store import watch_matcher
from servicetrail.store import watches as store_watches
from servicetrail.store.watch_events import mark_read
from servicetrail.store.watch_matcher import match_new_records
from servicetrail.store.watches import delete_watch, list_watches
from tests.personas import SOUTHENERGY, World, load_personas, starts_with_personas
from tests.store.watch_world import (
    add_watch,
    append,
    events,
    in_background,
    lk_request,
    match_all,
    transaction_in_background,
)


@starts_with_personas
def test_a_rounds_410s_leave_the_deliveries_another_round_holds(pg_engine: Engine) -> None:
    """A round with 410s for several watches locked their deliveries and waited at one a
    third transaction held; meanwhile a new match was committed and a second round held it
    while it waited on the first. The first, going on, deleted every delivery of the watch,
    the new one included: each waited on the other, a deadlock (review 34a). A round's 410
    now leaves what another transaction holds to it, and waits on nothing."""
    import threading
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome, record_outcomes
    from servicetrail.store.outbox_gone import disable_gone

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    w1, w2, w3 = (add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(3))
    append(world, lk_request(1), lk_request(2))
    match_all(world)
    with pg_engine.connect() as conn:
        events = dict(
            conn.exec_driver_sql(
                "SELECT watch_id, array_agg(event_id ORDER BY event_id) FROM webhook_outbox "
                "GROUP BY watch_id"
            ).all()
        )
    now = datetime(2025, 5, 1, tzinfo=timezone.utc)
    failures: list[BaseException] = []

    def run(outcomes: list[Outcome]) -> threading.Thread:
        def body() -> None:
            try:
                with pg_engine.begin() as conn:  # as the deliverer does
                    disable_gone(conn, _gone_of(outcomes), now)
                with pg_engine.begin() as conn:
                    record_outcomes(conn, outcomes, now, [5.0])
            except Exception as e:  # the outcome is the test's to judge
                failures.append(e)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        thread.join(0.5)
        return thread

    with pg_engine.connect() as holder:
        holder.execute(
            text("SELECT 1 FROM webhook_outbox WHERE watch_id = :w AND event_id = :e FOR UPDATE"),
            {"w": w3, "e": events[w3][1]},
        )
        gone = run(
            [Outcome(w, events[w][0], 0, "gone") for w in (w1, w2)]
            + [Outcome(w3, events[w3][1], 0, "gone")]
        )
        append(world, lk_request(3))
        match_all(world)
        with pg_engine.connect() as conn:
            newest = conn.execute(
                text("SELECT max(event_id) FROM webhook_outbox WHERE watch_id = :w"), {"w": w1}
            ).scalar_one()
        other = run(
            [Outcome(w1, newest, 0, "delivered"), Outcome(w2, events[w2][1], 0, "failed", "503")]
        )
        holder.rollback()
    gone.join(30)
    other.join(30)
    assert failures == []
    with pg_engine.connect() as conn:
        disabled = conn.execute(
            text("SELECT count(*) FROM watch WHERE webhook_disabled_at IS NOT NULL")
        ).scalar_one()
    assert disabled == 3


def _gone_of(outcomes) -> list[int]:
    """The watches whose receivers answered 410, as the deliverer turns them off."""
    return [o.watch_id for o in outcomes if o.status == "gone"]


def _one_webhook(world: World) -> tuple[int, list[int]]:
    """A watch with a webhook and two deliveries waiting: its id and their event ids."""
    made = add_watch(world, SOUTHENERGY, webhook={"url": "https://hooks.example.com/w"})
    append(world, lk_request(1), lk_request(2))
    match_all(world)
    with world.engine.connect() as conn:
        events = conn.execute(
            text("SELECT event_id FROM webhook_outbox WHERE watch_id = :w ORDER BY event_id"),
            {"w": made["id"]},
        ).scalars()
        return made["id"], list(events)


def _gone(engine: Engine, watch_id: int, event_id: int, now) -> None:
    """A round's 410, as the deliverer records it."""
    from servicetrail.store.outbox import Outcome, record_outcomes
    from servicetrail.store.outbox_gone import disable_gone, drop_turned_off

    outcomes = [Outcome(watch_id, event_id, 0, "gone")]
    with engine.begin() as conn:
        turned_off = disable_gone(conn, _gone_of(outcomes), now)
    with engine.begin() as conn:
        drop_turned_off(conn, turned_off.watches)
    with engine.begin() as conn:
        record_outcomes(conn, outcomes, now, [5.0, 60.0])


def _turning_off_round(engine: Engine, now) -> bool:
    """A round's turning off of what earlier rounds kept, as the deliverer runs it: the
    webhooks, then their queues, in two transactions."""
    from servicetrail.store.outbox_gone import disable_gone, drop_turned_off

    with engine.begin() as conn:
        turned_off = disable_gone(conn, [], now)
    with engine.begin() as conn:
        drop_turned_off(conn, turned_off.watches)
    return bool(turned_off)


@starts_with_personas
def test_a_failed_delivery_of_a_webhook_turned_off_meanwhile_is_dropped(
    pg_engine: Engine,
) -> None:
    """A 410 leaves a delivery another round holds to it; that round's failure was then
    retried for a webhook turned off, which is never sent again: left in the outbox for
    good, and shown as failing, retried on the schedule (review 34b)."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome, lock_in_key_order, record_outcomes

    world = load_personas(pg_engine)
    watch_id, (first, second) = _one_webhook(world)
    now = datetime.now(timezone.utc)
    with pg_engine.connect() as other_round:
        other_round.begin()
        lock_in_key_order(other_round, [(watch_id, second)])
        gone = in_background(lambda: _gone(pg_engine, watch_id, first, now))
        gone.join(10)  # it waits on nothing the other round holds
        assert not gone.is_alive()
        failed = [Outcome(watch_id, second, 0, "failed", "answered 503")]
        record_outcomes(other_round, failed, now, [5.0, 60.0])
        other_round.commit()
    with pg_engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM webhook_outbox").scalar_one()
        (shown,) = list_watches(conn, SOUTHENERGY, with_state=True)
    assert left == 0
    assert shown["webhook"]["enabled"] is False and shown["webhook"].get("failing") is None


@starts_with_personas
def test_a_410_while_the_watch_is_held_is_kept_and_turns_the_webhook_off_later(
    pg_engine: Engine,
) -> None:
    """A 410 while the watch's row was held (a Party marking its events read, a matcher's
    step) was skipped: the webhook stayed on, and deliveries went on to the receiver that
    had answered Gone (review 34b). Waited for, every worker's round stood behind the row
    (review 36a). It is kept instead: off at once for every worker, turned off for good by
    the first round after the row is free."""
    from datetime import datetime, timezone

    world = load_personas(pg_engine)
    watch_id, (first, _) = _one_webhook(world)
    now = datetime.now(timezone.utc)
    disabled = text("SELECT webhook_disabled_at IS NOT NULL FROM watch WHERE id = :w")
    with pg_engine.connect() as reader:
        reader.begin()
        mark_read(reader, SOUTHENERGY, watch_id, first)
        gone = in_background(lambda: _gone(pg_engine, watch_id, first, now))
        gone.join(10)
        assert not gone.is_alive()  # it waited for nothing
        with pg_engine.connect() as conn:
            (shown,) = list_watches(conn, SOUTHENERGY, with_state=True)
            assert not conn.execute(disabled, {"w": watch_id}).scalar_one()
        reader.commit()
    assert _turning_off_round(pg_engine, now)  # any worker's next round
    with pg_engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT count(*) FROM webhook_outbox").scalar_one()
        assert conn.execute(disabled, {"w": watch_id}).scalar_one()
    assert shown["webhook"]["enabled"] is False and left == 0


def test_deliveries_no_webhook_will_send_are_dropped_once_due(world: World) -> None:
    """A delivery a 410 left to another transaction, which then retried it, released it or
    let its lease end, stayed in the outbox for good: no round leases a webhook turned off
    (review 34c). Once due, with nothing else due, it goes; another watch's stay."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import lease_due, pending_count
    from servicetrail.store.outbox_gone import disable_gone

    quiet = add_watch(world, SOUTHENERGY, webhook={"url": "https://hooks.example.com/q"})
    off, _ = _one_webhook(world)
    later = datetime.now(timezone.utc) + timedelta(days=1)
    with world.engine.begin() as conn:
        disable_gone(conn, [off], later)
        # the other watch's deliveries not due yet: the first lease finds nothing to send
        conn.execute(
            update(store_watches.webhook_outbox)
            .where(store_watches.webhook_outbox.c.watch_id == quiet["id"])
            .values(next_attempt_at=later + timedelta(days=1))
        )
    with world.engine.connect() as conn:
        before = pending_count(conn, off), pending_count(conn, quiet["id"])
    with world.engine.begin() as conn:
        leased = lease_due(conn, later, 10, timedelta(minutes=5))
    with world.engine.connect() as conn:
        after = pending_count(conn, off), pending_count(conn, quiet["id"])
    assert leased == [] and before == (2, 2) and after == (0, 2)


@starts_with_personas
def test_turning_webhooks_off_takes_their_watches_in_id_order(pg_engine: Engine) -> None:
    """One UPDATE took the watches' rows in the table's order: against a matcher's step,
    which updates them in id order, a deadlock (review 34c). The step holds the first watch
    and then updates the second, which lies before the first in the table."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome
    from servicetrail.store.outbox_gone import disable_gone

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    first, second = sorted(add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(2))
    with pg_engine.begin() as conn:  # the first's row rewritten: it now lies after the second
        conn.execute(text("UPDATE watch SET last_event_id = 0 WHERE id = :w"), {"w": first})
        in_table = conn.execute(text("SELECT id FROM watch ORDER BY ctid")).scalars().all()
    assert in_table == [second, first]
    failures: list[BaseException] = []

    def turn_off() -> None:
        try:
            with pg_engine.begin() as conn:
                outcomes = [Outcome(w, 1, 0, "gone") for w in (first, second)]
                disable_gone(conn, _gone_of(outcomes), datetime.now(timezone.utc))
        except Exception as e:  # the test's to judge
            failures.append(e)

    with pg_engine.connect() as step:
        step.execute(text("UPDATE watch SET last_event_id = 1 WHERE id = :w"), {"w": first})
        turning = in_background(turn_off)
        step.execute(text("UPDATE watch SET last_event_id = 1 WHERE id = :w"), {"w": second})
        step.commit()
    turning.join(10)
    assert failures == []
    with pg_engine.connect() as conn:
        shown = list_watches(conn, SOUTHENERGY, with_state=True)
        assert all(w["webhook"]["enabled"] is False for w in shown)


@starts_with_personas
def test_turning_webhooks_off_gives_way_to_a_registry_change_matching_in_steps(
    pg_engine: Engine,
) -> None:
    """A registry change matches what is stored in steps of its one transaction: each step
    takes its watches in id order, but a later step may take a watch before an earlier
    step's. Turning webhooks off between two steps took the later step's watch and waited
    for the earlier step's, a cycle that failed the registry load (review 35a). It does
    nothing while a registry change is at work (its caller asks again later), and after it.
    The change's steps are match_before_registry_change's, one at a time."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome
    from servicetrail.store.outbox_gone import disable_gone
    from servicetrail.store.visibility_index import lock_registry

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    first = add_watch(world, SOUTHENERGY, srvs=["4.1"], webhook=hook)["id"]
    second = add_watch(world, SOUTHENERGY, srvs=["6.15"], webhook=hook)["id"]
    assert first < second
    append(world, lk_request(1, srv="6.15.1"), lk_request(2, srv="4.1.1"))  # second's, first's
    failures: list[BaseException] = []
    turned: list[bool] = []
    outcomes = [Outcome(w, 1, 0, "gone") for w in (first, second)]

    def turn_off(conn) -> None:
        turned.append(bool(disable_gone(conn, _gone_of(outcomes), datetime.now(timezone.utc))))

    with pg_engine.connect() as change:
        lock_registry(change)
        assert match_new_records(change, batch=1, wait=True, gaps_final=True) == 1  # second's
        transaction_in_background(pg_engine, turn_off, failures).join(30)
        assert match_new_records(change, batch=1, wait=True, gaps_final=True) == 1  # first's
        change.commit()
    assert (turned, failures) == ([False], [])
    with pg_engine.begin() as conn:
        assert disable_gone(conn, _gone_of(outcomes), datetime.now(timezone.utc))
    with pg_engine.connect() as conn:
        shown = list_watches(conn, SOUTHENERGY, with_state=True)
        assert [(w["id"], w["webhook"]["enabled"]) for w in shown] == [
            (first, False),
            (second, False),
        ]
        assert [len(events(world, SOUTHENERGY, w)[0]) for w in (first, second)] == [1, 1]


@starts_with_personas
def test_a_webhook_kept_gone_during_a_registry_change_is_off_for_every_worker(
    pg_engine: Engine,
) -> None:
    """A 410 that a registry change keeps from turning its webhook off is kept in the store:
    no lease takes that watch's deliveries, a failed attempt of it is dropped rather than
    retried, and the first turning off after the change (asked for nothing itself, as by a
    worker that never saw the 410) turns it off and forgets it; one kept for a watch deleted
    meanwhile is forgotten too."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome, lease_due, record_outcomes
    from servicetrail.store.outbox_gone import disable_gone, drop_turned_off
    from servicetrail.store.visibility_index import lock_registry

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    kept, deleted, fine = (add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(3))
    append(world, lk_request(1), lk_request(2))
    with pg_engine.begin() as conn:
        match_new_records(conn)
    now = datetime.now(timezone.utc)
    kept_rows = text("SELECT watch_id FROM webhook_gone ORDER BY watch_id")
    with pg_engine.connect() as change:
        lock_registry(change)
        with pg_engine.begin() as conn:
            assert not disable_gone(conn, [kept, deleted], now)
        with pg_engine.begin() as conn:
            assert conn.execute(kept_rows).scalars().all() == [kept, deleted]
            record_outcomes(conn, [Outcome(kept, 1, 0, "failed", "503")], now, [60])
            leased = lease_due(conn, now + timedelta(hours=1), 100, timedelta(minutes=5))
        assert {d.watch_id for d in leased} == {fine}
        with pg_engine.connect() as conn:  # its deliveries stopped: shown so at once
            shown = list_watches(conn, SOUTHENERGY, with_state=True)
        assert [w["webhook"]["enabled"] for w in shown] == [False, False, True]
        assert shown[0]["webhook"]["disabled_reason"] == "the receiver answered 410 Gone"
        change.rollback()
    with pg_engine.begin() as conn:
        assert delete_watch(conn, SOUTHENERGY, deleted)
    with pg_engine.begin() as conn:
        turned_off = disable_gone(conn, [], now)
    assert turned_off and turned_off.watches == (kept,)  # not the deleted one
    with pg_engine.connect() as conn:  # kept until its queue is dropped
        assert conn.execute(kept_rows).scalars().all() == [kept]
    with pg_engine.begin() as conn:  # the round's next transaction, holding no watch's row
        drop_turned_off(conn, turned_off.watches)
    with pg_engine.connect() as conn:
        assert conn.execute(kept_rows).all() == []
        shown = list_watches(conn, SOUTHENERGY, with_state=True)
        waiting = conn.execute(text("SELECT watch_id, event_id FROM webhook_outbox")).all()
    assert [(w["id"], w["webhook"]["enabled"]) for w in shown] == [(kept, False), (fine, True)]
    # kept's 1 dropped, not retried; its 2 deleted when it was turned off
    assert sorted(waiting) == [(fine, 1), (fine, 2)]


def test_a_queue_left_by_a_worker_stopped_mid_round_is_dropped_by_the_next(world: World) -> None:
    """A round turns a webhook off, then drops its queue in its next transaction; a worker
    stopped between the two left the queue in the outbox with nothing saying it was to go,
    under load for good (review 36e). The watch stays kept until its queue is dropped, so
    the next round, any worker's, drops it."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox_gone import disable_gone

    hook = {"url": "https://hooks.example.com/w"}
    gone, fine = (add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(2))
    append(world, lk_request(1), lk_request(2))
    match_all(world)
    now = datetime.now(timezone.utc)
    with world.engine.begin() as conn:
        assert disable_gone(conn, [gone], now).watches == (gone,)
    # stopped here: its second transaction never ran
    assert _turning_off_round(world.engine, now)
    with world.engine.connect() as conn:
        left = conn.execute(text("SELECT DISTINCT watch_id FROM webhook_outbox")).scalars().all()
        kept = conn.execute(text("SELECT count(*) FROM webhook_gone")).scalar_one()
    assert (left, kept) == ([fine], 0)


@starts_with_personas
def test_what_a_matcher_step_queues_while_its_webhook_goes_off_is_dropped_after(
    pg_engine: Engine, monkeypatch
) -> None:
    """A matcher's step holds its watches FOR KEY SHARE, which the turning off does not wait
    for: the step had found the webhook on and written its deliveries, uncommitted, when the
    round dropped the watch's queue and forgot it; committed after, they stayed for good
    (review 36f). The watch stays kept while a step holds it, and a round after drops them.
    The real step runs, paused between writing its events and its counters."""
    import threading
    from datetime import datetime, timezone

    world = load_personas(pg_engine)
    watch_id, (first, _) = _one_webhook(world)
    append(world, lk_request(3), lk_request(4))
    written, go = threading.Event(), threading.Event()
    write_events = watch_matcher._write_events

    def paused(conn, events, outbox, counters):
        write_events(conn, events, outbox, [])
        written.set()
        go.wait(20)
        write_events(conn, [], [], counters)

    monkeypatch.setattr(watch_matcher, "_write_events", paused)
    step = in_background(lambda: match_all(world))
    assert written.wait(10)
    now = datetime.now(timezone.utc)
    gone = in_background(lambda: _gone(pg_engine, watch_id, first, now))
    gone.join(10)
    assert not gone.is_alive()  # it waited for nothing
    go.set()
    step.join(10)
    monkeypatch.setattr(watch_matcher, "_write_events", write_events)
    kept_rows = text("SELECT count(*) FROM webhook_gone")
    with pg_engine.connect() as conn:
        assert conn.execute(kept_rows).scalar_one() == 1  # kept while the step held it
    assert _turning_off_round(pg_engine, now)
    with pg_engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM webhook_outbox")).scalar_one()
        assert (left, conn.execute(kept_rows).scalar_one()) == (0, 0)


@starts_with_personas
def test_dropping_a_queue_holds_no_watch_row(pg_engine: Engine) -> None:
    """Held FOR UPDATE while a large queue was deleted, the watch's row stood a matcher's
    step and a Party marking its events read behind the deletion (review 36g); it is only
    asked for, and let go before the queue is deleted."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox_gone import disable_gone, drop_turned_off

    world = load_personas(pg_engine)
    watch_id, _ = _one_webhook(world)
    with pg_engine.begin() as conn:
        assert disable_gone(conn, [watch_id], datetime.now(timezone.utc)).watches == (watch_id,)
    with pg_engine.connect() as dropping, pg_engine.connect() as other:
        dropping.begin()
        drop_turned_off(dropping, [watch_id])
        # as a step's _counters and a mark_read take it, without waiting
        for lock in ("FOR KEY SHARE NOWAIT", "FOR NO KEY UPDATE NOWAIT"):
            found = other.execute(
                text(f"SELECT id FROM watch WHERE id = :w {lock}"), {"w": watch_id}
            )
            assert found.scalar_one() == watch_id
            other.rollback()
        dropping.commit()
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_outbox")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM webhook_gone")).scalar_one() == 0


@starts_with_personas
def test_turning_webhooks_off_waits_for_no_watch_row(pg_engine: Engine) -> None:
    """A watch whose row another transaction holds (a Party marking its events read, a
    matcher's step updating it) is kept for a later round, not waited for: waiting, every
    worker's round stood behind any kept watch's row (review 36a). The others are turned
    off at once, and the held one as soon as its row is free."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox_gone import disable_gone

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    held, free = sorted(add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(2))
    kept_rows = text("SELECT watch_id FROM webhook_gone ORDER BY watch_id")
    with pg_engine.connect() as holder:
        holder.execute(text("SELECT id FROM watch WHERE id = :w FOR NO KEY UPDATE"), {"w": held})
        with pg_engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # a wait fails the test
            assert not disable_gone(conn, [held, free], datetime.now(timezone.utc))
        with pg_engine.connect() as conn:  # both kept: held, and free until its queue goes
            assert conn.execute(kept_rows).scalars().all() == [held, free]
            shown = list_watches(conn, SOUTHENERGY, with_state=True)
            on = "SELECT id FROM watch WHERE webhook_disabled_at IS NULL ORDER BY id"
            assert conn.execute(text(on)).scalars().all() == [held]
        assert [w["webhook"]["enabled"] for w in shown] == [False, False]
        holder.commit()
    assert _turning_off_round(pg_engine, datetime.now(timezone.utc))
    with pg_engine.connect() as conn:
        assert conn.execute(kept_rows).all() == []
        disabled = "SELECT id FROM watch WHERE webhook_disabled_at IS NOT NULL ORDER BY id"
        assert conn.execute(text(disabled)).scalars().all() == [held, free]


@starts_with_personas
@pytest.mark.parametrize("held", [False, True], ids=["turned-off", "kept"])
def test_a_lease_under_way_leases_nothing_of_a_watch_gone_meanwhile(
    pg_engine: Engine, held: bool
) -> None:
    """One worker's lease has listed the due watches when another's round takes a 410 of one
    of them: turned off (its row free) or kept (its row held by a Party marking events
    read). The lease then takes nothing of it: a kept watch's deliveries were leased and sent
    to the receiver that had answered Gone (review 36c). The other round's statements run
    from the lease's hooks, between its listing and its per-watch reads."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome, lease_due, lock_in_key_order, record_outcomes
    from servicetrail.store.outbox_gone import disable_gone

    world = load_personas(pg_engine)
    gone = add_watch(world, SOUTHENERGY, webhook={"url": "https://hooks.example.com/w"})["id"]
    append(world, lk_request(1), lk_request(2), lk_request(3))
    match_all(world)
    now = datetime.now(timezone.utc)
    with pg_engine.begin() as conn:  # event 1 leased by the other worker, which got the 410
        conn.execute(
            text("UPDATE webhook_outbox SET next_attempt_at = :t WHERE event_id = 1"),
            {"t": now + timedelta(minutes=5)},
        )
    rounds: list[str] = []

    def share(watches):
        if not rounds:
            rounds.append("first")
            if held:
                holder.execute(
                    text("SELECT 1 FROM watch WHERE id = :w FOR NO KEY UPDATE"), {"w": gone}
                )
            with pg_engine.begin() as other:
                disable_gone(other, [gone], now)
        return {watch_id: 100 for watch_id, _, _ in watches}

    def accept(_delivery) -> bool:
        if rounds == ["first"]:
            rounds.append("second")
            with pg_engine.begin() as other:
                lock_in_key_order(other, [(gone, 1)])
                record_outcomes(other, [Outcome(gone, 1, 0, "gone")], now, [5.0])
        return True

    with pg_engine.connect() as holder:
        with pg_engine.begin() as conn:
            leased = lease_due(conn, now, 100, timedelta(minutes=5), share, accept)
        holder.rollback()
    assert [d for d in leased if d.watch_id == gone] == []


def test_what_another_worker_leased_of_a_watch_gone_since_is_dropped(world: World) -> None:
    """Deliveries one worker leased and queues are checked again before they are sent; those
    of a watch whose receiver answered 410 to another worker since (turned off, or kept)
    are dropped too, not sent (review 36c)."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import hidden_since_lease, lease_due
    from servicetrail.store.outbox_gone import disable_gone

    hook = {"url": "https://hooks.example.com/w"}
    off, fine = (add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(2))
    append(world, lk_request(1))
    match_all(world)
    now = datetime.now(timezone.utc)
    with world.engine.begin() as conn:
        leased = [(d.watch_id, d.event_id) for d in lease_due(conn, now, 10, timedelta(5))]
    assert sorted(leased) == [(off, 1), (fine, 1)]
    with world.engine.begin() as conn:
        assert disable_gone(conn, [off], now)
    with world.engine.begin() as conn:
        assert hidden_since_lease(conn, leased) == [(off, 1)]
    with world.engine.connect() as conn:
        left = conn.execute(text("SELECT watch_id FROM webhook_outbox")).scalars().all()
    assert left == [fine]


@starts_with_personas
def test_a_deletion_waiting_for_a_step_never_closes_a_cycle(pg_engine: Engine) -> None:
    """A deletion waits for a matcher's step, which holds its watches FOR KEY SHARE and then
    updates them in id order; waiting, it held the row's place in line, and whoever came
    after waited behind it even where the step's lock let them in. A turning off of webhooks
    holding the step's first watch, and come to the second while another held it, stayed in
    line there; the step, updating the first, waited for the turning off: PostgreSQL broke
    the cycle by failing the deletion (stress bench, session 35). The step's statements are
    written out, as `_counters` and `_write_events` run them; `holder` is the other."""
    from datetime import datetime, timezone

    from servicetrail.store.outbox import Outcome
    from servicetrail.store.outbox_gone import disable_gone

    world = load_personas(pg_engine)
    hook = {"url": "https://hooks.example.com/w"}
    first, second = sorted(add_watch(world, SOUTHENERGY, webhook=hook)["id"] for _ in range(2))
    failures: list[BaseException] = []

    def delete_second(conn) -> None:
        assert delete_watch(conn, SOUTHENERGY, second)

    def turn_off(conn) -> None:
        outcomes = [Outcome(w, 1, 0, "gone") for w in (first, second)]
        disable_gone(conn, _gone_of(outcomes), datetime.now(timezone.utc))

    with pg_engine.connect() as step, pg_engine.connect() as holder:
        step.execute(
            text("SELECT id FROM watch WHERE id IN (:a, :b) ORDER BY id FOR KEY SHARE"),
            {"a": first, "b": second},
        )
        holder.execute(text("SELECT id FROM watch WHERE id = :w FOR NO KEY UPDATE"), {"w": second})
        deleting = transaction_in_background(pg_engine, delete_second, failures)
        turning = transaction_in_background(pg_engine, turn_off, failures)
        holder.commit()
        step.execute(text("UPDATE watch SET last_event_id = 1 WHERE id = :w"), {"w": first})
        step.execute(text("UPDATE watch SET last_event_id = 1 WHERE id = :w"), {"w": second})
        step.commit()
    for thread in (turning, deleting):
        thread.join(30)
    assert failures == []
    with pg_engine.connect() as conn:
        shown = list_watches(conn, SOUTHENERGY, with_state=True)
    assert [(w["id"], w["webhook"]["enabled"]) for w in shown] == [(first, False)]


def test_a_410s_backlog_goes_a_bounded_step_a_round(world: World, monkeypatch) -> None:
    """On SQLite a round's transaction holds the one write lock, which every Party's read
    waits for to append its access-log entry: a 410 over a backlog of 1M deliveries deleted
    them in one, and another Party's search waited 3.3 s (audit 49d); on PostgreSQL another
    worker's round settling one of them waited for the whole drop (audit 50d). Each round
    deletes a bounded step of them; the watch stays kept, leased by no one, until none is
    left."""
    from datetime import datetime, timezone

    from servicetrail.store import outbox

    monkeypatch.setattr(outbox, "DROPPED_PER_ROUND", 2)
    hook = {"url": "https://hooks.example.com/w"}
    watch_id = add_watch(world, SOUTHENERGY, webhook=hook)["id"]
    append(world, *(lk_request(n) for n in range(1, 8)))
    match_all(world)

    def left() -> tuple[int, int]:
        with world.engine.connect() as conn:
            return (
                conn.execute(text("SELECT count(*) FROM webhook_outbox")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM webhook_gone")).scalar_one(),
            )

    assert left() == (7, 0)
    now = datetime.now(timezone.utc)
    _gone(world.engine, watch_id, 7, now)  # its drop and its record: a step each
    assert left() == (3, 1)
    _turning_off_round(world.engine, now)
    assert left() == (1, 1)
    _turning_off_round(world.engine, now)
    assert left() == (0, 0)
