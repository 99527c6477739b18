"""domain.intervals.covered, which decides whether an end moved earlier may be applied in its
batch, against time taken point by point (Hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from servicetrail.domain.intervals import covered

DAY0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


@st.composite
def spans(draw) -> tuple[datetime, datetime | None]:
    # few days, so that spans often meet, overlap or leave one-day gaps
    start = draw(st.integers(0, 8))
    end = draw(st.one_of(st.none(), st.integers(start + 1, 10)))
    return day(start), None if end is None else day(end)


def held_at(held: dict, moment: datetime) -> bool:
    return any(s <= moment and (e is None or moment < e) for s, (_, e) in held.items())


@settings(max_examples=300)
@given(
    held=st.lists(spans(), max_size=6).map(lambda ss: {s: ("P", e) for s, e in ss}),
    freed=st.lists(spans(), min_size=1, max_size=3),
)
def test_covered_is_true_exactly_when_every_moment_of_the_freed_time_is_held(held, freed):
    # held time changes only at a start or an end: each such moment, and one past them all
    moments = [day(n) for n in range(0, 12)]
    expected = all(
        held_at(held, moment)
        for since, until in freed
        for moment in moments
        if since <= moment and (until is None or moment < until)
    )
    assert covered(held, freed) == expected
