"""Shaping items for the terminal and for files: JSON Lines and a streamed table.

CSV reports come from store.export, which lets the database build the lines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

import orjson


def json_line(value: Any) -> str:
    """One line of JSON Lines (see line_ends_escaped)."""
    return line_ends_escaped(orjson.dumps(value)).decode()


def line_ends_escaped(json_text: bytes) -> bytes:
    """JSON text with U+2028 and U+2029 written escaped, the same JSON: as they are, Python's
    splitlines() and some editors took them for line ends and cut an access-log entry, a
    record or a reject in two (audit 24b, review 24d)."""
    if b"\xe2\x80\xa8" in json_text or b"\xe2\x80\xa9" in json_text:
        return json_text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return json_text


def write_jsonl(items: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for entry in items:
        out.write(json_line(entry) + "\n")
        count += 1
    return count


# (item field, column heading, width)
_TABLE = (
    ("id", "id", 9),  # what `triggers`, the API's /records/{id} and the screen take
    ("logged_at", "logged_at", 27),
    ("kind", "kind", 15),
    ("srv", "srv", 7),
    ("command_variant", "cv", 2),
    ("srv_title", "srv_title", 34),
    ("device_id", "device_id", 23),
    ("party_id", "party_id", 16),
    ("user_role", "role", 4),
    ("response_code", "code", 6),
    ("access", "access", 6),
    # last, and never cut: the key that ties a request to its acknowledgement and responses,
    # and what `--request-id` searches by; without it a device's table did not say which
    # response answered which request (audit 48f)
    ("request_id", "request_id", 0),
)


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    if not width:  # the last column: as long as it is
        return text
    return (text[: width - 1] + "…" if len(text) > width else text).ljust(width)


def write_table(items: Iterable[dict[str, Any]], out: TextIO) -> int:
    """A fixed-width table, written row by row so that any number of records streams."""
    out.write("  ".join(_cell(heading, w) for _, heading, w in _TABLE).rstrip() + "\n")
    out.write("  ".join("-" * (w or len(h)) for _, h, w in _TABLE) + "\n")
    count = 0
    for entry in items:
        out.write("  ".join(_cell(entry.get(name), w) for name, _, w in _TABLE).rstrip() + "\n")
        count += 1
    return count


# a trigger's own columns, before the request's
_TRIGGER_TABLE = (("link", "link", 11), ("seconds_before", "seconds_before", 14))


def write_triggers_table(triggers: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Possible triggers (SPEC section 6) as the records table, with how they link and how
    long before the record each came."""
    columns = _TRIGGER_TABLE + _TABLE
    out.write("  ".join(_cell(heading, w) for _, heading, w in columns).rstrip() + "\n")
    out.write("  ".join("-" * (w or len(h)) for _, h, w in columns) + "\n")
    count = 0
    for trigger in triggers:
        cells = [_cell(trigger[name], w) for name, _, w in _TRIGGER_TABLE]
        cells += [_cell(trigger["record"].get(name), w) for name, _, w in _TABLE]
        out.write("  ".join(cells).rstrip() + "\n")
        count += 1
    return count
