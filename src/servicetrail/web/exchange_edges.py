"""Where a record page's exchange meets the edge of the viewer's hold on the Device.

SPEC 3 judges each message at its own time, so across a change of supplier the outgoing
supplier sees a request and its acknowledgement, the incoming one the response: each saw
an exchange cut short and no word why (audit 57f, as both suppliers of a Device changed
mid-month). The page says so when the viewer's hold began or ended close to the messages
listed. It says what the rule hides, never whether such a message exists. Likewise the
possible triggers of a record on a Device the viewer did not hold in their window: an agent's
alert listed none, with no word that other Users' requests are not its to see.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ..domain.model import Responsibility
from ..domain.times import parse_time
from .presenters import show_instant

# an exchange runs its course within the triggers' widest look-back (SPEC 6: 10,080
# minutes); an edge further off is no reason for a message missing from it
NEAR = timedelta(days=7)


def held_span(
    intervals: Iterable[Responsibility], at: datetime
) -> tuple[datetime, datetime | None] | None:
    """The unbroken stretch of time around `at` that `intervals` cover, touching or
    overlapping ones joined (a supplier's and a network operator's; None as its end: open)."""
    stretches: list[tuple[datetime, datetime | None]] = []
    for i in sorted(intervals, key=lambda i: i.valid_from):
        last = stretches[-1] if stretches else None
        if last is not None and (last[1] is None or i.valid_from <= last[1]):
            joined = None if last[1] is None or i.valid_to is None else max(last[1], i.valid_to)
            stretches[-1] = (last[0], joined)
        else:
            stretches.append((i.valid_from, i.valid_to))
    return next((s for s in stretches if s[0] <= at and (s[1] is None or at < s[1])), None)


def held_during(intervals: Iterable[Responsibility], logged_at: str, minutes: int) -> bool:
    """Whether any of `intervals` covers part of a record's triggers window, the `minutes`
    up to its time, both ends included (SPEC 6)."""
    end = parse_time(logged_at)
    start = end - timedelta(minutes=minutes)
    return any(
        i.valid_from <= end and (i.valid_to is None or i.valid_to > start) for i in intervals
    )


def exchange_edges(
    intervals: Iterable[Responsibility],
    current: dict[str, Any],
    listed: list[dict[str, Any]],
    cut: bool = False,
) -> list[str]:
    """What to say under a titles-only (MP141) record's exchange: that its request, or what
    came after, falls outside the viewer's hold on the Device, when the hold's edge is NEAR
    the messages listed. `listed`: the exchange's items as the page lists them; `cut`: only
    its newest are (its request may be among the rest)."""
    if current.get("access") != "mp141":
        return []
    times = [parse_time(item["logged_at"]) for item in listed]
    span = held_span(intervals, parse_time(current["logged_at"]))
    if span is None or not times:
        return []
    start, end = span
    kinds = {item["kind"] for item in listed}
    said = []
    rule = "and a message logged {} then is not shown to you (MP141 judges each at its own time)."
    if "request" not in kinds and not cut and min(times) - start <= NEAR:
        said.append(
            "No request is listed: you were responsible for this Device from "
            f"{show_instant(start)} UTC, " + rule.format("before")
        )
    if end is not None and "response" not in kinds and end - max(times) <= NEAR:
        said.append(
            "No response is listed: you were responsible for this Device until "
            f"{show_instant(end)} UTC, " + rule.format("from")
        )
    return said
