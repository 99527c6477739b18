"""Conflicts wait on disk for the end of their input, then become rejects with their raw input
read back from the file."""

from __future__ import annotations

from pathlib import Path

from servicetrail.ingest.conflicts import Conflicts


def test_conflicts_are_read_back_by_line_whatever_order_their_batches_came_in(
    tmp_path: Path,
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"n": 1}\n\n{"n": 3}\r\n{"n": 4}\n{"n": 5}')
    document = tmp_path / "doc.xml"
    document.write_bytes(b"<whole/>\n")
    rejected: list[tuple[object, ...]] = []
    conflicts = Conflicts()
    conflicts.add([(5, "five"), (3, "three")])
    conflicts.add([])
    conflicts.add([(str(document), "the document"), (1, "one")])  # behind: read from the start
    conflicts.reject(lambda *entry: rejected.append(entry), source)
    assert rejected == [
        (source, 3, "three", b'{"n": 3}\r\n', False),
        (source, 5, "five", b'{"n": 5}', False),
        (source, 1, "one", b'{"n": 1}\n', False),
        (str(document), 1, "the document", b"<whole/>\n", True),
    ]


def test_no_conflict_makes_no_file_and_reads_no_input(tmp_path: Path) -> None:
    """The input is never opened (it does not exist: opening it would raise), nothing is
    rejected, and no spill file is made (audit 29b: this test asserted nothing of that)."""
    rejected: list[tuple[object, ...]] = []
    conflicts = Conflicts()
    conflicts.add([])
    assert conflicts._spill is None
    conflicts.reject(lambda *entry: rejected.append(entry), tmp_path / "never opened")
    assert rejected == [] and list(tmp_path.iterdir()) == []
