"""One Party's sign-in flood against another Party (session 63g): the lanes a Party's trusted
browsers hold, the turns at the hashing thread, and that thread's CPU priority."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from servicetrail import security
from servicetrail.web.hashing_turns import NICENESS, HashingTurns
from servicetrail.web.state import SignInLanes
from tests import personas as P
from tests.web.sign_in_clients import (  # noqa: F401  (fixtures)
    HOME,
    OFFICE,
    accounts,
    app,
    browser,
    sign_out,
)
from tests.web.screen_sign_in import sign_in
from tests.conftest import ON_SQLITE_ALONE

# lanes, turns and threads are the server's, whichever store it has


def test_one_whose_holds_half_of_each_kind_of_lane_and_another_still_finds_one():
    lanes = SignInLanes(strangers=2, trusted=4)
    with lanes.lane(True, "A") as one, lanes.lane(True, "A") as two:
        with lanes.lane(True, "A") as three, lanes.lane(True, "A") as four:
            # A's trusted browsers: half the trusted lanes, then half the strangers'
            assert (one, two, three, four) == (True, True, True, False)
            with lanes.lane(True, "B") as b, lanes.lane(False, "address") as stranger:
                assert b and stranger
    with lanes.lane(False, "A") as again_a, lanes.lane(False, "C") as c:
        assert again_a and c  # given back when their blocks ended


def test_the_checks_waiting_take_turns_by_whose_they_are():
    turns, order = HashingTurns(threads=1), []
    running, go = threading.Event(), threading.Event()

    def check(name: str) -> None:
        order.append(name)
        if name == "A1":
            running.set()
            go.wait(10)

    def submit(key: str, name: str) -> threading.Thread:
        thread = threading.Thread(target=turns.run, args=(key, lambda: check(name)))
        thread.start()
        return thread

    threads = [submit("A", "A1")]
    assert running.wait(10)
    for key, name in (("A", "A2"), ("A", "A3"), ("B", "B1")):
        threads.append(submit(key, name))
        while turns.waiting() < len(threads) - 1:  # in this order
            time.sleep(0.005)
    go.set()
    for thread in threads:
        thread.join(10)
    assert order == ["A1", "B1", "A2", "A3"]  # B waited for the check under way, no more


def test_a_check_raises_in_the_sign_ins_thread_what_it_raised():
    with pytest.raises(ZeroDivisionError):
        HashingTurns(threads=1).run("A", lambda: 1 // 0)


def _niceness_of_this_thread() -> int:
    with open("/proc/thread-self/stat") as stat:
        after_name = stat.read().rsplit(")", 1)[1].split()
    return int(after_name[16])  # proc(5)'s field 19: those after the name start at 3


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's niceness is Linux's")
@ON_SQLITE_ALONE
def test_a_password_is_verified_on_a_thread_nicer_than_the_servers(app, monkeypatch):  # noqa: F811
    from servicetrail.store import accounts as stored_accounts

    seen, real = [], stored_accounts.verify_password

    def verify_and_look(stored_hash, password):
        seen.append(_niceness_of_this_thread())
        return real(stored_hash, password)

    monkeypatch.setattr(stored_accounts, "verify_password", verify_and_look)
    assert sign_in(browser(app, OFFICE), "np.analyst").status_code == 303
    base = _niceness_of_this_thread()
    assert seen == [min(19, base + NICENESS)] and (base == 19 or seen[0] > base)


@ON_SQLITE_ALONE
def test_one_partys_trusted_browsers_cannot_take_the_lane_another_partys_needs(app, monkeypatch):  # noqa: F811
    """North Power's User signs in from two trusted browsers at once; Looker's
    User, signing in meanwhile from its own trusted browser, found both trusted lanes taken
    and was told to try again. The hashing slot is held here, so the checks wait as behind a
    flood."""
    from servicetrail.store import accounts as stored_accounts

    ours, theirs, again = browser(app, OFFICE), browser(app, HOME), browser(app, ("192.0.2.9", 1))
    for client, username in ((ours, "np.analyst"), (again, "np.analyst"), (theirs, "lk.analyst")):
        assert sign_in(client, username).status_code == 303  # each browser trusted from now
        sign_out(client)
    app.state.sign_in_lanes = SignInLanes(strangers=0, trusted=2)
    entered, real = [], stored_accounts.verify_password

    def verify_and_count(stored_hash, password):
        entered.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(stored_accounts, "verify_password", verify_and_count)
    answers: dict[str, int] = {}

    def attempt(name: str, client, username: str) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: answers.__setitem__(name, sign_in(client, username).status_code)
        )
        thread.start()
        return thread

    held = [security._HASHING.acquire() for _ in range(security.HASHING_SLOTS)]
    try:
        flood = [attempt("np1", ours, "np.analyst"), attempt("np2", again, "np.analyst")]
        deadline = time.monotonic() + 10
        while len(entered) + len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        looker = attempt("lk", theirs, "lk.analyst")
        # refused at once before (both lanes North Power's); now it waits for its turn
        while "lk" not in answers and not app.state.sign_in_turns.waiting():
            assert time.monotonic() < deadline + 10, "Looker's sign-in neither waits nor ends"
            time.sleep(0.01)
    finally:
        for _ in held:
            security._HASHING.release()
    for thread in (*flood, looker):
        thread.join(30)
    assert answers["lk"] == 303
    assert sorted((answers["np1"], answers["np2"])) == [303, 429]  # North Power's half: one


@ON_SQLITE_ALONE
def test_a_trusted_browser_is_hashed_at_its_partys_turn_and_strangers_at_one_turn_together(app):  # noqa: F811
    """From eight addresses, one Party's attempts from new browsers were eight Parties at the
    hashing, and another Party's User waited for each of them (session 63g)."""
    keys = []

    class Recorded:
        def run(self, key, work):
            keys.append(key)
            return work()

    app.state.sign_in_turns = Recorded()
    ours = browser(app, OFFICE)
    assert sign_in(ours, "np.analyst").status_code == 303  # a stranger until now
    sign_out(ours)
    assert sign_in(ours, "np.analyst").status_code == 303  # trusted
    assert sign_in(browser(app, HOME), "nobody.at.all").status_code == 401
    assert keys == ["strangers:", P.NORTHPOWER, "strangers:"]
