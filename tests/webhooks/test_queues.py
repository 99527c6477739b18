"""The worker's queues alone: which delivery gets a free slot, without a loop, a store or a
receiver (tests/webhooks/test_delivery.py drives the same rules through real receivers)."""

from __future__ import annotations

import math

from servicetrail.store.outbox import Due
from servicetrail.webhooks.queues import Queues

SHARED = ("hooks.example", 443)  # a receiver several Parties use
OWN = ("own.example", 443)


def due(watch_id: int, event_id: int, party: str) -> Due:
    return Due(watch_id, event_id, 0, "https://x", "whsec_x", {}, party)


def started_parties(started: list[tuple[Due, tuple[str, int]]]) -> list[str]:
    return [d.party_id for d, _ in started]


def test_a_free_slot_goes_to_the_party_with_fewest_in_flight_whatever_was_leased_first() -> None:
    queues = Queues(per_host=4, per_party=4, per_party_host=2)
    for event in range(1, 7):  # the hostile Party leased first, six deep
        queues.add(due(1, event, "HOSTILE"), SHARED, math.inf)
    queues.add(due(2, 1, "NEWCOMER"), SHARED, math.inf)
    started = queues.start(free=2, starts_by=0)
    assert sorted(started_parties(started)) == ["HOSTILE", "NEWCOMER"]  # not two hostile ones
    # then the hostile Party's half of the shared receiver, and no more
    started += queues.start(free=5, starts_by=0)
    assert started_parties(started)[2:] == ["HOSTILE"]
    hostile_started = next(d for d, _ in started if d.party_id == "HOSTILE")
    queues.finished(hostile_started, SHARED)
    assert started_parties(queues.start(free=5, starts_by=0)) == ["HOSTILE"]


def test_a_receiver_a_party_has_to_itself_keeps_one_slot_for_another_party() -> None:
    queues = Queues(per_host=4, per_party=8, per_party_host=2)
    for event in range(1, 9):
        queues.add(due(1, event, "ALONE"), OWN, math.inf)
    assert len(queues.start(free=8, starts_by=0)) == 3  # per_host - 1
    queues.add(due(2, 1, "SECOND"), OWN, math.inf)
    assert started_parties(queues.start(free=8, starts_by=0)) == ["SECOND"]


def test_the_slot_goes_to_the_party_served_least_lately_between_equals() -> None:
    queues = Queues(per_host=1, per_party=1, per_party_host=1)
    for party, watch in (("A", 1), ("B", 2)):
        for event in (1, 2):
            queues.add(due(watch, event, party), SHARED, math.inf)
    order = []
    for _ in range(4):
        [(delivery, host)] = queues.start(free=1, starts_by=0)
        order.append(delivery.party_id)
        queues.finished(delivery, host)
    assert order in (["A", "B", "A", "B"], ["B", "A", "B", "A"])


def test_a_delivery_whose_lease_ends_before_its_attempt_could_is_dropped_unsent() -> None:
    queues = Queues(per_host=4, per_party=4, per_party_host=4)
    queues.add(due(1, 1, "P"), SHARED, lease_ends=10.0)
    queues.add(due(1, 3, "P"), SHARED, lease_ends=50.0)  # ends just as the attempt would
    queues.add(due(1, 2, "P"), SHARED, lease_ends=100.0)
    started = queues.start(free=1, starts_by=50.0)  # the dropped ones take no slot
    assert [(d.watch_id, d.event_id) for d, _ in started] == [(1, 2)]
    assert queues.held == {(1, 2)}  # (1, 1) is the store's again, leasable by the next round
    assert len(queues) == 0 and queues.queued_for("P") == 0


def test_dropped_deliveries_leave_the_counts_and_the_held_set() -> None:
    queues = Queues(per_host=4, per_party=4, per_party_host=4)
    for watch, party, host in ((1, "P", SHARED), (2, "P", OWN), (3, "Q", SHARED)):
        queues.add(due(watch, 1, party), host, math.inf)
    assert queues.queued_for("P") == 2 and queues.queued_at("P", OWN) == 1
    assert queues.parties_waiting() == {"P", "Q"}
    queues.drop(lambda key: key[0] in (1, 2))
    assert queues.keys() == [(3, 1)] and queues.held == {(3, 1)}
    assert queues.queued_for("P") == 0 and queues.queued_at("P", OWN) == 0
    assert queues.parties_waiting() == {"Q"}


def test_a_party_in_flight_is_still_waiting_and_finished_frees_its_slot() -> None:
    queues = Queues(per_host=1, per_party=1, per_party_host=1)
    queues.add(due(1, 1, "P"), SHARED, math.inf)
    [(delivery, host)] = queues.start(free=1, starts_by=0)
    assert len(queues) == 0 and queues.parties_waiting() == {"P"}
    assert queues.held == {(1, 1)}
    queues.finished(delivery, host)
    assert queues.parties_waiting() == set() and queues.held == set()
    assert queues._last_turn == {}  # nothing kept for a receiver it no longer uses


def test_a_receiver_takes_per_host_attempts_at_most_whatever_the_free_slots() -> None:
    queues = Queues(per_host=2, per_party=10, per_party_host=2)
    for event in range(1, 5):
        queues.add(due(1, event, "P"), SHARED, math.inf)
        queues.add(due(2, event, "Q"), SHARED, math.inf)
    assert sorted(started_parties(queues.start(free=10, starts_by=0))) == ["P", "Q"]


