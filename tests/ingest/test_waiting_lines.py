"""The lines of a responsibilities file that wait for its end (ingest.waiting_lines)."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone

import pytest

from servicetrail.ingest import waiting_lines
from servicetrail.ingest.waiting_lines import CannotWait, WaitingLines
from tests.ingest.full_temporary_folder import small_temporary_databases

MAY = datetime(2024, 5, 1, tzinfo=timezone.utc)
JUNE = datetime(2024, 6, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)
DEVICE_A, DEVICE_B = "00-DB-00-00-00-00-00-0A", "00-DB-00-00-00-00-00-0B"


def test_lines_come_back_as_they_went_in_a_group_at_a_time_each_in_the_files_order() -> None:
    waiting = WaitingLines()
    try:
        assert not waiting and list(waiting.groups()) == []
        raw = b"00-DB-00-00-00-00-00-0B,SUPB,supplier,\xff not UTF-8"
        waiting.add((DEVICE_B, "SUPB", "supplier", MAY, None), (7, raw))
        waiting.add((DEVICE_A, "SUPA", "supplier", MAY, JUNE), (9, b"a9"))
        waiting.add((DEVICE_A, "WIRE", "network_operator", MAY, None), (3, b"a3"))
        waiting.add((DEVICE_A, "SUPA", "supplier", JUNE, None), (4, b"a4"))
        assert waiting.count == 4
        groups = list(waiting.groups())
        assert [[origin for _, origin in group] for group in groups] == [
            [(3, b"a3")],  # DEVICE_A's network operator
            [(4, b"a4"), (9, b"a9")],  # DEVICE_A's supplier, in line order
            [(7, raw)],
        ]
        [(row, _)] = groups[2]
        assert row == (DEVICE_B, "SUPB", "supplier", MAY, None)
        assert groups[1][1][0] == (DEVICE_A, "SUPA", "supplier", MAY, JUNE)
    finally:
        waiting.close()


def test_a_line_is_held_only_after_an_earlier_one_of_its_device_and_relation() -> None:
    waiting = WaitingLines()
    try:
        supply_a = (DEVICE_A, "SUPA", "supplier", MAY, None)
        assert not waiting.holds(supply_a, (2, b"x"))
        waiting.add(supply_a, (2, b"x"))
        assert waiting.holds((DEVICE_A, "SUPB", "supplier", JUNE, None), (3, b"y"))
        assert not waiting.holds((DEVICE_A, "WIRE", "network_operator", MAY, None), (4, b"z"))
        assert not waiting.holds((DEVICE_B, "SUPA", "supplier", MAY, None), (5, b"w"))
        assert waiting.count == 2
    finally:
        waiting.close()


def test_a_group_larger_than_the_bound_comes_back_in_parts(monkeypatch) -> None:
    monkeypatch.setattr(waiting_lines, "MOST_IN_A_GROUP", 2)
    waiting = WaitingLines()
    try:
        for line in range(5):
            waiting.add((DEVICE_A, "SUPA", "supplier", MAY, None), (line, b""))
        for line in (10, 11):
            waiting.add((DEVICE_B, "SUPA", "supplier", MAY, None), (line, b""))
        parts = [[origin[0] for _, origin in group] for group in waiting.groups()]
        assert parts == [[0, 1], [2, 3], [4], [10, 11]]
    finally:
        waiting.close()


def test_many_groups_are_told_apart_in_a_bounded_filter() -> None:
    """A hundred thousand groups wait; every one is held, and none of a hundred thousand
    that do not is taken for one (a false "waits" would only delay a line: see the module)."""
    waiting = WaitingLines()
    try:
        devices = [
            f"00-DB-00-{i >> 16:02X}-{(i >> 8) & 255:02X}-{i & 255:02X}-00-01"
            for i in range(200_000)
        ]
        for device in devices[:100_000]:
            waiting.add((device, "SUPA", "supplier", MAY, None), (1, b""))
        assert all(
            waiting.holds((d, "SUPB", "supplier", JUNE, None), (2, b""))
            for d in devices[:100_000:97]
        )
        assert not any(
            waiting.holds((device, "SUPA", "supplier", MAY, None), (3, b""))
            for device in devices[100_000:]
        )
        assert not any(
            waiting.holds((device, "WIRE", "network_operator", MAY, None), (3, b""))
            for device in devices[:100_000:97]
        )
    finally:
        waiting.close()


def test_the_memory_it_takes_does_not_grow_with_the_groups_that_wait() -> None:
    """A set of the waiting groups' hashes grew 76 MB a million groups (audit 39a); the
    lines themselves are on disk. Python's allocations for 30,000 more groups: under a
    megabyte (such a set takes two)."""
    waiting = WaitingLines()
    try:
        waiting.add((DEVICE_A, "SUPA", "supplier", MAY, None), (1, b""))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(30_000):
            device = f"00-DB-00-{i >> 16:02X}-{(i >> 8) & 255:02X}-{i & 255:02X}-00-01"
            waiting.add((device, "SUPA", "supplier", MAY, None), (i, b""))
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 1 << 20, grown
    finally:
        waiting.close()


def test_a_full_temporary_folder_says_so(monkeypatch) -> None:
    """Raised as SQLite's error, it read "the store's disk is full", of a PostgreSQL store
    with room to spare (audit 39a)."""
    small_temporary_databases(monkeypatch)
    waiting = WaitingLines()
    try:
        with pytest.raises(CannotWait, match="cannot keep the lines that wait for the file's end"):
            for line in range(5000):
                waiting.add((DEVICE_A, "SUPA", "supplier", MAY, None), (line, b"x" * 100))
            list(waiting.groups())
    finally:
        waiting.close()
