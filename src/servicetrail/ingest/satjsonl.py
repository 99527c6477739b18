"""SAT JSON Lines: one normalised record a line (SPEC section 4)."""
from __future__ import annotations

import orjson

from ..domain.ids import InvalidValue
from ..domain.model import SatRecord
from ..domain.records import record_from_mapping


def parse_line(line: bytes) -> SatRecord:
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise InvalidValue(f"not JSON: {e}") from None
    return record_from_mapping(raw)
