"""The registry files: users.csv, devices.csv, responsibilities.csv (SPEC section 4)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..domain.ids import InvalidValue, eui64, party_id, role_code
from ..domain.model import DEVICE_TYPES, Device, Relation, Responsibility, User
from ..domain.times import parse_time

_DEVICE_TYPES = {t.upper(): t for t in DEVICE_TYPES}


@dataclass(frozen=True)
class RegistryFile:
    columns: tuple[str, ...]
    parse: Callable[[Mapping[str, str]], object]


def _field(row: Mapping[str, str], name: str, required: bool = True) -> str:
    value = (row.get(name) or "").strip()
    if required and not value:
        raise InvalidValue(f"{name} is empty")
    return value


def _ascii(row: Mapping[str, str], name: str) -> str:
    """A code field, refused unless ASCII before it is compared case-blind: 'ſ'.upper() is 'S'."""
    value = _field(row, name)
    if not value.isascii():
        raise InvalidValue(f"{name} must be ASCII: {value!r}")
    return value


def parse_user(row: Mapping[str, str]) -> tuple[User, str]:
    user = User(eui64(_field(row, "user_id")), party_id(_field(row, "party_id")), role_code(_field(row, "role")))
    name = _field(row, "party_name", required=False) or user.party_id
    if len(name) > 200 or "\x00" in name:
        raise InvalidValue("party_name must be at most 200 characters of text")
    return user, name


def parse_device(row: Mapping[str, str]) -> Device:
    raw_type = _ascii(row, "device_type")
    device_type = _DEVICE_TYPES.get(raw_type.upper())
    if device_type is None:
        raise InvalidValue(f"device_type must be one of {', '.join(DEVICE_TYPES)}: {raw_type!r}")
    smets = _ascii(row, "smets").upper().removeprefix("SMETS")
    if smets not in ("1", "2"):
        raise InvalidValue(f"smets must be 1 or 2: {row.get('smets')!r}")
    return Device(eui64(_field(row, "device_id")), device_type, int(smets))


def parse_responsibility(row: Mapping[str, str]) -> Responsibility:
    relation = _ascii(row, "relation").lower()
    if relation not in {r.value for r in Relation}:
        raise InvalidValue(f"relation must be supplier or network_operator: {relation!r}")
    valid_from = parse_time(_field(row, "valid_from"))
    raw_to = _field(row, "valid_to", required=False)
    valid_to = parse_time(raw_to) if raw_to else None
    if valid_to is not None and valid_to <= valid_from:
        raise InvalidValue(f"valid_to {raw_to} is not after valid_from")
    return Responsibility(eui64(_field(row, "device_id")), party_id(_field(row, "party_id")), relation,
                          valid_from, valid_to)


USERS = RegistryFile(("user_id", "party_id", "party_name", "role"), parse_user)
DEVICES = RegistryFile(("device_id", "device_type", "smets"), parse_device)
RESPONSIBILITIES = RegistryFile(("device_id", "party_id", "relation", "valid_from", "valid_to"),
                                parse_responsibility)
