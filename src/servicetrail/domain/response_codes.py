"""DUIS response codes and alert codes: which are valid, what each one means, in words.

A record's `response_code` is one of three things (SPEC section 4.1):
- a Response header's `ResponseCode`: one of the DUIS schema's 194 codes. `I` is information
  (success, acknowledgement), `W` a warning, `E` an error. The seven-character ones (E050101,
  W110101 ...) belong to one Service Request: their digits name its Service Reference
  (05 01 is 5.1, Create Schedule);
- a Device Alert's code: a GBCS alert code, four hexadecimal digits (`xs:hexBinary` in the
  schema, e.g. 8F35; 8F66/8F67 report a future-dated command's outcome);
- a DCC Alert's code: AD1 or N1 ... N999 (the schema's `DCCAlertCode` list).

Meanings are carried only where a source gives them (scripts/gen_response_codes.py cites
each); every other code is explained as what it is and where DUIS defines it, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .catalogue import CATALOGUE
from .ids import InvalidValue, shown
from .response_code_data import DCC_ALERT_CODES, FUTURE_DATED_ALERT_CODES, MEANINGS, RESPONSE_CODES

INFORMATION, WARNING, ERROR, DEVICE_ALERT, DCC_ALERT, UNKNOWN = (
    "information",
    "warning",
    "error",
    "device_alert",
    "dcc_alert",
    "unknown",
)
CATEGORY_WORDS = {
    INFORMATION: "Information (success)",
    WARNING: "Warning",
    ERROR: "Error",
    DEVICE_ALERT: "Device Alert (GBCS alert code)",
    DCC_ALERT: "DCC Alert",
    UNKNOWN: "Not a DUIS code",
}
_PREFIX_CATEGORY = {"I": INFORMATION, "W": WARNING, "E": ERROR}
_ALERT_KINDS = {"device_alert": DEVICE_ALERT, "dcc_alert": DCC_ALERT}

DUIS_RESPONSE_CODES = frozenset(RESPONSE_CODES)
_DCC_ALERT_CODES = frozenset(DCC_ALERT_CODES)
_GBCS_ALERT_CODE = re.compile(r"[0-9A-Fa-f]{4}")
_SERVICE_SPECIFIC = re.compile(r"[EW](\d\d)(\d\d)\d\d")


def is_duis_response_code(code: object) -> bool:
    """One of the schema's ResponseCode values, exactly (the list is case-sensitive)."""
    return isinstance(code, str) and code in DUIS_RESPONSE_CODES


def code_category(code: str, kind: str = "") -> str:
    """INFORMATION, WARNING, ERROR, DEVICE_ALERT, DCC_ALERT or UNKNOWN. A record's kind, when
    known, settles a code that could be both (E100 is a DUIS error and a hexadecimal alert)."""
    if not isinstance(code, str) or not code:
        return UNKNOWN
    alert = _ALERT_KINDS.get(kind)
    if alert is None and code in DUIS_RESPONSE_CODES:
        return _PREFIX_CATEGORY[code[0]]
    if code in _DCC_ALERT_CODES and alert in (None, DCC_ALERT):
        return DCC_ALERT
    if _GBCS_ALERT_CODE.fullmatch(code) and alert in (None, DEVICE_ALERT):
        return DEVICE_ALERT
    return UNKNOWN


def service_reference_of(code: str) -> str:
    """`5.1` for E050101: the Service Reference a seven-character code belongs to, else ''."""
    found = _SERVICE_SPECIFIC.fullmatch(code) if code in DUIS_RESPONSE_CODES else None
    return f"{int(found[1])}.{int(found[2])}" if found else ""


@cache  # 36 Service References at most: each name is worked out once
def service_name(reference: str) -> str:
    """`5.1 Create Schedule`; for a Service Reference with several variants, the words their
    titles share (`8.14 Communications Hub Status Update`), or every title where they share
    less than two (`8.12 Restore HAN Device Log / Restore Gas Proxy Function Device Log`)."""
    titles = [s.title for s in CATALOGUE.values() if ".".join(s.srv.split(".")[:2]) == reference]
    if not titles:
        return reference
    shared: list[str] = []
    for words in zip(*(title.split() for title in titles)):
        if len(set(words)) > 1:
            break
        shared.append(words[0])
    name = " ".join(shared).rstrip(" -/(")
    return f"{reference} {name if len(name.split()) > 1 else ' / '.join(titles)}"


