"""A batch of responsibility intervals judged one row at a time against what the store holds
for their keys, in memory: which rows load, correct, wait or are refused, and the net change
and the index rows it touches, for `store.registry.load_interval_rows` to write. Nothing here
reads or writes the store."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, cast

from ..domain.held_intervals import HeldIntervals
from ..domain.intervals import (
    Decided,
    IntervalKey,
    IntervalRow,
    Outcome,
    Overlap,
    Redated,
    Superseded,
    corrections_first,
    covered,
    decide_interval,
    interval_key,
)
from ..domain.model import Responsibility
from .visibility_index import Touched, touched_by


# Judged again while a pass of the batch applies something. A pass applies at least one row
# or is the last, so this bounds nothing a registry gives (a change of supplier needs two);
# it keeps a file built to free one row a pass from taking a pass per row.
_MOST_PASSES = 64


class HeldForBatch(NamedTuple):
    """What the store holds for a batch's keys, read once before any row is judged."""

    parties: set[str]  # the batch's Parties that are known
    devices: set[str]  # the batch's Devices that are known
    # those Devices' intervals by Device and relation, which the batch then changes in place
    state: dict[tuple[str, str], HeldIntervals]
    # the same intervals as stored, left as read: what the batch's net change is against
    stored: dict[IntervalKey, tuple[str, datetime | None]]
    # the Devices with SAT records: only theirs have index rows an interval's change touches
    traffic: set[str]


class IntervalBatch:
    """A batch's rows judged one at a time, as a row-at-a-time loader would: each against
    `state`, the store's intervals with the rows judged before it applied, so that a row sees
    the rows before it in the batch. Nothing is written here: the batch keeps its net change
    (`changed`, `removed`) and the index rows it may alter (`touched`) for the caller to
    write, and each row's outcome in `decided`."""

    __slots__ = (
        "rows",
        "superseded",
        "redate_now",
        "parties",
        "devices",
        "traffic",
        "state",
        "word_row",
        "decided",
        "changed",
        "removed",
        "touched",
        "waits_on",
        "freed",
        "aside",
    )

    def __init__(
        self,
        rows: Sequence[IntervalRow],
        superseded: Sequence[bool],
        redate_now: bool,
        held: HeldForBatch,
    ) -> None:
        self.rows = rows
        self.superseded = superseded
        self.redate_now = redate_now
        self.parties, self.devices, self.traffic = held.parties, held.devices, held.traffic
        self.state = held.state
        # the row of the batch that gives each interval and stands: one a later line of the
        # file gives again (in a later batch) does not, and a re-date yielded to it while the
        # line that stood changed the interval: in batches of two, a line neither loaded nor
        # refused (review 30d)
        self.word_row = {interval_key(row): i for i, row in enumerate(rows) if not superseded[i]}
        self.decided: list[Decided] = [Outcome.LOADED] * len(rows)
        self.changed: dict[IntervalKey, tuple[str, datetime | None]] = {}
        self.removed: set[IntervalKey] = set()
        self.touched: dict[tuple[str, str], list[Touched]] = {}  # by Device and relation
        # a row skipped as superseded -> the start of the interval whose later row stands for it
        self.waits_on: dict[int, datetime] = {}
        # the time that ends moved earlier freed, by Device and relation: (from, to or None)
        self.freed: dict[tuple[str, str], list[tuple[datetime, datetime | None]]] = {}
        # the rows set aside from the first that overlapped, by Device and relation
        self.aside: dict[tuple[str, str], list[int]] = {}

    def judge_in_order(self) -> None:
        """Each Device and relation's rows in the batch's order, up to its first that
        overlaps; that one and every later row of its Device and relation are set aside, to
        be judged together after. A file cut in batches does the same: a row that overlaps
        waits for the file's end with every later row of its Device and relation
        (ingest.registry_load), and the batches before it have applied the rows before it. So
        the registry a file makes does not depend on where its batches fall (with corrections
        of stored intervals judged first over the whole batch, a row of a later batch came
        too late to win: fuzzer, session 29)."""
        aside, decided, superseded = self.aside, self.decided, self.superseded
        for i, row in enumerate(self.rows):
            together = aside.get((row[0], row[2]))
            if together is not None and not superseded[i]:
                together.append(i)
                continue
            decided[i] = self.judge(i)
            if isinstance(decided[i], Overlap):
                aside[row[0], row[2]] = [i]

    def hold_back_for_the_files_end(self) -> None:
        """The rows set aside wait for the file's end, with every row of their Device and
        relation. So does a Device and relation whose end moved earlier freed time that no
        line of the batch took: a change of supplier with the old supplier's end in this
        batch and the new supplier's start in a later one (or waiting), whose Device's
        traffic in between neither supplier saw until that line was applied (session 40)."""
        uncovered = {
            group for group, spans in self.freed.items() if not covered(self.state[group], spans)
        }
        _hold_back(set(self.aside) | uncovered, self.rows, self.decided, self.changed, self.touched)
        self.aside = {}

    def judge_set_aside_together(self) -> None:
        """The rows set aside judged again, corrections of held intervals first, pass after
        pass while a pass applies something: a correction may free what another row set
        aside needs, whichever comes first (a change of supplier moved later: the new
        supplier's start, then the old one's end; moved earlier: the other way round; audit
        26a). Each pass applies a row or is the last."""
        waiting = [i for together in self.aside.values() for i in together]
        order = corrections_first(sorted(waiting), self.rows, self.state)
        for _ in range(_MOST_PASSES if order else 0):
            overlapping, applied = self._one_pass(order)
            if not (overlapping and applied):
                break
            order = overlapping

    def _one_pass(self, order: list[int]) -> tuple[list[int], bool]:
        """The rows of `order` judged in turn: those that still overlap, and whether any
        other was applied."""
        overlapping, applied = [], False
        for i in order:
            self.decided[i] = outcome = self.judge(i)
            if isinstance(outcome, Overlap):
                overlapping.append(i)
            elif outcome is Outcome.LOADED or outcome is Outcome.CORRECTED:
                applied = True
        return overlapping, applied

    def judge(self, i: int) -> Decided:
        """Row i against the state as it stands, applied if it loads or corrects."""
        row = self.rows[i]
        if self.superseded[i]:
            alone = decide_interval(row, self.parties, self.devices, None)  # its own checks only
            return Outcome.SUPERSEDED if alone is Outcome.LOADED else cast(Decided, alone)
        device_id, party_id, relation, start, end = row
        judged = decide_interval(
            row,
            self.parties,
            self.devices,
            self.state.get((device_id, relation)),
            functools.partial(self._not_given_later, i, device_id, relation),
        )
        if not self.redate_now:  # only a batch's rows may wait
            if isinstance(judged, Redated):
                return _waits_to_redate(row, judged.start)
            if judged is Outcome.CORRECTED:
                self._note_freed(row)
        if isinstance(judged, Redated):
            self._apply(device_id, relation, judged.start, None)
            judged = Outcome.CORRECTED
        elif isinstance(judged, Superseded):
            self.waits_on[i] = judged.start
            return Outcome.SUPERSEDED
        if judged is Outcome.LOADED or judged is Outcome.CORRECTED:
            self._apply(device_id, relation, start, (party_id, end))
        return judged

    def _not_given_later(
        self, row_index: int, device_id: str, relation: str, start: datetime
    ) -> bool:
        """Whether row `row_index` may re-date the held interval from `start`: unless a later
        row gives that interval again as it is held, which is then the word that stands. A
        later row that changes it (another Party or end) is judged after this one, in turn,
        as a re-load judges it: skipped for it, this row met the change on the re-load and was
        refused there (fuzzer, session 30)."""
        later = self.word_row.get((device_id, relation, start), -1)
        if later <= row_index:
            return True
        _, _, _, _, end = self.rows[later]
        return (self.rows[later][1], end) != self.state[device_id, relation][start]

    def _note_freed(self, row: IntervalRow) -> None:
        """The time a correction frees by moving its held interval's end earlier, before it
        is applied: unless a row of the batch takes it, the Device and relation wait for the
        file's end (hold_back_for_the_files_end)."""
        device_id, _, relation, start, end = row
        _, held_end = self.state[device_id, relation][start]
        if end is not None and (held_end is None or end < held_end):
            self.freed.setdefault((device_id, relation), []).append((end, held_end))

    def _apply(self, device_id: str, relation: str, start: datetime, now: Any) -> None:
        """One interval of the state set (`now`) or removed (None), and what it touched."""
        spans = held_of(self.state, device_id, relation)
        key = (device_id, relation, start)
        if now is None:
            before = spans.pop(start)
            self.changed.pop(key, None)
            self.removed.add(key)
        else:
            before = spans.get(start)
            spans.put(start, now)  # in place: a Device's many starts are not moved for it
            self.changed[key] = now
            self.removed.discard(key)
        if device_id in self.traffic:
            change = touched_by(
                device_id,
                None if before is None else (before[0], start, before[1]),
                None if now is None else (now[0], start, now[1]),
            )
            if change is not None:
                self.touched.setdefault((device_id, relation), []).append(change)


