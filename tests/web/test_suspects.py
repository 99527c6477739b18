"""web.suspects: an address is remembered for a while, and only so many are."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import open_store
from servicetrail.web.app import create_app
from servicetrail.web.suspects import Suspects
from tests import personas as P


def test_an_address_is_forgotten_after_its_seconds_and_past_the_most_remembered(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("servicetrail.web.suspects.monotonic", lambda: now[0])
    suspects = Suspects(seconds=60, most=2)
    suspects.mark("10.0.0.1")
    now[0] += 59
    assert holds(suspects, "10.0.0.1") and not holds(suspects, "10.0.0.2")
    now[0] += 2
    assert not holds(suspects, "10.0.0.1")  # a minute quiet: its next first request is free
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        suspects.mark(address)
    assert [holds(suspects, a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3")] == [
        False,
        True,
        True,
    ]


def test_a_network_is_remembered_once_enough_of_its_parts_were_within_the_seconds(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("servicetrail.web.suspects.monotonic", lambda: now[0])
    suspects = Suspects(seconds=60, spread=3)
    suspects.mark("2001:db8:1::/64")
    suspects.mark("2001:db8:1:1::/64")
    now[0] += 61  # the first two forgotten: their /48 counts afresh
    suspects.mark("2001:db8:1:2::/64")
    suspects.mark("2001:db8:1:2::/64")  # the same part twice is one
    assert not holds(suspects, "2001:db8:1:ff::/64")
    suspects.mark("2001:db8:1:3::/64")
    suspects.mark("2001:db8:1:4::/64")
    assert holds(suspects, "2001:db8:1:ff::/64") and not holds(suspects, "2001:db8:2::/64")
    for site in (2, 3):  # with the first, three /48s of the /32: the /32 is remembered
        for part in range(3):
            suspects.mark(f"2001:db8:{site}:{part}::/64")
    assert holds(suspects, "2001:db8:ffff:1::/64") and not holds(suspects, "2001:db9::/64")
    for n in range(3):
        suspects.mark(f"192.0.2.{n}")
    assert holds(suspects, "192.0.2.200") and not holds(suspects, "192.0.3.1")
    assert not holds(suspects, "unknown") and not holds(suspects, "testclient")
    # the widest remembered: a /32's /48s wait for their first look-ups as one (web.gate)
    assert suspects.holder("2001:db8:1:ff::/64") == "2001:db8::/32"
    assert suspects.holder("192.0.2.200") == "192.0.2.0/24"


@pytest.fixture
@P.starts_with_personas
def served(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """The real app on SQLite (the gate's part in this is the same on either store) with a
    Party's token, and an empty budget a second: whatever draws on it is answered 429 at
    once, whatever does not is served."""
    monkeypatch.setattr("servicetrail.web.gate.ANONYMOUS_BURST", 0)
    monkeypatch.setattr("servicetrail.web.gate.ANONYMOUS_RATE", 0.001)
    monkeypatch.setattr("servicetrail.web.gate.RETRY_AFTER", 0.01)
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, "correct horse battery staple")
        token = create_token(conn, "np.analyst")
    app = create_app(engine)
    with TestClient(app, raise_server_exceptions=False):
        yield app, token
    engine.dispose()


def ask(app, client: str, token: str, path: str = "/api/v1/watches", twice: bool = False) -> int:
    given = [("Authorization", f"Bearer {token}")] * (2 if twice else 1)
    browser = TestClient(app, client=(client, 50000), raise_server_exceptions=False)
    return browser.get(path, headers=given).status_code


def test_only_a_credential_looked_up_and_not_found_marks_its_address(served):
    """Inferred by the gate from a credential still not seen as the answer started, a valid
    token sent where nothing looks it up marked its own address for a minute (audit 50a 2)."""
    app, token = served
    assert ask(app, "192.0.2.1", token, "/nope") == 404
    assert ask(app, "192.0.2.2", token, "/openapi.json") == 200
    assert ask(app, "192.0.2.3", token, twice=True) == 401
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert ask(app, address, token) == 200  # its first look-up: the budget not drawn on
    assert ask(app, "198.51.100.1", "made-up") == 401
    assert ask(app, "198.51.100.1", "made-up too") == 429  # now it draws on the budget


def test_a_network_whose_parts_sent_made_up_credentials_is_remembered(served):
    """Remembered by its /64 alone, a client holding a /48 had 4 free look-ups of made-up
    tokens per /64, 65,536 of them (audit 50a 1). A fresh part of a remembered network has its
    first look-up in turn by its own address (web.gate: its network's mark alone does not send
    it to the budget, audit 52c 1), then its own mark holds it. A Party elsewhere gets in."""
    app, token = served
    for part in range(4):
        assert ask(app, f"2001:db8:1:{part}::1", f"junk-{part}") == 401
        assert ask(app, f"203.0.113.{part + 1}", f"junk-{part}") == 401
    for fresh in ("2001:db8:1:ffff::1", "203.0.113.200"):  # a fresh part of each network
        assert ask(app, fresh, "junk-5") == 401
        assert ask(app, fresh, "junk-6") == 429
    assert ask(app, "2001:db8:2::1", token) == 200  # a Party's, from another /48: at once


def test_a_partys_address_inside_a_remembered_network_is_held_by_its_own_mark_only(served):
    """A network is remembered on a guess about its other parts: a Party's address in a shared
    office's /24 had every credential not yet seen (a new token, a new session) drawn on the
    budget of what carries none while the flood beside it went on (audit 51c 2). A credential
    the store knew, lately from that address, vouches for it; the flood's are still held."""
    app, token = served
    assert ask(app, "203.0.113.200", token) == 200  # a Party's, in the /24 of the flood below
    for part in range(4):
        assert ask(app, f"203.0.113.{part + 1}", f"junk-{part}") == 401
    assert ask(app, "203.0.113.100", "junk-5") == 401  # its first, in turn by its address
    assert ask(app, "203.0.113.100", "junk-6") == 429  # then its own mark holds it
    with app.state.engine.begin() as conn:
        new_token = create_token(conn, "np.analyst")
    assert ask(app, "203.0.113.200", new_token) == 200  # at once, not from the empty budget
    assert ask(app, "203.0.113.200", "junk-6") == 401  # a made-up one of its own: looked up,
    assert ask(app, "203.0.113.200", "junk-7") == 429  # and then its own mark holds it


def test_a_partys_first_credential_from_inside_a_remembered_network_is_looked_up(served):
    """Vouching lives in the process: after a restart, a Party's address inside a /24 its
    neighbours' made-up tokens had remembered had its first credential drawn on the budget of
    what carries none, and was refused again and again while the attack went on (audit 52c 1).
    Held only by its network's mark, it is looked up in turn by its own address."""
    app, token = served
    for part in range(4):
        assert ask(app, f"203.0.113.{part + 1}", f"junk-{part}") == 401
    assert ask(app, "203.0.113.1", "junk-9") == 429  # the flood's own: still held
    assert ask(app, "203.0.113.200", token) == 200


def holds(suspects: Suspects, address: str) -> bool:
    """Whether the gate holds the address back: remembered itself, or, unless it is vouched
    for, a network it is in (web.gate asks the two apart: marked, holder)."""
    return suspects.marked(address) or suspects.holder(address) is not None
