"""Identifiers of the DCC world: EUI-64s and Request IDs."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_EUI64 = re.compile(r"^[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}$")
_COUNTER = re.compile(r"^[0-9]{1,20}$")


class InvalidValue(ValueError):
    """A value from outside that does not have the shape the SPEC gives it."""


@lru_cache(maxsize=1 << 16)  # a trail names the same Users and Devices over and over
def eui64(value: str) -> str:
    """Normalise an EUI-64 (any case accepted) to its upper-case form."""
    text = value.strip() if isinstance(value, str) else ""
    if not _EUI64.match(text):
        raise InvalidValue(f"not an EUI-64 (8 hex octets joined by '-'): {value!r}")
    return text.upper()


def is_eui64(value: str) -> bool:
    return isinstance(value, str) and bool(_EUI64.match(value.strip()))


@dataclass(frozen=True, slots=True)
class RequestId:
    """`originator:target:counter`, as DUIS writes it."""

    originator: str
    target: str
    counter: str

    @classmethod
    def parse(cls, value: str) -> RequestId:
        parts = value.strip().split(":") if isinstance(value, str) else []
        if len(parts) != 3 or not _COUNTER.match(parts[2]):
            raise InvalidValue(f"not a Request ID (originator:target:counter): {value!r}")
        try:
            return cls(eui64(parts[0]), eui64(parts[1]), parts[2])
        except InvalidValue:
            raise InvalidValue(
                f"not a Request ID (originator and target must be EUI-64s): {value!r}"
            ) from None

    def __str__(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"
