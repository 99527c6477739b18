"""Records that conflict with stored ones, kept for the reject file until their input ends.

A conflict is found when its batch is written, after the batch's raw lines have gone, so it
is rejected at the end of its input with its line read back from the file. Conflicts wait
in a temporary file, not in memory: a changed file re-ingested conflicts on every line (400,000
conflicts held in a list took 140 MB more; hostile-input audit, session 17).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from .sources import numbered_lines, open_binary

# Where a conflicting record came from: its line in the input, or the XML file that holds it
Origin = int | str
# How a conflict becomes a reject: (origin's file, line, reason, raw input, whole document)
AddReject = Callable[[Path | str, int, str, bytes, bool], None]


class Conflicts:
    """The conflicts of one input, in line order, in a temporary file made at the first."""

    def __init__(self) -> None:
        self._spill: IO[bytes] | None = None

    def add(self, found: Iterable[tuple[Origin, str]]) -> None:
        """A batch's conflicts (batches come in file order)."""
        ordered = sorted(found, key=lambda c: (isinstance(c[0], str), c[0]))
        if not ordered:
            return
        if self._spill is None:
            self._spill = tempfile.TemporaryFile()
        self._spill.writelines(orjson.dumps(conflict) + b"\n" for conflict in ordered)

    def _kept(self) -> Iterator[tuple[Origin, str]]:
        if self._spill is None:
            return
        self._spill.seek(0)
        for line in self._spill:
            origin, reason = orjson.loads(line)
            yield origin, reason

    def reject(self, add: AddReject, source: Path | None) -> None:
        """Each conflict rejected with its raw input, read back from the file: a line by its
        number (one pass over `source`, unless batches came out of order), or a whole
        document."""
        lines: Iterator[tuple[int, bytes]] | None = None
        opened: IO[bytes] | None = None
        at = 0
        try:
            for origin, reason in self._kept():
                if isinstance(origin, str):
                    with open_binary(Path(origin)) as document:
                        add(origin, 1, reason, document.read(), True)
                    continue
                assert source is not None  # lines are numbered within the one input
                if lines is None or origin <= at:
                    if opened is not None:
                        opened.close()
                    opened = open_binary(source)
                    lines, at = numbered_lines(opened), 0
                for at, raw in lines:
                    if at == origin:
                        add(source, at, reason, raw, False)
                        break
        finally:
            if opened is not None:
                opened.close()
            self.close()

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
