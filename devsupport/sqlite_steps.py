"""The virtual machine instructions SQLite runs for a statement: a measure of a read's work
that, unlike its time, does not move with the machine's load (the store's `*_work` tests,
bench/request_ranges.py)."""

from __future__ import annotations

from typing import Any


def instructions(driver: Any, statement: str, parameters: object) -> int:
    """The instructions SQLite runs for the statement on the driver's (sqlite3) connection: a
    progress handler called at every one."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    driver.set_progress_handler(count, 1)
    try:
        driver.execute(statement, parameters).fetchall()
    finally:
        driver.set_progress_handler(None, 0)
    return steps
