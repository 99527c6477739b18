"""domain.held_intervals: which held intervals a new one overlaps, found by bisection once a
Device has many, against the definition (a scan of every interval), through the changes a
registry batch makes (Hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from servicetrail.domain.held_intervals import HeldIntervals

DAY0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
LAST_DAY = 80


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


def overlapping_by_definition(
    held: dict[datetime, tuple[str, datetime | None]], since: datetime, until: datetime | None
) -> list[datetime]:
    return sorted(
        start
        for start, (_, end) in held.items()
        if start != since and (until is None or start < until) and (end is None or since < end)
    )


@st.composite
def interval(draw) -> tuple[datetime, datetime | None]:
    start = draw(st.integers(0, LAST_DAY - 1))
    end = draw(st.one_of(st.none(), st.integers(start + 1, LAST_DAY)))
    return day(start), None if end is None else day(end)


@st.composite
def apart(draw) -> list[tuple[datetime, datetime | None]]:
    """Intervals none of which overlap (as the registry keeps them): the days cut in 20 to 60
    pieces, about one in four left out, the last perhaps open; mostly more than the few that
    are scanned rather than bisected."""
    cuts = sorted(draw(st.sets(st.integers(0, LAST_DAY), min_size=21, max_size=61)))
    pieces = []
    for since, until in zip(cuts, cuts[1:]):
        if draw(st.integers(0, 3)):
            pieces.append((day(since), day(until)))
    if pieces and draw(st.booleans()):
        pieces[-1] = (pieces[-1][0], None)
    return pieces


def queries() -> st.SearchStrategy:
    return st.lists(interval(), min_size=1, max_size=20)


# 100 and 50 examples (were 400 and 200) failed on every seed tried for each of six breaks
# of domain/held_intervals.py (BENCHMARKS.md, session 59h): most of the cost was generation
@settings(max_examples=100)
@given(held=apart(), asked=queries(), changes=st.lists(interval(), max_size=30))
def test_the_overlaps_found_are_those_of_the_definition_as_a_batch_changes_what_is_held(
    held, asked, changes
):
    intervals, expected = HeldIntervals(), {}
    for start, end in held:
        intervals.put(start, ("P", end))
        expected[start] = ("P", end)

    def agree() -> None:
        assert sorted(intervals.items()) == sorted(expected.items())
        for since, until in asked:
            found = intervals.overlapping(since, until)
            assert found == overlapping_by_definition(expected, since, until), (since, until)

    agree()
    for start, end in changes:
        # as store.registry applies a line: only one that overlaps nothing but the interval
        # with its start (a correction), which it replaces; else it removes one it names
        if not intervals.overlapping(start, end):
            intervals.put(start, ("Q", end))
            expected[start] = ("Q", end)
        else:
            assert intervals.pop(start) == expected.pop(start, None)
        agree()


@settings(max_examples=50)
@given(held=st.lists(interval(), min_size=17, max_size=40), asked=queries())
def test_intervals_that_overlap_each_other_are_still_answered_by_the_definition(held, asked):
    # a store written to by hand: the bisection's premise does not hold, and is not used
    intervals, expected = HeldIntervals(), {}
    for start, end in held:
        intervals.put(start, ("P", end))
        expected[start] = ("P", end)
    for since, until in asked:
        assert intervals.overlapping(since, until) == overlapping_by_definition(
            expected, since, until
        )


def test_a_device_with_many_intervals_is_answered_by_bisection():
    # the reason the module exists: without the order, each question scans every interval
    intervals = HeldIntervals()
    for n in range(LAST_DAY):
        intervals.put(day(n), ("P", day(n + 1)))
    assert intervals.overlapping(day(10) + timedelta(hours=1), day(12)) == [day(10), day(11)]
    assert intervals._starts is not None and len(intervals._starts) == LAST_DAY
    intervals.pop(day(10))
    assert intervals.overlapping(day(10) + timedelta(hours=1), day(12)) == [day(11)]
