"""`store.visibility_sql.merged_ranges`: the union of a viewer's Responsibility intervals
on one device, the ranges a device search reads rule 3's records in (audit 27c)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from servicetrail.domain.model import Responsibility
from servicetrail.store.visibility_sql import merged_ranges

DEVICE = "00-DB-12-34-56-78-90-01"
T = [datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(days=d) for d in range(8)]


def intervals(*spans: tuple[int, int | None]) -> list[Responsibility]:
    relations = ("supplier", "network_operator")
    return [
        Responsibility(DEVICE, "P0", relations[n % 2], T[lo], None if hi is None else T[hi])
        for n, (lo, hi) in enumerate(spans)
    ]


@pytest.mark.parametrize(
    ("spans", "union"),
    [
        ([(0, 7), (2, 3)], [(0, 7)]),  # nested: the outer interval's end stays
        ([(2, 3), (0, 7)], [(0, 7)]),  # nested, given inner first
        ([(0, 7), (0, 3)], [(0, 7)]),  # nested, sharing the start
        ([(0, 2), (2, 4)], [(0, 4)]),  # adjacent: one range
        ([(0, 3), (2, 5)], [(0, 5)]),  # overlapping
        ([(2, 5), (0, 3)], [(0, 5)]),  # overlapping, given later first
        ([(0, 1), (2, 3)], [(0, 1), (2, 3)]),  # apart: two ranges
        ([(0, None), (2, 3)], [(0, None)]),  # an open end swallows what follows
        ([(2, 3), (1, None)], [(1, None)]),
        ([(0, 4), (3, None)], [(0, None)]),
        ([(3, 4), (0, 1), (1, 2), (5, 6)], [(0, 2), (3, 4), (5, 6)]),
        ([], []),
    ],
)
def test_merged_ranges_are_the_union_of_the_intervals_as_disjoint_ranges(spans, union) -> None:
    """Every instant some interval covers is in exactly one range, and no other instant is:
    an inner interval's end taken for the union's dropped the rest of the outer one from a
    device search (audit 27c)."""
    assert merged_ranges(intervals(*spans)) == [
        (T[lo], None if hi is None else T[hi]) for lo, hi in union
    ]