def test_a_partys_receivers_together_take_per_party_attempts_at_most() -> None:
    queues = Queues(per_host=10, per_party=2, per_party_host=10)
    for watch, host in enumerate((("a.example", 443), ("b.example", 443), ("c.example", 443))):
        queues.add(due(watch, 1, "P"), host, math.inf)
    assert len(queues.start(free=10, starts_by=0)) == 2


def test_a_renewal_extends_the_leases_it_renewed_and_lets_go_of_queued_ones_it_lost() -> None:
    """A round renews the leases a worker holds (store.outbox.renew). One not renewed (its row
    deleted, or leased by another worker once it had lapsed) is dropped unsent if queued; one
    in flight goes on, as it started with its attempt's time left, and is asked for no more."""
    from datetime import datetime, timezone

    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    queues = Queues(per_host=1, per_party=1, per_party_host=1)
    for event in (1, 2, 3, 4):
        queues.add(due(1, event, "P"), SHARED, 10.0, first)
    [(in_flight, _)] = queues.start(1, 0.0)  # event 1
    asked = queues.to_renew(11.0)
    assert asked == {(1, e): first for e in (1, 2, 3, 4)}
    assert queues.to_renew(10.0) == {}  # none ends before then
    queues.renewed(asked, [(1, 2)], 40.0, later)  # 1 (in flight) and 3, 4 lost
    assert queues.keys() == [(1, 2)]
    assert queues.to_renew(41.0) == {(1, 2): later}  # event 1 is asked for no more
    assert queues.held == {(1, 1), (1, 2)}
    assert queues.lease_ends(in_flight) == 10.0
    assert [d.event_id for d, _ in queues.start(1, 39.0)] == []  # 1 still holds the slot
    queues.finished(in_flight, SHARED)
    assert [d.event_id for d, _ in queues.start(1, 39.0)] == [2]  # renewed: still startable


def test_a_stopping_worker_releases_only_what_it_still_holds() -> None:
    """At a clean stop the queued deliveries are released (due at once). One whose lease
    lapsed meanwhile (attempts in flight ending, a lease of seconds) may be another worker's:
    released, it was due again under that worker, which could send it while another did."""
    queues = Queues(per_host=1, per_party=1, per_party_host=1)
    queues.add(due(1, 1, "P"), SHARED, 10.0)
    queues.add(due(1, 2, "P"), SHARED, 30.0)
    assert queues.keys() == [(1, 1), (1, 2)]
    assert queues.keys(leased_after=20.0) == [(1, 2)]


def test_an_ended_attempt_names_the_end_its_lease_holds_for_its_outcome_to_be_fenced() -> None:
    """An attempt's failure is recorded only on a row that still holds its lease's end
    (store.outbox.record_outcomes): the end the last renewal gave, even one that committed
    while the attempt ended; the end it had when its renewal failed (another worker's since);
    and nothing for an attempt that ended with no outcome."""
    from datetime import datetime, timezone

    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    queues = Queues(per_host=4, per_party=4, per_party_host=4)
    for event in (1, 2, 3):
        queues.add(due(1, event, "P"), SHARED, 10.0, first)
    started = dict(((d.event_id, (d, host)) for d, host in queues.start(3, 0.0)))
    asked = queues.to_renew(11.0)
    queues.finished(*started[1])  # while the round renewed it
    queues.renewed(asked, [(1, 1), (1, 3)], 40.0, later)  # 2 lost: another worker's now
    queues.finished(*started[2])
    queues.finished(*started[3])
    assert [queues.ended_on((1, e)) for e in (1, 2, 3)] == [later, first, later]
    assert queues.ended_on((1, 1)) is None  # taken once
    queues.add(due(1, 4, "P"), SHARED, 10.0, first)
    [(late, _)] = queues.start(1, 0.0)
    queues.finished(late, SHARED)  # not sent (late): no outcome
    queues.forget_ended()
    assert queues.ended_on((1, 4)) is None


def test_a_renewed_lease_that_ran_short_waits_for_the_next_round_not_dropped() -> None:
    """A round held up (SQLite's write lock behind an ingest's batch) leaves the queued
    deliveries' leases short of an attempt's time. Dropped, the whole queue went unsent and
    the round under way renewed rows nobody held any more (audit 47i): each now waits for the
    next round, which renews it (then it starts) or finds it lost (then it is dropped)."""
    from datetime import datetime, timezone

    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    queues = Queues(per_host=4, per_party=4, per_party_host=4)
    queues.add(due(1, 1, "P"), SHARED, 10.0, first)
    queues.add(due(1, 2, "P"), SHARED, 10.0, first)
    queues.add(due(2, 1, "Q"), OWN, 10.0, first)
    assert queues.start(4, 20.0) == []  # every lease too short for an attempt: none sent
    assert queues.held == {(1, 1), (1, 2), (2, 1)} and len(queues) == 3  # and none let go
    asked = queues.to_renew(21.0)
    queues.renewed(asked, [(1, 1), (1, 2)], 60.0, later)  # Q's lost to another worker
    assert queues.held == {(1, 1), (1, 2)}
    assert [d.event_id for d, _ in queues.start(4, 30.0)] == [1, 2]
