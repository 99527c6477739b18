"""The OpenAPI schemas of the query parameters the API parses itself or reads as "not given"
when empty: what /openapi.json says a client may send, which is what the API takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.search import NOT_BLANK_PATTERN

# The documented schema of `?limit=`, `?kind=`, `?from=`... (a form's empty field), which
# the API reads as not given: beside the value's own, or a client generated from the document
# could not send what the API takes (audit 48e)
EMPTY = {"enum": [""]}
_NULL = {"type": "null"}
_ANNOTATIONS = ("title", "description", "default")


def _as_alternatives(schema: dict[str, Any], *alternatives: dict[str, Any]) -> None:
    """`schema` made anyOf `alternatives`, its title, description and default kept: a value
    keyword left beside anyOf (a `format`, a `pattern`) would hold for "" too."""
    kept = {key: schema[key] for key in _ANNOTATIONS if key in schema}
    schema.clear()
    schema.update(kept, anyOf=list(alternatives))


def or_empty(schema: dict[str, Any]) -> None:
    """The documented schema of a parameter whose empty value is not given: its own value's
    alternatives, then "", then the null of an optional Python type."""
    own = schema.get("anyOf") or [{k: v for k, v in schema.items() if k not in _ANNOTATIONS}]
    _as_alternatives(
        schema, *[a for a in own if a != _NULL], EMPTY, *[a for a in own if a == _NULL]
    )


# the schema of a text the API calls blank when it is white space alone (SRV text has its own)
NOT_BLANK_SCHEMA = {"pattern": NOT_BLANK_PATTERN}


def whole_number_schema(
    minimum: int, maximum: int | None = None, *, empty_not_given: bool = False
) -> Callable[[dict[str, Any]], None]:
    """The documented schema of a whole number the route parses itself (to name the parameter
    in its own 422): an integer, in place of the `string or null` of its Python type, which
    with `type: integer` beside it no value could satisfy; "" beside it where the route reads
    an empty value as not given."""

    def documented(schema: dict[str, Any]) -> None:
        schema.pop("anyOf", None)
        schema.pop("maxLength", None)  # the text's bound, which no integer has
        schema.update(type="integer", minimum=minimum)
        if maximum is not None:
            schema["maximum"] = maximum
        if empty_not_given:
            or_empty(schema)

    return documented


# A time as RFC 3339 (the `date-time` format) writes it, or a date alone (`date`, read as
# midnight UTC: SPEC section 5), each in years 1 to 9999: the formats also allow year 0000 and
# a leap second (`23:59:60`), which no datetime holds, and a fraction of any length, where the
# API reads 40 characters at the most (domain.times.parse_time). It also takes ISO-8601's other
# forms (`20250301`, `2025-W10`, a space for the `T`); the document names the two that clients
# write.
_NOT_YEAR_0 = "^(?!0000)"
_TIME = {
    "type": "string",
    "format": "date-time",
    "pattern": _NOT_YEAR_0 + "(?!.{17}60)",  # the seconds' place in YYYY-MM-DDThh:mm:ss
    "maxLength": 40,
}
_DAY = {"type": "string", "format": "date", "pattern": _NOT_YEAR_0}


def time_schema(schema: dict[str, Any]) -> None:
    _as_alternatives(schema, _TIME, _DAY)


def optional_time_schema(schema: dict[str, Any]) -> None:
    _as_alternatives(schema, _TIME, _DAY, EMPTY, _NULL)
