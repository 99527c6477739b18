"""The registry's rules on Responsibility intervals, decided for one row at a time: what a
row is against the intervals held for its Device and relation (loaded, a duplicate, a
correction, superseded by a later row of its input, or refused with a reason). Pure: the
store's writer (store.registry) reads what is held, asks these, and writes the outcome.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum

from .held_intervals import HeldIntervals
from .model import Responsibility


class Outcome(StrEnum):
    LOADED = "loaded"
    DUPLICATE = "duplicate"
    CORRECTED = "corrected"
    SUPERSEDED = "superseded"  # a later row of the batch gives the same interval again


class Conflict(ValueError):
    """A row that contradicts what the store holds; the message says how."""


class Overlap(Conflict):
    """An interval that overlaps another of its Device and relation: one that a later row
    of the same input may still close (ingest.registry_load tries it again at the input's
    end). Its reason may be given unworded (a function), and is worded when read: most
    overlaps of a large file wait for its end, where they are judged again, and wording each
    reason cost 8% of such a load (200,000 lines: 1.4 of 18 s, profiled)."""

    def __init__(self, reason: str | Callable[[], str]) -> None:
        super().__init__()
        self._reason = reason

    def __str__(self) -> str:
        if not isinstance(self._reason, str):
            self._reason = self._reason()
        return self._reason


Decided = Outcome | Conflict


# An interval as a tuple, in Responsibility's field order: a bulk load makes millions
IntervalRow = tuple[str, str, str, datetime, datetime | None]
IntervalKey = tuple[str, str, datetime]  # Device, relation, start: what a correction replaces


def interval_key(row: IntervalRow) -> IntervalKey:
    """What a correction replaces: the interval's Device, relation and start."""
    return row[0], row[2], row[3]


def not_the_word(rows: Sequence[IntervalRow]) -> list[bool]:
    """Which rows are not the word on their interval: its word is what its last row says,
    from the first of the rows at the end that all say it (a row given again word for word is
    a duplicate of it, not a later word: ingest.registry_csv.LastWord)."""
    word: dict[IntervalKey, int] = {}
    for i, row in enumerate(rows):
        key = interval_key(row)
        if key not in word or rows[word[key]] != row:
            word[key] = i
    return [word[interval_key(row)] != i for i, row in enumerate(rows)]


class Superseded:
    """A row whose own Party's interval with its end a later row of the batch gives again:
    that row is the word that stands, and this one is skipped (`start`: that interval's)."""

    def __init__(self, start: datetime) -> None:
        self.start = start


class Redated:
    """A row that is a held interval of its own Party with its start moved (the same end):
    it replaces that interval (a late correction of a change of supplier's day)."""

    def __init__(self, start: datetime) -> None:
        self.start = start


def decide_interval(
    new: IntervalRow,
    parties: set[str],
    devices: set[str],
    spans: HeldIntervals | None,
    replaceable: Callable[[datetime], bool] = lambda _: False,
) -> Decided | Redated | Superseded:
    """A row's outcome against the intervals of its Device and relation (`spans`, None for its
    own checks alone). A row whose only overlap is an interval of its own Party with the same
    end is that interval re-dated, and replaces it if `replaceable(its start)`; a row that
    overlaps such an interval which a later row gives again (not replaceable) is superseded,
    whatever else it overlaps: of two lines of a file that give one
    Party's interval with two starts, the last stands, on a re-load too (audit 28a). Any
    other overlap is refused: a Party's interval that a row would shrink, widen or merge with
    another (a mistyped start) erased that Party's history without a word (review 26d)."""
    device_id, party_id, relation, valid_from, valid_to = new
    if valid_to is not None and valid_to <= valid_from:
        return Conflict(
            f"valid_to {valid_to.isoformat()} is not after valid_from {valid_from.isoformat()}"
        )
    if party_id not in parties:
        return Conflict(
            f"unknown party_id {party_id!r}: load it with 'servicetrail load users' first"
        )
    if device_id not in devices:
        return Conflict(
            f"unknown device_id {device_id}: load it with 'servicetrail load devices' first"
        )
    if not spans:  # the Device's first interval of this relation (most of a first load)
        return Outcome.LOADED
    same_start = spans.get(valid_from)
    if same_start == (party_id, valid_to):
        return Outcome.DUPLICATE
    overlapping = spans.overlapping(valid_from, valid_to)
    if not overlapping:
        return Outcome.LOADED if same_start is None else Outcome.CORRECTED
    if same_start is None:
        for start in overlapping:  # its own Party's interval with its end: one at most
            if spans[start] == (party_id, valid_to):
                if len(overlapping) == 1:
                    # unless a later row gives that interval again: that row is the word
                    return Redated(start) if replaceable(start) else Superseded(start)
                # so too whatever else it overlaps: the first load took the later row as
                # this one re-dated, and a re-load refused this one as overlapping what the
                # file went on to say (audit 28a; a fuzzer of small files found the same
                # beside another Party's interval, which a rule for its own alone left)
                if not replaceable(start):
                    return Superseded(start)
    [start, *_] = overlapping
    held_party, end = spans[start]
    return Overlap(
        lambda: overlap_reason(new, Responsibility(device_id, held_party, relation, start, end))
    )


def overlap_reason(new: IntervalRow, held: Responsibility) -> str:
    said = (
        f"overlaps the {held.relation} interval of {held.party_id} on {held.device_id} "
        f"({held.describe()})"
    )
    if held.party_id == new[1]:  # its own Party's: say how a correction of it is written
        said += (
            ": a correction gives that interval's start, or moves its start and keeps its end "
            "(an interval that shrinks, widens or merges with another is refused)"
        )
    return said


def corrections_first(
    waiting: list[int], rows: Sequence[IntervalRow], state: dict[tuple[str, str], HeldIntervals]
) -> list[int]:
    """The order rows set aside are judged in: those that correct a held interval (its start
    given again), then the others, each in the batch's order. A change of supplier is the old
    interval closed and the new one opened, and a file may give them in either order: the
    new one first was rejected as overlapping the old one still open, and only a second load
    of the same file took it (audit, session 19)."""
    correcting = [i for i in waiting if rows[i][3] in state.get((rows[i][0], rows[i][2]), ())]
    first = set(correcting)
    return correcting + [i for i in waiting if i not in first]


def covered(held: HeldIntervals, freed: list[tuple[datetime, datetime | None]]) -> bool:
    """Whether the intervals `held` cover every span [from, to) of `freed` (to None: on).
    Their union is made once for all of a Device and relation's freed spans: made for each,
    a Device's N ends moved earlier in one batch cost N^2 log N."""
    union: list[tuple[datetime, datetime | None]] = []  # disjoint, in order
    for start, (_, end) in sorted(held.items()):
        if union and union[-1][1] is not None and union[-1][1] >= start:
            last_end = union[-1][1]
            union[-1] = (union[-1][0], None if end is None else max(last_end, end))
        elif not union or union[-1][1] is not None:
            union.append((start, end))
    starts = [start for start, _ in union]
    for since, until in freed:
        at = bisect.bisect_right(starts, since) - 1
        if at < 0:
            return False
        _, end = union[at]
        if end is not None and (until is None or end < until):
            return False
    return True
