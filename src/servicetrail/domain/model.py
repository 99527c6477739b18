"""The records and parties of a Service Audit Trail, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timezone
from enum import StrEnum

UTC = timezone.utc


class Kind(StrEnum):
    REQUEST = "request"
    ACKNOWLEDGEMENT = "acknowledgement"
    RESPONSE = "response"
    DEVICE_ALERT = "device_alert"
    DCC_ALERT = "dcc_alert"


ALERT_KINDS = frozenset({Kind.DEVICE_ALERT, Kind.DCC_ALERT})
KINDS = tuple(k.value for k in Kind)


class Relation(StrEnum):
    SUPPLIER = "supplier"
    NETWORK_OPERATOR = "network_operator"


# what a screen and an explanation call each relation
RELATION_LABELS = {
    Relation.SUPPLIER: "Responsible Supplier",
    Relation.NETWORK_OPERATOR: "Network Operator",
}


KNOWN_ROLES = {
    "IS": "Import Supplier",
    "ES": "Export Supplier",
    "GS": "Gas Supplier",
    "ED": "Electricity Distributor",
    "GT": "Gas Transporter",
    "OU": "Other User",
    "RSA": "Registered Supplier Agent",
}

DEVICE_TYPES = ("ESME", "GSME", "CHF", "GPF", "HCALCS", "PPMID", "IHD", "CAD", "Type2")


def role_behaviour(role: str) -> str:
    """The role whose rules apply: SPEC section 2 treats an unknown future code like OU."""
    return role if role in KNOWN_ROLES else "OU"


def role_name(role: str) -> str:
    return KNOWN_ROLES.get(role, f"{role} (future role, treated as Other User)")


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    party_id: str
    role: str


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    device_type: str
    smets: int


@dataclass(frozen=True, slots=True)
class Responsibility:
    """`[valid_from, valid_to)`; `valid_to` None means still open."""

    device_id: str
    party_id: str
    relation: str
    valid_from: datetime
    valid_to: datetime | None

    def covers(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)

    def overlaps(self, other: Responsibility) -> bool:
        self_ends_after = other.valid_to is None or self.valid_from < other.valid_to
        other_ends_after = self.valid_to is None or other.valid_from < self.valid_to
        return self_ends_after and other_ends_after

    def describe(self) -> str:
        end = _moment(self.valid_to) if self.valid_to else "now (open)"
        return f"{_moment(self.valid_from)} to {end}"


def _moment(value: datetime) -> str:
    """A day where the interval turns at midnight UTC, the instant otherwise: a change of
    supplier at 01:00 read "from 2025-03-30" for a record of 00:59 that the old supplier
    still held (audit, session 19)."""
    utc = value.astimezone(timezone.utc)
    if utc.time() == time(0):
        return f"{utc.year:04d}-{utc:%m-%d}"  # %Y leaves years before 1000 short
    seconds = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc.year:04d}-{utc:%m-%d %H:%M:%S}{seconds} UTC"


@dataclass(frozen=True, slots=True)
class SatRecord:
    """One message of the trail. `key` identifies it (SPEC section 4, "Identity").

    The fields after `payload` come from DUIS (SPEC section 4.1): `command_variant` is a
    title field every viewer of the record sees; `execution_at` and `subject_device_id` are
    read from the body, so only the record's own User sees them, like the payload;
    `response_id` is the DUIS ResponseID of a response or alert, which tells apart two
    messages of one Request ID, kind and time."""

    logged_at: datetime
    kind: str
    request_id: str
    srv: str
    user_id: str
    device_id: str
    response_code: str
    payload: str
    command_variant: int | None = None
    execution_at: datetime | None = None
    subject_device_id: str = ""
    response_id: str = ""

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.request_id, self.kind, self.logged_at)
