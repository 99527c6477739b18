"""One Device and relation's Responsibility intervals while a registry batch is judged
(store.registry): by start, and which of them a new interval overlaps.

The registry never lets two intervals of a Device and relation overlap, so in order of start
their ends are in order too, and those that a new interval [from, to) overlaps are a run: the
last that starts before `from`, if it has not ended by then, and every one that starts before
`to`. Found by bisection on the starts in order, N lines of one Device cost N log N, where a
scan of every interval held for every line cost N^2 (20,000 lines of one Device took 40-80 s
holding the registry's lock, which holds every loader back: audit 40a). A Device has a handful
of intervals in its life, so the starts are put in order only once it has more than a few;
intervals that overlap or end before they start (a store written to by hand) are scanned.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import ItemsView
from datetime import datetime

Held = tuple[str, datetime | None]  # the Party, and the end (None: open)

# intervals scanned rather than bisected: a scan of a few costs less than keeping them in order
_FEW = 16


class HeldIntervals:
    __slots__ = ("_by_start", "_starts", "_overlap")

    def __init__(self) -> None:
        self._by_start: dict[datetime, Held] = {}
        # the starts in order, once there are more than a few and none overlap; else None
        self._starts: list[datetime] | None = None
        # some overlap (seen once, not sought again for every line: the batch leaves them so)
        self._overlap = False

    def __len__(self) -> int:
        return len(self._by_start)

    def __contains__(self, start: object) -> bool:
        return start in self._by_start

    def __getitem__(self, start: datetime) -> Held:
        return self._by_start[start]

    def get(self, start: datetime) -> Held | None:
        return self._by_start.get(start)

    def items(self) -> ItemsView[datetime, Held]:
        return self._by_start.items()

    def put(self, start: datetime, held: Held) -> None:
        """Hold the interval from `start`, in place of any that starts there. The caller has
        judged that it overlaps no other (domain.intervals.decide_interval)."""
        if self._starts is not None and start not in self._by_start:
            insort(self._starts, start)
        self._by_start[start] = held

    def pop(self, start: datetime) -> Held | None:
        """The interval from `start` no longer held; what it was (None: none started there)."""
        held = self._by_start.pop(start, None)
        if held is not None and self._starts is not None:
            del self._starts[bisect_left(self._starts, start)]
        return held

    def overlapping(self, valid_from: datetime, valid_to: datetime | None) -> list[datetime]:
        """The starts, in order, of the intervals held that [valid_from, valid_to) overlaps
        (valid_to None: it has no end; after valid_from), but for one that starts at
        valid_from: that is the interval a line with its start corrects."""
        if self._starts is None and not self._overlap and len(self._by_start) > _FEW:
            self._starts = _apart_in_order(self._by_start)
            self._overlap = self._starts is None
        starts = self._starts
        if starts is None:
            return sorted(
                start
                for start, (_, end) in self._by_start.items()
                if start != valid_from
                and (valid_to is None or start < valid_to)
                and (end is None or valid_from < end)
            )
        at = bisect_left(starts, valid_from)
        found = []
        if at:
            before = starts[at - 1]
            _, end = self._by_start[before]
            if end is None or valid_from < end:
                found.append(before)
        until = len(starts) if valid_to is None else bisect_left(starts, valid_to, lo=at)
        found.extend(start for start in starts[at:until] if start != valid_from)
        return found


def _apart_in_order(by_start: dict[datetime, Held]) -> list[datetime] | None:
    """The starts in order if every interval ends after it starts and before the next one
    starts (as the registry keeps them), else None."""
    starts = sorted(by_start)
    for start, following in zip(starts, starts[1:] + [None]):
        _, end = by_start[start]
        if end is not None and end <= start:
            return None
        if following is not None and (end is None or following < end):
            return None
    return starts
