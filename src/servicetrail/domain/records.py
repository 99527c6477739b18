"""Validation of a normalised SAT record (SPEC section 4, SAT JSON Lines) and its API shape."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .catalogue import srv_title
from .ids import (
    ASCII_SPACE,
    InvalidValue,
    RequestId,
    eui64,
    is_response_code,
    is_srv_form,
    shown,
)
from .model import ALERT_KINDS, KINDS, SatRecord
from .times import format_time, parse_time
from .visibility import Access

FIELDS = (
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "user_id",
    "device_id",
    "response_code",
    "payload",
)
# as large as the largest DUIS document (an 11.1 firmware image), so SAT JSONL can carry any of them
MAX_PAYLOAD_CHARS = 16 * 1024 * 1024
DIGEST_BYTES = 16  # 128 bits of SHA-256: a collision between two messages is not a practical worry


# A misspelt field was a missing one, taken as empty: `paylaod` stored a request without its
# body, and the line put right could never follow it, a conflict (audit 35c). The other
# fields of an API item or a report row are ignored: our own exports read back as they did
# (review 35f), each a duplicate of what it shows when that came from SAT JSON Lines (a DUIS
# response's identity holds its ResponseID, which no item carries: review 37d)
ALL_FIELDS = (*FIELDS, "command_variant")


def _unknown_fields(raw: Mapping[str, Any]) -> str:
    unknown = [shown(name) for name in raw if name not in _KNOWN_FIELDS]
    named = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
    return (
        f"unknown field(s) {named}: a record's are {', '.join(ALL_FIELDS)} (an API item's "
        "others are ignored)"
    )


def record_from_mapping(raw: Mapping[str, Any]) -> SatRecord:
    """A SatRecord from one decoded SAT JSON Lines object, or InvalidValue naming the field."""
    return SatRecord(*record_values(raw))


def record_values(
    raw: Mapping[str, Any],
) -> tuple[datetime, str, str, str, str, str, str, str, int | None]:
    """record_from_mapping's fields in SatRecord order, without building the record.

    This runs once per ingested record (a loader turns the fields straight into a row), so
    it reads each field once, checks the common case cheaply and only works out the exact
    reason on the way to an error.
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise InvalidValue("a record must be a JSON object")
    if not raw.keys() <= _KNOWN_FIELDS:
        raise InvalidValue(_unknown_fields(raw))
    get = raw.get
    if get("access") == "mp141":
        # read as a record, its absent payload was an empty one: a "conflict with stored
        # record N" for a title the store holds, or a record stored without its body
        raise InvalidValue(
            "a title-only item (access mp141): it leaves out another User's payload, so it "
            "is not a record to load"
        )
    values = when, kind, request, srv, user, device, code, payload = (
        get("logged_at"),
        get("kind"),
        get("request_id"),
        get("srv"),
        get("user_id"),
        get("device_id"),
        get("response_code"),
        get("payload"),
    )
    if not (
        type(when) is str
        and type(kind) is str
        and type(request) is str
        and type(srv) is str
        and type(user) is str
        and type(device) is str
        and type(code) is str
        and type(payload) is str
    ):
        for name, value in zip(FIELDS, values):
            if value is not None and not isinstance(value, str):
                raise InvalidValue(f"{name} must be a string, not {type(value).__name__}")
        when, kind, request, srv, user, device, code, payload = (v or "" for v in values)
    # SPEC 4.1: a response the Device sent without a RequestID has an empty request_id
    if not (
        when.strip(ASCII_SPACE)
        and kind.strip(ASCII_SPACE)
        and (request.strip(ASCII_SPACE) or kind.strip(ASCII_SPACE) == "response")
        and user.strip(ASCII_SPACE)
    ):
        missing = [
            name
            for name, value in zip(FIELDS, (when, kind, request, "-", user))
            if not value.strip(ASCII_SPACE)
            and not (name == "request_id" and kind.strip(ASCII_SPACE) == "response")
        ]
        raise InvalidValue(f"missing required field(s): {', '.join(missing)}")
    kind = kind.strip(ASCII_SPACE)
    if kind not in KINDS:
        raise InvalidValue(f"kind must be one of {', '.join(KINDS)}: {shown(kind)}")
    try:
        logged_at = parse_time(when)
    except InvalidValue as e:
        raise InvalidValue(f"logged_at: {e}") from None
    try:  # a reason names its field: user_id and device_id are both EUI-64s
        field = "request_id"
        request_id = str(RequestId.parse(request)) if request.strip(ASCII_SPACE) else ""
        field = "user_id"
        user_id = eui64(user)  # eui64 strips what white space an identifier may come in
        field = "device_id"
        device = device.strip(ASCII_SPACE)
        device_id = eui64(device) if device else ""
    except InvalidValue as e:
        raise InvalidValue(f"{field}: {e}") from None
    srv = srv.strip(ASCII_SPACE)
    if srv and not is_srv_form(srv):
        raise InvalidValue(f"srv must be a Service Reference Variant such as 4.1.1: {shown(srv)}")
    if not srv and kind == "request":
        raise InvalidValue("a request must name its srv")
    if not device_id and kind == "device_alert":
        raise InvalidValue("a device_alert must name the device_id that raised it")
    code = code.strip(ASCII_SPACE)
    if code and kind == "request":
        raise InvalidValue(f"response_code must be empty for a request: {shown(code)}")
    if code and not is_response_code(code):
        raise InvalidValue(f"response_code must be a DUIS code such as I0 or E4: {shown(code)}")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidValue(f"payload longer than {MAX_PAYLOAD_CHARS} characters")
    if "\x00" in payload:  # PostgreSQL text cannot hold it, and no DUIS message contains one
        raise InvalidValue("payload contains a NUL character")
    return (
        logged_at,
        kind,
        request_id,
        srv,
        user_id,
        device_id,
        code,
        payload,
        command_variant(get("command_variant"), kind),
    )


