"""Rows of a long read fetched a few at a time, as few as their size asks.

An export streams rows that carry payloads: fetched a fixed number at a time (2,000 items of
the JSON Lines report and `records`), a run of firmware images held about a gigabyte in the
client (audit 30a). Here each fetch takes as many rows as fit in `room` at the size of the
largest row of the fetch before (one row to begin with), and at most `most`. That bounds a
fetch only for rows of a bounded size: the general stream (queries.iter_search) fetches
payload heads so, and reads each long payload whole on its own (review 30e: with whole
payloads, a small row ahead of a run of long ones let the next fetch take them all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

ROOM_BYTES = 4 << 20  # what one fetch of an export holds, about


def fetched_by_size(
    result: Any,
    size_of: Callable[[Any], int],
    most: int,
    room: int = ROOM_BYTES,
) -> Iterator[Any]:
    """The rows of `result` (anything with fetchmany), `most` at a time at the most."""
    take = 1
    while rows := result.fetchmany(take):
        yield from rows
        largest = max(map(size_of, rows))
        take = max(1, min(most, room // max(largest, 1)))
