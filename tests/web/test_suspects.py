"""web.suspects: an address is remembered for a while, and only so many are."""

from __future__ import annotations

from servicetrail.web.suspects import Suspects


def test_an_address_is_forgotten_after_its_seconds_and_past_the_most_remembered(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("servicetrail.web.suspects.monotonic", lambda: now[0])
    suspects = Suspects(seconds=60, most=2)
    suspects.mark("10.0.0.1")
    now[0] += 59
    assert suspects.holds("10.0.0.1") and not suspects.holds("10.0.0.2")
    now[0] += 2
    assert not suspects.holds("10.0.0.1")  # a minute quiet: its next first request is free
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        suspects.mark(address)
    assert [suspects.holds(a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3")] == [
        False,
        True,
        True,
    ]
