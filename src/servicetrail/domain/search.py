"""A search of the trail, as a value: filters, scope, page size and keyset position."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from .ids import InvalidValue, whole_number
from .times import format_time, parse_time
from .visibility import Scope

MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the previous page stopped: the last (logged_at, id) shown, newest first."""

    logged_at: datetime
    record_id: int

    def encode(self) -> str:
        raw = f"{format_time(self.logged_at)}|{self.record_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            padded = token + "=" * (-len(token) % 4)
            when, _, rid = base64.urlsafe_b64decode(padded.encode("ascii")).decode().partition("|")
            record_id = whole_number(rid)
            if not 1 <= record_id <= 2**63 - 1:  # no record has another id; the driver would overflow
                raise ValueError
            return cls(parse_time(when), record_id)
        except (ValueError, UnicodeError, binascii.Error, InvalidValue):
            raise InvalidValue("not a cursor this server issued; start again from the first page") from None


@dataclass(frozen=True, slots=True)
class Search:
    device_id: str | None = None
    request_id: str | None = None
    srvs: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    time_from: datetime | None = None  # inclusive
    time_to: datetime | None = None  # exclusive
    scope: Scope = Scope.ALL
