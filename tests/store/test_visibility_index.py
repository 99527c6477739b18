"""What a registry change touches (store.visibility_index.touched_by, pure: no store needed).
A Touched wider than the change is invisible to the property test (re-deriving a record
gives the same rows) but makes every registry load re-derive the Device's whole trail; one
narrower leaves stale rows. Both were mutants no test caught (audit 29b)."""

from __future__ import annotations

from datetime import datetime, timezone

from servicetrail.store.visibility_index import Touched, touched_by

D = "00-11-22-33-44-55-66-77"
T1 = datetime(2025, 1, 1, tzinfo=timezone.utc)
T2 = datetime(2025, 2, 1, tzinfo=timezone.utc)
T3 = datetime(2025, 3, 1, tzinfo=timezone.utc)


def test_a_new_closed_interval_touches_its_own_span_only():
    """vi1: a new interval [T1, T2) of P1 touches P1's records in [T1, T2), not to the end
    of time."""
    assert touched_by(D, None, ("P1", T1, T2)) == Touched(D, T1, T2, frozenset({"P1"}))


def test_an_interval_whose_end_moves_touches_only_between_the_ends():
    """The same Party keeping its interval with another end: only [old end, new end)."""
    assert touched_by(D, ("P1", T1, T2), ("P1", T1, T3)) == Touched(D, T2, T3, frozenset({"P1"}))
    assert touched_by(D, ("P1", T1, T3), ("P1", T1, T2)) == Touched(D, T2, T3, frozenset({"P1"}))
    assert touched_by(D, ("P1", T1, T2), ("P1", T1, None)) == Touched(
        D, T2, None, frozenset({"P1"})
    )


def test_a_change_of_party_touches_both_parties_over_both_spans():
    assert touched_by(D, ("P1", T1, T2), ("P2", T1, T3)) == Touched(
        D, T1, T3, frozenset({"P1", "P2"})
    )
    assert touched_by(D, ("P1", T1, T2), None) == Touched(D, T1, T2, frozenset({"P1"}))
    assert touched_by(D, ("P1", T1, T2), ("P1", T1, T2)) is None
