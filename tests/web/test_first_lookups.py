"""web.first_lookups: what a request that leaves the queue leaves behind (the turns by network
and the kept places are in tests/web/test_gate.py, through the gate)."""

from __future__ import annotations

import asyncio
import time

from servicetrail.web.first_lookups import FirstLookups


def test_a_request_whose_client_leaves_gives_up_its_turn_and_its_network_keeps_its_place():
    """A client that closes its connection while its request waits cancels the request: its
    turn goes to the next network's, and nothing of it is left waiting."""
    lookups = FirstLookups(rate=20, burst=1)

    async def leave_and_come_back():
        assert await lookups.take("192.0.2.0/24", 1.0)  # the one saved
        leaving = asyncio.create_task(lookups.take("198.51.100.0/24", 1.0))
        await asyncio.sleep(0)
        behind = asyncio.create_task(lookups.take("203.0.113.0/24", 1.0))
        await asyncio.sleep(0)
        assert lookups.waiting() == {"198.51.100.0/24": 1, "203.0.113.0/24": 1}
        leaving.cancel()
        assert await behind  # within a twentieth of a second, not after the one that left
        back = asyncio.create_task(lookups.take("198.51.100.0/24", 1.0))
        after = asyncio.create_task(lookups.take("192.0.2.0/24", 1.0))
        await asyncio.sleep(0)
        # it asks again: ahead of a network that asked after it first did. Told by which is
        # served first, not by a time: a loaded machine's stalled loop is no turn's fault
        first, _ = await asyncio.wait({back, after}, return_when=asyncio.FIRST_COMPLETED)
        assert first == {back} and back.result()
        return await after

    assert asyncio.run(leave_and_come_back())
    assert lookups.waiting() == {}


def test_a_networks_requests_waiting_go_at_once_when_one_of_its_credentials_is_found():
    lookups = FirstLookups(rate=10, burst=1)

    async def a_browser_behind_a_flood():
        assert await lookups.take("192.0.2.0/24", 1.0)
        ahead = asyncio.create_task(lookups.take("198.51.100.0/24", 1.0))
        browser = [asyncio.create_task(lookups.take("203.0.113.0/24", 1.0)) for _ in range(5)]
        await asyncio.sleep(0)
        lookups.let_through("203.0.113.0/24")
        # at once: within a few passes of the loop, no timer (a turn) between, where a time
        # limit (it was 0.05 s) failed when a loaded machine stalled the loop
        for _ in range(5):
            await asyncio.sleep(0)
        assert all(task.done() for task in browser)
        served = [task.result() for task in browser]
        return served, ahead.done(), lookups.waiting(), await ahead

    served, ahead_done, waiting, ahead = asyncio.run(a_browser_behind_a_flood())
    assert served == [True] * 5 and not ahead_done and waiting == {"198.51.100.0/24": 1}
    assert ahead  # its turn, a tenth of a second later: none taken by those let through


def test_a_members_credential_found_lets_only_its_own_requests_through():
    """Within a remembered network each address waits as a member (web.gate): a Party's found
    there lets its own waiting requests go, not those of the attack that had the network
    remembered."""
    lookups = FirstLookups(rate=10, burst=1)

    async def a_party_among_its_networks_flood():
        assert await lookups.take("192.0.2.0/24", 1.0)
        flood = asyncio.create_task(lookups.take("203.0.113.0/24", 0.05, member="203.0.113.1"))
        party = asyncio.create_task(lookups.take("203.0.113.0/24", 1.0, member="203.0.113.200"))
        await asyncio.sleep(0)
        lookups.let_through("203.0.113.0/24", member="203.0.113.200")
        return await party, flood.done(), await flood

    party, flood_done, flood = asyncio.run(a_party_among_its_networks_flood())
    assert party and not flood_done and not flood  # the flood's waited out its 0.05 s
    assert lookups.waiting() == {} and lookups._member_waiting == {}


def test_a_remembered_networks_look_ups_are_bounded_by_its_own_budget_though_the_budget_has_spare():
    """A remembered network (its requests come with a member, web.gate) took one turn a round,
    and with no one else waiting the whole budget: a /48's new /64s were looked up 50 times a
    second (finding 52g 1). Now its own budget bounds it (its refill here slower than the
    test), while a fresh network beside it is served from the spare."""
    lookups = FirstLookups(rate=1000, burst=1000, held_rate=0.001, held_burst=2)
    held = "2001:db8:9::/48"

    async def a_held_networks_flood_beside_a_fresh_network():
        flood = [lookups.take(held, 0.05, member=f"2001:db8:9:{n:x}::/64") for n in range(1, 11)]
        fresh = [lookups.take("192.0.2.0/24", 0.05) for _ in range(10)]
        return await asyncio.gather(*flood), await asyncio.gather(*fresh)

    flood, fresh = asyncio.run(a_held_networks_flood_beside_a_fresh_network())
    assert flood == [True] * 2 + [False] * 8  # its own 2, then none: not the budget's spare
    assert fresh == [True] * 10  # not held back by the held network's place ahead of it
    assert lookups.waiting() == {} and lookups._member_waiting == {}


def test_a_request_let_go_is_under_way_at_once_so_its_networks_others_wait_for_its_answer():
    """Counted as under way only once its request ran again: a wait that ran out in between
    (a loaded loop runs the turn's timer and the waits' in one pass) found no look-up under way
    and refused the network's other request, which was to go with its answer (a browser's
    three requests: [200, 429, 429], tests/web/test_gate.py at CI, sessions 57 and 60)."""
    lookups = FirstLookups(rate=10, burst=1)
    network = "203.0.113.0/24"

    async def a_turn_and_a_wait_due_at_once():
        assert await lookups.take("192.0.2.0/24", 1.0)  # the budget's next a tenth of a second on
        first = asyncio.create_task(lookups.take(network, 0.2))
        other = asyncio.create_task(lookups.take(network, 0.2))
        await asyncio.sleep(0.01)  # both wait, the turn's timer set
        time.sleep(0.3)  # the loop held, as a loaded machine holds it: the turn and waits due
        assert await first
        await asyncio.sleep(0.05)
        waiting_for_the_answer = not other.done()
        lookups.let_through(network)  # the first's credential found
        lookups.looked_up(network)
        return waiting_for_the_answer, await other

    assert asyncio.run(a_turn_and_a_wait_due_at_once()) == (True, True)
