"""Validation of a normalised SAT record (SPEC section 4, SAT JSON Lines) and its API shape."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .catalogue import srv_title
from .ids import InvalidValue, RequestId, eui64, is_response_code
from .model import ALERT_KINDS, KINDS, SatRecord
from .times import format_time, parse_time
from .visibility import Access

FIELDS = ("logged_at", "kind", "request_id", "srv", "user_id", "device_id", "response_code", "payload")
_SRV_CHARS = "0123456789."
MAX_PAYLOAD_CHARS = 1_000_000


def record_from_mapping(raw: Mapping[str, Any]) -> SatRecord:
    """A SatRecord from one decoded SAT JSON Lines object, or InvalidValue naming the field."""
    return SatRecord(*record_values(raw))


def record_values(raw: Mapping[str, Any]) -> tuple[datetime, str, str, str, str, str, str, str]:
    """record_from_mapping's fields in SatRecord order, without building the record.

    This runs once per ingested record (a loader turns the fields straight into a row), so
    it reads each field once, checks the common case cheaply and only works out the exact
    reason on the way to an error.
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise InvalidValue("a record must be a JSON object")
    get = raw.get
    values = when, kind, request, srv, user, device, code, payload = (
        get("logged_at"), get("kind"), get("request_id"), get("srv"), get("user_id"), get("device_id"),
        get("response_code"), get("payload"))
    if not (type(when) is str and type(kind) is str and type(request) is str and type(srv) is str
            and type(user) is str and type(device) is str and type(code) is str and type(payload) is str):
        for name, value in zip(FIELDS, values):
            if value is not None and not isinstance(value, str):
                raise InvalidValue(f"{name} must be a string, not {type(value).__name__}")
        when, kind, request, srv, user, device, code, payload = (v or "" for v in values)
    if not (when.strip() and kind.strip() and request.strip() and user.strip()):
        missing = [name for name, value in zip(FIELDS, (when, kind, request, "-", user)) if not value.strip()]
        raise InvalidValue(f"missing required field(s): {', '.join(missing)}")
    kind = kind.strip()
    if kind not in KINDS:
        raise InvalidValue(f"kind must be one of {', '.join(KINDS)}: {kind!r}")
    try:
        logged_at = parse_time(when)
    except InvalidValue as e:
        raise InvalidValue(f"logged_at: {e}") from None
    try:  # a reason names its field: user_id and device_id are both EUI-64s
        field = "request_id"
        request_id = str(RequestId.parse(request))
        field = "user_id"
        user_id = eui64(user.strip())
        field = "device_id"
        device = device.strip()
        device_id = eui64(device) if device else ""
    except InvalidValue as e:
        raise InvalidValue(f"{field}: {e}") from None
    srv = srv.strip()
    # strip() of the allowed characters leaves nothing exactly when every character is allowed
    if srv and (len(srv) > 12 or srv.strip(_SRV_CHARS)):
        raise InvalidValue(f"srv must be a Service Reference Variant such as 4.1.1: {srv!r}")
    if not srv and kind == "request":
        raise InvalidValue("a request must name its srv")
    if not device_id and kind == "device_alert":
        raise InvalidValue("a device_alert must name the device_id that raised it")
    code = code.strip()
    if code and not is_response_code(code):
        raise InvalidValue(f"response_code must be a DUIS code such as I0 or E4: {code!r}")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise InvalidValue(f"payload longer than {MAX_PAYLOAD_CHARS} characters")
    if "\x00" in payload:  # PostgreSQL text cannot hold it, and no DUIS message contains one
        raise InvalidValue("payload contains a NUL character")
    return logged_at, kind, request_id, srv, user_id, device_id, code, payload


ITEM_FIELDS = ("id", "logged_at", "kind", "request_id", "srv", "srv_title", "device_id", "device_type",
               "smets", "user_id", "user_role", "party_id", "response_code", "access")
# a report's columns: every row is the viewer's own, so the payload is always there
REPORT_FIELDS = (*ITEM_FIELDS, "payload")


def item(record_id: int, logged_at: datetime, kind: str, request_id: str, srv: str | None,
         device_id: str | None, device_type: str | None, smets: int | None, user_id: str,
         user_role: str | None, party_id: str | None, response_code: str | None, access: str,
         payload: str | None) -> dict[str, Any]:
    """The item every interface shows (SPEC section 5): payload only when the record is the viewer's own."""
    shown: dict[str, Any] = {
        "id": record_id, "logged_at": format_time(logged_at), "kind": kind, "request_id": request_id,
        "srv": srv or "", "srv_title": srv_title(srv or ""), "device_id": device_id or "",
        "device_type": device_type, "smets": smets, "user_id": user_id, "user_role": user_role,
        "party_id": party_id, "response_code": response_code or "", "access": access,
    }
    if access == Access.OWN:
        shown["payload"] = payload or ""
    return shown


def is_alert(kind: str) -> bool:
    return kind in ALERT_KINDS
