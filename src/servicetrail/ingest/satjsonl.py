"""SAT JSON Lines: one normalised record a line (SPEC section 4)."""

from __future__ import annotations

from typing import Any

import orjson

from ..domain.ids import InvalidValue
from ..domain.model import SatRecord
from ..domain.records import record_values


def parse_line(line: bytes) -> SatRecord:
    return SatRecord(*parse_values(line))


def parse_values(line: bytes) -> tuple[Any, ...]:
    """parse_line's fields in SatRecord order (a loader makes rows of them, not records)."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise InvalidValue(f"not JSON: {e}") from None
    return record_values(raw)
