"""The shape of DCC traffic: the mix of exchanges, who sends what to which device, response
codes, alerts, the hours of the day and how popular each SRV is."""

from __future__ import annotations

from bisect import bisect
from collections.abc import Sequence
from itertools import accumulate

from ..domain.catalogue import CATALOGUE, Srv
from ..domain.model import DEVICE_TYPES
from .world import _DAY, _Picker

# each device type's share of device traffic, and how steeply activity falls off across devices
_TRAFFIC = {
    "ESME": 1.0,
    "GSME": 0.8,
    "CHF": 0.25,
    "GPF": 0.2,
    "HCALCS": 0.08,
    "PPMID": 0.1,
    "IHD": 0.04,
    "CAD": 0.06,
    "Type2": 0.03,
}
_ZIPF = 0.9

# exchange types: device alert, DCC alert, non-device request, a DCC-scheduled read's data, else a
# device request
_P_DEVICE_ALERT, _P_DCC_ALERT, _P_NON_DEVICE, _P_SCHEDULED = 0.09, 0.105, 0.15, 0.158

# who sends a device request, relative to the device at that time
SUPPLIER, OPERATOR, OTHER_USER, AGENT, OTHER_SUPPLIER, OTHER_OPERATOR, EXPORT, FUTURE = range(8)
_SENDERS = _Picker(range(8), (0.66, 0.09, 0.09, 0.05, 0.04, 0.015, 0.025, 0.015))

_ALERT_CODES = ("8F1C", "8F35", "8F0A", "8F12", "8F19", "8F20", "8F3E", "8F11", "8F0F", "8F84")
# DCC alerts about a Device (other than a comms hub's power outage, AD1, which goes to the network
# operator); the rest report a change of supplier's outcome and name no Device
_P_DCC_ALERT_NO_DEVICE = 0.25
_DEVICE_DCC_ALERTS = _Picker(("N12", "N16", "N56"), (0.5, 0.25, 0.25))

# future-dated commands: the share of future-datable requests sent with an ExecutionDateTime ahead,
# by kind of SRV, and the share of those that cancel a pending command instead
_P_FUTURE_CRITICAL, _P_FUTURE_READ, _P_FUTURE_OTHER, _P_CANCEL = 0.3, 0.01, 0.1, 0.1
_P_FUTURE_FAILS = 0.05  # 8F67 rather than 8F66 when the command falls due
# refused by the DCC itself, before a critical request becomes a command: no command to sign
_REFUSED_BY_DCC = frozenset({"E1", "E2", "E3", "E4", "E5", "E11", "E12", "E13", "E19"})
# what the DCC reads on a schedule (5.1) and sends without a request of the moment
_SCHEDULED_SRVS = frozenset({"4.1.1", "4.6.1", "4.8.1", "4.17"})


def _codes(pairs: Sequence[tuple[str, float]]) -> _Picker:
    return _Picker([c for c, _ in pairs], [w for _, w in pairs])


_CODES_RESPONSIBLE = _codes(
    (
        ("I0", 0.935),
        ("E20", 0.025),
        ("E21", 0.025),
        ("E5", 0.006),
        ("E11", 0.004),
        ("E19", 0.003),
        ("E12", 0.002),
    )
)
_CODES_RESPONSIBLE_S1 = _codes(
    (("I0", 0.90), ("E20", 0.035), ("E21", 0.05), ("E5", 0.008), ("E19", 0.004), ("E17", 0.003))
)
_CODES_UNAUTHORISED = _codes((("E4", 0.82), ("I0", 0.14), ("E20", 0.04)))
_CODES_THIRD_PARTY = _codes(
    (("I0", 0.90), ("E4", 0.04), ("E20", 0.025), ("E21", 0.025), ("E12", 0.01))
)
_CODES_NON_DEVICE = _codes((("I0", 0.97), ("E3", 0.01), ("E13", 0.01), ("E2", 0.01)))

_HOURS = (
    7,
    8,
    8,
    7,
    5,
    3,
    2,
    3,
    4,
    5,
    5,
    5,
    4,
    4,
    4,
    4,
    4,
    4,
    4,
    3,
    3,
    3,
    4,
    5,
)  # UTC hour weights
_HOUR_CUM = [c / sum(_HOURS) for c in accumulate((0, *_HOURS))]
_HOUR_CUM[-1] = 1.0


def _diurnal(t: int) -> int:
    """Warp a uniformly spread time within its day to the hourly shape of DCC traffic
    (monotonic)."""
    day, rest = divmod(t, _DAY)
    frac = rest / _DAY
    hour = min(bisect(_HOUR_CUM, frac) - 1, 23)
    inside = (frac - _HOUR_CUM[hour]) / (_HOUR_CUM[hour + 1] - _HOUR_CUM[hour])
    return day * _DAY + int((hour + inside) * 3_600_000)


def _popularity(s: Srv) -> float:
    if s.srv in ("4.1.1", "4.6.1", "4.8.1", "4.17"):
        return 12.0
    if s.srv in ("2.2", "11.2", "4.3", "4.18"):
        return 5.0
    if s.srv.startswith(("4.", "6.2.")):
        return 3.0
    if s.srv in ("6.13", "7.4", "3.1"):
        return 2.0
    return 0.4 if s.critical else 1.0


def _targets(s: Srv) -> tuple[str, ...]:
    """Device types an SRV may address; the catalogue's word where it has one, any HAN Device
    otherwise."""
    if not s.target_device_types:
        return DEVICE_TYPES
    out: list[str] = []
    for t in s.target_device_types:
        if t == "ZigBee Device":
            out += ["GSME", "GPF", "PPMID", "HCALCS"]
        elif t in DEVICE_TYPES:
            out.append(t)
    return tuple(dict.fromkeys(out))


def _srv_tables() -> tuple[dict[tuple[str, str], _Picker], dict[str, _Picker]]:
    device: dict[tuple[str, str], list[Srv]] = {}
    non_device: dict[str, list[Srv]] = {}
    for s in CATALOGUE.values():
        for role in s.eligible_roles:
            if s.non_device:
                non_device.setdefault(role, []).append(s)
            else:
                for t in _targets(s):
                    device.setdefault((role, t), []).append(s)
    return (
        {k: _Picker([s.srv for s in v], [_popularity(s) for s in v]) for k, v in device.items()},
        {
            k: _Picker([s.srv for s in v], [3.0 if s.srv in ("8.2", "12.2") else 1.0 for s in v])
            for k, v in non_device.items()
        },
    )


_DEVICE_SRVS, _NON_DEVICE_SRVS = _srv_tables()