def _waits_to_redate(row: IntervalRow, moved_start: datetime) -> Overlap:
    """A row that would re-date a held interval, in a batch whose rows may wait: it waits
    for the file's end and is judged again there, so its reason is worded only if read."""
    device_id, party_id, relation, _, end = row
    moved = Responsibility(device_id, party_id, relation, moved_start, end)
    return Overlap(
        lambda: (
            f"re-dates the {relation} interval of {party_id} on {device_id} "
            f"({moved.describe()}), judged with the file's later lines at its end"
        )
    )


def held_of(
    state: dict[tuple[str, str], HeldIntervals], device_id: str, relation: str
) -> HeldIntervals:
    spans = state.get((device_id, relation))
    if spans is None:
        spans = state[device_id, relation] = HeldIntervals()
    return spans


def _hold_back(
    groups: set[tuple[str, str]],
    rows: Sequence[IntervalRow],
    decided: list[Decided],
    changed: dict[IntervalKey, tuple[str, datetime | None]],
    touched: dict[tuple[str, str], list[Touched]],
) -> None:
    """Every row of `groups` (Devices and relations) made to wait for the file's end, those
    judged before the one that overlapped too, and what they changed left unwritten (such a
    batch removes nothing: its re-dates wait). The state the file's end judges them on is
    then the one they were judged on here (every later row of a held group waits too:
    ingest.registry_load), so their outcomes are the same, all applied in one transaction."""
    if not groups:
        return
    for i, (device_id, _, relation, _, _) in enumerate(rows):
        if (device_id, relation) in groups and not isinstance(decided[i], Overlap):
            decided[i] = Overlap(  # a reason never shown: the row waits
                f"judged at the file's end with a line of the {relation} intervals of "
                f"{device_id} that overlapped"
            )
    for key in [key for key in changed if key[:2] in groups]:
        del changed[key]
    for group in groups:
        touched.pop(group, None)