def command_variant(value: Any, kind: str) -> int | None:
    """SPEC section 4.1: an integer 1-8 on a request, null on every other kind."""
    if value is None:
        return None
    if type(value) is not int:  # bool is an int subclass, and "4" is not a number
        if type(value) is float and abs(value) >= 2**63:  # orjson reads a longer int so
            digits = len(f"{abs(value):.0f}")  # about: the float holds it to 17 digits
            raise InvalidValue(f"command_variant must be 1-8, not a number of {digits} digits")
        raise InvalidValue(f"command_variant must be an integer 1-8 or null: {shown(value)}")
    if kind != "request":
        raise InvalidValue(f"command_variant is a request's; a {kind} has none")
    if not 1 <= value <= 8:
        raise InvalidValue(f"command_variant must be 1-8: {value}")
    return value


def content_digest(
    kind: str,
    request_id: str,
    srv: str,
    user_id: str,
    device_id: str,
    response_code: str,
    payload: str,
    command_variant: int | None,
    execution_at: datetime | None,
    subject_device_id: str,
    response_id: str,
) -> bytes:
    """What tells a re-sent message from a different one under the same identity (SPEC
    section 4, "Identity"): every stored field after normalisation except the time, which
    is part of the identity itself. The fields are joined by NUL, which none of them can
    hold (each is checked to its form; only the payload, last, is free text), so no two
    different records run together into the same bytes."""
    fields = (
        kind,
        request_id,
        srv,
        user_id,
        device_id,
        response_code,
        "" if command_variant is None else str(command_variant),
        "" if execution_at is None else format_time(execution_at),
        subject_device_id,
        response_id,
        payload,
    )
    return hashlib.sha256("\x00".join(fields).encode("utf-8", "surrogatepass")).digest()[
        :DIGEST_BYTES
    ]


ITEM_FIELDS = (
    "id",
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "srv_title",
    "device_id",
    "device_type",
    "smets",
    "user_id",
    "user_role",
    "party_id",
    "response_code",
    "command_variant",
    "access",
)
# read from the message's body: shown only to the record's own User (SPEC section 5)
OWN_ONLY_FIELDS = ("payload", "execution_at", "subject_device_id")
# a report's columns: every row is the viewer's own, so the own-only fields are always there
REPORT_FIELDS = (*ITEM_FIELDS, *OWN_ONLY_FIELDS)
_KNOWN_FIELDS = frozenset((*ALL_FIELDS, *REPORT_FIELDS))  # what a SAT JSON Lines record may hold


# item()'s last three fields for a record read without its body: payload, execution time and
# subject device
NO_BODY: tuple[None, None, None] = (None, None, None)


def item(
    record_id: int,
    logged_at: datetime,
    kind: str,
    request_id: str,
    srv: str | None,
    device_id: str | None,
    device_type: str | None,
    smets: int | None,
    user_id: str,
    user_role: str | None,
    party_id: str | None,
    response_code: str | None,
    command_variant: int | None,
    access: str,
    payload: str | None,
    execution_at: datetime | None,
    subject_device_id: str | None,
) -> dict[str, Any]:
    """The item every interface shows (SPEC section 5): the body-derived fields only when
    the record is the viewer's own."""
    shown: dict[str, Any] = {
        "id": record_id,
        "logged_at": format_time(logged_at),
        "kind": kind,
        "request_id": request_id,
        "srv": srv or "",
        "srv_title": srv_title(srv or ""),
        "device_id": device_id or "",
        "device_type": device_type,
        "smets": smets,
        "user_id": user_id,
        "user_role": user_role,
        "party_id": party_id,
        "response_code": response_code or "",
        "command_variant": command_variant,
        "access": access,
    }
    if access == Access.OWN:
        shown["payload"] = payload or ""
        shown["execution_at"] = format_time(execution_at) if execution_at is not None else None
        shown["subject_device_id"] = subject_device_id or ""
    return shown


def is_alert(kind: str) -> bool:
    return kind in ALERT_KINDS