def explain_code(code: str, kind: str = "") -> str:
    """What the code means, in words an analyst reads beside a record's code; for a code whose
    meaning servicetrail does not carry, what it is and where DUIS (or GBCS) defines it."""
    if not code:
        return ""
    category = code_category(code, kind)
    if category == UNKNOWN:
        return "Not a response or alert code that DUIS defines"
    known = MEANINGS.get(code.upper() if category == DEVICE_ALERT else code)
    if known and (category != DEVICE_ALERT or code.upper() in FUTURE_DATED_ALERT_CODES):
        return known
    if category == DEVICE_ALERT:
        return (
            "A Device Alert code (GBCS, hexadecimal); "
            "its meaning is in the GBCS list of alert codes"
        )
    if category == DCC_ALERT:
        return "A DCC Alert code; its meaning is in the DCC Alerts of DUIS"
    word = {INFORMATION: "information", WARNING: "warning", ERROR: "error"}[category]
    reference = service_reference_of(code)
    if reference:
        return (
            f"A DUIS {word} specific to Service Request {service_name(reference)}; "
            "its meaning is in that Service Request's definition in DUIS"
        )
    return f"A DUIS {word} code; its meaning is in the response codes of DUIS"


# --- validation of DUIS documents ------------------------------------------------------------


def check_srv(srv: object) -> str:
    """A DUIS ServiceReferenceVariant, which must be one of the catalogue's SRVs."""
    if isinstance(srv, str) and srv in CATALOGUE:
        return srv
    raise InvalidValue(
        f"ServiceReferenceVariant must be one of the {len(CATALOGUE)} SRVs of DUIS 5.x, "
        f"not {shown(srv)}"
    )


def check_response_code(code: object) -> str:
    """A DUIS ResponseCode, which must be one of the schema's codes, exactly."""
    if is_duis_response_code(code):
        return code  # type: ignore[return-value]
    raise InvalidValue(
        f"ResponseCode must be one of the {len(DUIS_RESPONSE_CODES)} codes of the DUIS "
        f"schema, not {shown(code)}"
    )


# --- the screen's legend -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegendGroup:
    """One prefix's codes: those with a known meaning one by one, the rest listed compactly."""

    title: str
    noun: str  # what the group's codes are, e.g. "errors"
    explained: tuple[tuple[str, str], ...]  # (code, meaning)
    general: tuple[str, ...]  # DUIS codes of this prefix whose meaning DUIS gives
    by_service: tuple[tuple[str, tuple[str, ...]], ...]  # (Service Request, its codes)
    note: str = ""


def legend() -> tuple[LegendGroup, ...]:
    """Every code DUIS defines, grouped by what it is (I, W, E, alerts), for the search page."""
    groups = []
    for category, title, noun in (
        (INFORMATION, "I: information and success", "information codes"),
        (WARNING, "W: warnings", "warnings"),
        (ERROR, "E: errors", "errors"),
    ):
        codes = [c for c in RESPONSE_CODES if code_category(c) == category]
        services: dict[str, list[str]] = {}
        for code in codes:
            if code not in MEANINGS and service_reference_of(code):
                services.setdefault(service_name(service_reference_of(code)), []).append(code)
        groups.append(
            LegendGroup(
                title,
                noun,
                tuple((c, MEANINGS[c]) for c in codes if c in MEANINGS),
                tuple(c for c in codes if c not in MEANINGS and not service_reference_of(c)),
                tuple((name, tuple(found)) for name, found in services.items()),
            )
        )
    groups.append(
        LegendGroup(
            "Alert codes",
            "alert codes",
            tuple((c, MEANINGS[c]) for c in FUTURE_DATED_ALERT_CODES),
            (),
            (),
            note=(
                "Any other four hexadecimal digits are a GBCS Device Alert code (its meaning is "
                f"in GBCS); {DCC_ALERT_CODES[0]}, {DCC_ALERT_CODES[1]} ... {DCC_ALERT_CODES[-1]} "
                f"are the {len(DCC_ALERT_CODES)} DCC Alert codes of DUIS."
            ),
        )
    )
    return tuple(groups)
