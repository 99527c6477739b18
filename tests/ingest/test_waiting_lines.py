"""The lines of a responsibilities file that wait for its end (ingest.waiting_lines)."""

from __future__ import annotations

from datetime import datetime, timezone

from servicetrail.ingest import waiting_lines
from servicetrail.ingest.waiting_lines import WaitingLines

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
        assert [judged for _, judged in groups] == [True, True, True]
        assert [[origin for _, origin in group] for group, _ in groups] == [
            [(3, b"a3")],  # DEVICE_A's network operator
            [(4, b"a4"), (9, b"a9")],  # DEVICE_A's supplier, in line order
            [(7, raw)],
        ]
        [(row, _)] = groups[2][0]
        assert row == (DEVICE_B, "SUPB", "supplier", MAY, None)
        assert groups[1][0][1][0] == (DEVICE_A, "SUPA", "supplier", MAY, JUNE)
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


def test_a_group_larger_than_the_bound_comes_back_in_parts_not_to_be_judged(monkeypatch) -> None:
    monkeypatch.setattr(waiting_lines, "MOST_IN_A_GROUP", 2)
    waiting = WaitingLines()
    try:
        for line in range(5):
            waiting.add((DEVICE_A, "SUPA", "supplier", MAY, None), (line, b""))
        for line in (10, 11):
            waiting.add((DEVICE_B, "SUPA", "supplier", MAY, None), (line, b""))
        parts = [([origin[0] for _, origin in group], judged) for group, judged in waiting.groups()]
        assert parts == [([0, 1], False), ([2, 3], False), ([4], False), ([10, 11], True)]
    finally:
        waiting.close()
