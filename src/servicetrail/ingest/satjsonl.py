"""SAT JSON Lines: one normalised record a line (SPEC section 4)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..domain.ids import InvalidValue, RepeatedKeys, keys_once
from ..domain.records import record_values


def parse_values(line: bytes) -> tuple[Any, ...]:
    """A line's fields in SatRecord order (a loader makes rows of them, not records)."""
    try:
        raw = json_object(line)
    except orjson.JSONDecodeError as e:
        raise InvalidValue(not_json(e, line)) from None
    return record_values(raw)


def json_object(line: bytes) -> Any:
    """The line as orjson reads it, a field given twice refused: orjson keeps the last value,
    and the first was dropped without a word, ambiguous evidence stored as if it were not
    (audits 42b, 43a). The exact check runs only when the line holds more `":` than its
    object has keys (one each, compact or as Python writes it, or a string that holds one):
    about 1 us a kilobyte of line otherwise, against orjson's 0.8. A key spaced from its
    colon (`"kind" : `, a pretty-printer's habit, not a JSON Lines writer's) is not counted:
    looking for those too cost 3 us a kilobyte more (review 43d)."""
    raw = orjson.loads(line)
    if type(raw) is dict and line.count(b'":') > len(raw):
        try:
            json.loads(line, object_pairs_hook=keys_once)
        except RecursionError:  # orjson reads 1,023 levels, the json module fewer (43d)
            raise InvalidValue("nested too deeply to be a record") from None
        except RepeatedKeys as e:
            raise InvalidValue(
                f"the field {json.dumps(e.keys[0][:40])} is given twice: which value is meant "
                "is unclear"
            ) from None
        except ValueError:  # what orjson read and the json module does not: orjson's reading
            pass
    return raw


def not_json(error: orjson.JSONDecodeError, line: bytes) -> str:
    """Why a line is not JSON: bytes that are not UTF-8 were said as orjson's "str is not
    valid UTF-8: surrogates not allowed" (audit 28a); records on lines ending in CR alone
    were one line "not JSON" with no word of why (audit 35c)."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8 text (byte {bad.start + 1} of the line)"
    if _records_on_cr_lines(line):
        return f"not JSON: {error} (a carriage return inside the line: lines end in LF or CRLF)"
    return f"not JSON: {error}"


def _records_on_cr_lines(line: bytes) -> bool:
    """Whether the line is records on lines ending in CR alone: a CR is JSON's white space, so
    one inside a line that is not JSON for another reason is no sign of it (review 35f)."""
    pieces = [piece for piece in line.split(b"\r") if piece.strip()]
    if len(pieces) < 2:
        return False
    try:
        return all(isinstance(orjson.loads(piece), dict) for piece in pieces)
    except orjson.JSONDecodeError:
        return False
