"""A seeded, reproducible, streaming generator of a DCC-shaped world.

`World` holds the parameters. From it come, always the same for the same World:

- the registry (`population(world)`): Parties in every User Role (IS, ES, GS, ED, GT,
  OU, RSA and a future role, `XR`), their User IDs, Devices of every type in SMETS1 and
  SMETS2, and Responsibility intervals (`supplier`, `network_operator`) with changes of
  supplier and of network operator, gaps, and open ends;
- the SAT records (`messages(world)`), streamed lazily in time order: request ->
  acknowledgement (I99, +1 s) -> response, device alerts, DCC alerts and non-device
  requests, with skewed (Zipf-like) activity per Device. Every message carries its DUIS
  XML document, so one stream feeds both the SAT JSON Lines and the DUIS capture writers.

The stream holds only the registry and a few seconds of in-flight messages in memory,
so ten million records cost no more memory than ten.

Run `servicetrail generate --help` to write a world to files or into the store.
"""
from __future__ import annotations

import base64
import csv
import heapq
import random
import re
import sys
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import accumulate, islice
from pathlib import Path
from typing import IO, Any

import orjson

from .domain.catalogue import CATALOGUE, Srv
from .domain.model import DEVICE_TYPES, Device, Relation, Responsibility, SatRecord, User, role_behaviour

UTC = timezone.utc
NS = "http://www.dccinterface.co.uk/ServiceUserGateway"

#: The DCC's own ID: the target of non-device requests and the originator of DCC alerts.
DCC_ID = "90-B3-D5-1F-30-00-00-02"
#: A User Role code that does not exist yet (SPEC: accepted, and treated like OU).
FUTURE_ROLE = "XR"
#: The well-known Device whose trail demonstrates MP141 (present when `World.showcase`).
SHOWCASE_DEVICE_ID = "00-DB-12-00-00-00-01-41"

MIN_PARTIES = 9  # two dual-fuel suppliers, two of ED and GT, one each of OU, RSA and XR
MIN_DEVICES = 18  # one premises of every device type in SMETS1 and in SMETS2
MIN_SPAN = timedelta(days=7)
MAX_DEVICES_BY_DEFAULT = 20_000

_DAY = 86_400_000  # milliseconds
_INF = 1 << 62  # an open-ended interval ends here
_MARGIN = 15 * 60_000  # the last request leaves room for its response before World.end
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Message tuples, as the stream yields them (plain tuples: they are made millions of times).
T, SEQ, KIND, REQUEST_ID, SRV, USER_ID, DEVICE_ID, CODE, DOCUMENT = range(9)
Message = tuple[int, int, str, str, str, str, str, str, str]
"""(t_ms since the epoch, seq, kind, request_id, srv, user_id, device_id, response_code, DUIS document)"""

SAT_FIELDS = ("logged_at", "kind", "request_id", "srv", "user_id", "device_id", "response_code", "payload")


# ==================================================================== parameters

@dataclass(frozen=True)
class World:
    """What to generate. Same World, same output, byte for byte."""

    n_records: int = 100_000
    n_devices: int | None = None  # default: n_records // 20, between MIN_DEVICES and 20,000
    n_parties: int = 130
    seed: int = 141
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    showcase: bool = True  # include SHOWCASE_DEVICE_ID and its scripted MP141 story

    def __post_init__(self) -> None:
        if self.n_records < 0:
            raise ValueError("n_records must be 0 or more")
        if self.n_parties < MIN_PARTIES:
            raise ValueError(f"n_parties must be at least {MIN_PARTIES} (every User Role, changes of supplier)")
        if self.n_devices is not None and self.n_devices < MIN_DEVICES:
            raise ValueError(f"n_devices must be at least {MIN_DEVICES} (every device type in SMETS1 and 2)")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if self.end - self.start < MIN_SPAN:
            raise ValueError(f"end must be at least {MIN_SPAN.days} days after start")

    @property
    def devices(self) -> int:
        if self.n_devices is not None:
            return self.n_devices
        return max(MIN_DEVICES, min(MAX_DEVICES_BY_DEFAULT, self.n_records // 20))

    @property
    def start_ms(self) -> int:
        return _to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _to_ms(self.end)


def _to_ms(value: datetime) -> int:
    delta = value.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_datetime(t_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=t_ms)


_DAY_TEXT: dict[int, str] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _day_text(day: int) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    return text


_HOUR_MINUTE = [f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECOND_MILLI: list[str] = []  # "SS.mmmZ" for every millisecond of a minute, built on first use


def format_ms(t_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2025-03-01T06:43:49.844Z (table look-ups, no datetime)."""
    if not _SECOND_MILLI:
        _SECOND_MILLI.extend(f"{i // 1000:02d}.{i % 1000:03d}Z" for i in range(60_000))
    minute, rest = divmod(t_ms, 60_000)
    day, minute = divmod(minute, 1440)
    text = _DAY_TEXT.get(day) or _day_text(day)
    return text + _HOUR_MINUTE[minute] + _SECOND_MILLI[rest]


def _midnight(t_ms: int) -> int:
    return t_ms - t_ms % _DAY


# ==================================================================== the registry

@dataclass
class PartyInfo:
    party_id: str
    name: str
    group: str  # supplier, ED, GT, OU, RSA, XR: what the company mainly is
    roles: dict[str, list[str]] = field(default_factory=dict)  # role -> its User IDs

    def user(self, role: str) -> str:
        return self.roles[role][0]


@dataclass(frozen=True)
class Showcase:
    """The device whose trail tells the MP141 story, and who plays which part."""

    device_id: str
    device_type: str
    smets: int
    old_supplier: str  # party_id, Responsible Supplier until change_of_supplier
    new_supplier: str  # party_id, from change_of_supplier, open-ended
    network_operator: str
    other_user: str
    agent: str
    future_role_party: str
    change_of_supplier: datetime

    def story(self) -> str:
        cos = self.change_of_supplier.strftime("%Y-%m-%d")
        return (f"Device {self.device_id} ({self.device_type}, SMETS{self.smets}): {self.old_supplier} was its "
                f"Responsible Supplier until {cos}, {self.new_supplier} since; {self.network_operator} holds the "
                f"Network Operator certificate. Other User {self.other_user}, agent {self.agent} and "
                f"{self.future_role_party} (future role {FUTURE_ROLE}) send it requests; it raises alerts; "
                f"{self.old_supplier}'s tariff update after the change is refused with E4.")


@dataclass
class Population:
    """The registry of a World, plus the tables the stream draws from."""

    world: World
    parties: list[PartyInfo]
    devices: list[Device]
    showcase: Showcase | None
    # per device (index-aligned with devices): fuel 0 electricity / 1 gas, install time,
    # supplier and network operator timelines as [(from_ms, to_ms or _INF, party index)]
    fuel: list[int]
    installed: list[int]
    supplier_timeline: list[list[tuple[int, int, int]]]
    operator_timeline: list[list[tuple[int, int, int]]]

    @property
    def users(self) -> list[User]:
        return [User(uid, p.party_id, role) for p in self.parties for role, ids in p.roles.items() for uid in ids]

    def party_name(self, party_id: str) -> str:
        return next(p.name for p in self.parties if p.party_id == party_id)

    def responsibilities(self) -> Iterator[Responsibility]:
        for dev, sup, nop in zip(self.devices, self.supplier_timeline, self.operator_timeline):
            for relation, timeline in ((Relation.SUPPLIER, sup), (Relation.NETWORK_OPERATOR, nop)):
                for start, end, p in timeline:
                    yield Responsibility(dev.device_id, self.parties[p].party_id, relation.value,
                                         to_datetime(start), None if end >= _INF else to_datetime(end))


_PLACES = (
    "Albion", "Avon", "Severn", "Pennine", "Thames", "Cotswold", "Mercia", "Wessex", "Cheviot", "Solent",
    "Humber", "Mersey", "Tyne", "Clyde", "Forth", "Trent", "Medway", "Tamar", "Dart", "Ouse", "Kennet",
    "Eden", "Lune", "Ribble", "Wear", "Tees", "Usk", "Taff", "Towy", "Ness", "Spey", "Tay", "Calder",
    "Aire", "Derwent", "Fowey", "Stour", "Itchen", "Arun", "Rother", "Parrett", "Otter", "Mendip",
    "Quantock", "Chiltern", "Malvern", "Wrekin", "Peak", "Fenland", "Broadland", "Weald", "Purbeck",
    "Exmoor", "Dartmoor", "Kielder", "Lomond", "Cairn", "Skye", "Arran", "Anglesey", "Gower", "Wirral",
    "Furness", "Holderness", "Lindsey", "Breckland", "Wychwood", "Sherwood", "Arden", "Bowland", "Cleveland",
    "Hambleton", "Wolds", "Moorfoot", "Ochil", "Sidlaw", "Trossach", "Morven", "Lammermuir", "Galloway",
    "Carrick", "Kintyre", "Lorne", "Moray", "Buchan", "Mearns", "Fife", "Lothian", "Tweed", "Teviot",
    "Solway", "Eskdale", "Wensley", "Swale", "Nidd", "Wharfe", "Hodder", "Irwell", "Goyt", "Dove",
    "Manifold", "Churnet", "Tame", "Soar", "Welland", "Nene", "Ouzel", "Colne", "Lea", "Mimram",
    "Wey", "Mole", "Darent", "Cuckmere", "Ouse Vale", "Meon", "Avonmouth", "Frome", "Axe", "Culm",
    "Torridge", "Camel", "Lynher", "Teign", "Brue", "Cary", "Yeo", "Wylye", "Nadder", "Ebble",
    "Bourne", "Loddon", "Pang", "Windrush", "Evenlode", "Cherwell", "Ray", "Thame", "Ock", "Glyme",
)
# (name suffix, party_id suffix)
_SUPPLIER_SUFFIX = (("Energy", "ENERGY"), ("Power", "POWER"), ("Gas & Power", "GP"), ("Utilities", "UTIL"),
                    ("Home Energy", "HOME"), ("Electric", "ELEC"), ("Energy Supply", "SUPPLY"))
_DNO_REGIONS = ("North West", "Yorkshire", "West Midlands", "East Midlands", "Eastern", "South Wales",
                "South Western", "London", "South Eastern", "Southern", "North Scotland", "South Scotland",
                "Merseyside", "Northern")
_GDN_REGIONS = ("Northern", "North West", "Midlands", "East of England", "London", "Wales & West",
                "Southern", "Scotland")
_OU_SUFFIX = (("Analytics", "ANALYTICS"), ("Energy Insights", "INSIGHT"), ("Data Services", "DATA"),
              ("Heat Networks", "HEAT"), ("Smart Services", "SMART"), ("Research", "RESEARCH"),
              ("Switching", "SWITCH"), ("Flex", "FLEX"))
_RSA_SUFFIX = (("Metering Services", "METERING"), ("Meter Operations", "MOP"),
               ("Smart Installations", "INSTALL"))


def _party_id(base: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Z0-9]", "", base.upper())[:28] or "PARTY"
    code, n = base, 2
    while code in taken:
        code, n = f"{base}{n}", n + 1
    taken.add(code)
    return code


def _user_id(n: int) -> str:
    c = 0x010000 + n * 0x100 + (n // 250)  # 90-B3-D5-1F-30-01-00-00, -01-01-00, ...
    return f"90-B3-D5-1F-30-{(c >> 16) & 255:02X}-{(c >> 8) & 255:02X}-{c & 255:02X}"


def _make_parties(world: World, rng: random.Random) -> list[PartyInfo]:
    n = world.n_parties
    counts = {
        "XR": max(1, round(n * 0.025)),
        "ED": max(2, round(n * 0.10)),
        "GT": max(2, round(n * 0.07)),
        "RSA": max(1, round(n * 0.08)),
        "OU": max(1, round(n * 0.20)),
    }
    least = {"XR": 1, "ED": 2, "GT": 2, "RSA": 1, "OU": 1}
    while n - sum(counts.values()) < 2:  # at least two suppliers, for changes of supplier
        spare = max(counts, key=lambda g: counts[g] - least[g])
        counts[spare] -= 1
    counts["supplier"] = n - sum(counts.values())
    places = list(_PLACES)
    rng.shuffle(places)
    used = 0

    def place() -> str:
        nonlocal used
        p = places[used % len(places)]
        used += 1
        return p if used <= len(places) else f"{p} {(used - 1) // len(places) + 1}"

    taken: set[str] = set()
    parties: list[PartyInfo] = []

    def add(name: str, code: str, group: str, roles: Sequence[str]) -> None:
        parties.append(PartyInfo(_party_id(code, taken), name, group, {r: [] for r in roles}))

    for i in range(counts["supplier"]):
        if i < 2:  # the two largest: dual fuel, with export
            roles = ["IS", "GS", "ES"]
        else:
            r = rng.random()
            if r < 0.45:
                roles = ["IS", "GS"] + (["ES"] if rng.random() < 0.4 else [])
            elif r < 0.80:
                roles = ["IS"] + (["ES"] if rng.random() < 0.2 else [])
            elif r < 0.95:
                roles = ["GS"]
            else:
                roles = ["ES"]
        if i >= 2 and rng.random() < 0.10:
            roles.append("OU")  # an energy-services arm
        if "IS" not in roles and "GS" in roles:
            name, code = "Gas", "GAS"
        else:
            name, code = rng.choice(_SUPPLIER_SUFFIX if "GS" in roles else _SUPPLIER_SUFFIX[:2] + _SUPPLIER_SUFFIX[3:])
        where = place()
        add(f"{where} {name}", where + code, "supplier", roles)
    for i in range(counts["ED"]):
        if i < len(_DNO_REGIONS):
            add(f"{_DNO_REGIONS[i]} Electricity Networks", _DNO_REGIONS[i] + "NET", "ED",
                ["ED", "GT"] if i == 2 else ["ED"])  # one multi-utility network holds both
        else:
            where = place()
            add(f"{where} Distribution", where + "IDNO", "ED", ["ED"])  # an independent DNO
    for i in range(counts["GT"]):
        if i < len(_GDN_REGIONS):
            add(f"{_GDN_REGIONS[i]} Gas Networks", _GDN_REGIONS[i].replace("&", "") + "GAS", "GT", ["GT"])
        else:
            where = place()
            add(f"{where} Pipelines", where + "PIPES", "GT", ["GT"])  # an independent GT
    for i in range(counts["OU"]):
        roles = ["OU", "RSA"] if i and rng.random() < 0.15 else ["OU"]
        name, code = rng.choice(_OU_SUFFIX)
        where = place()
        add(f"{where} {name}", where + code, "OU", roles)
    for _ in range(counts["RSA"]):
        name, code = rng.choice(_RSA_SUFFIX)
        where = place()
        add(f"{where} {name}", where + code, "RSA", ["RSA"])
    for _ in range(counts["XR"]):
        where = place()
        add(f"{where} Flexibility Services", where + "FLEX" + FUTURE_ROLE, "XR", [FUTURE_ROLE])

    # User IDs: one per role held; the largest supplier runs a second Import Supplier User
    # (its prepayment platform), so "one or more User IDs" is literal.
    serial = 0
    for info in parties:
        for role in info.roles:
            info.roles[role].append(_user_id(serial))
            serial += 1
    parties[0].roles["IS"].append(_user_id(serial))
    return parties


_OUIS = ("00-DB-12", "BC-33-AC", "88-73-84", "00-07-81", "D0-52-A8", "00-1E-5E", "70-EE-50", "A4-C1-38")
_TRAFFIC = {"ESME": 1.0, "GSME": 0.8, "CHF": 0.25, "GPF": 0.2, "HCALCS": 0.08, "PPMID": 0.1, "IHD": 0.04,
            "CAD": 0.06, "Type2": 0.03}
_GAS_TYPES = frozenset({"GSME", "GPF"})
_OPERATOR_TYPES = frozenset({"ESME", "GSME", "GPF", "CHF", "HCALCS"})  # hold a Network Operator certificate
_ZIPF = 0.9


class _Picker:
    """Weighted choice by bisection over cumulative weights: one random() and one bisect."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0

    def pick(self, rand: Callable[[], float]) -> Any:
        return self.items[min(bisect(self.cum, rand() * self.total), len(self.items) - 1)]

    def __bool__(self) -> bool:
        return bool(self.items)


def _premises(rng: random.Random) -> list[str]:
    types = ["CHF", "ESME"]
    if rng.random() < 0.75:
        types += ["GSME", "GPF"]
    for t, p in (("IHD", 0.85), ("PPMID", 0.08), ("CAD", 0.15), ("HCALCS", 0.03), ("Type2", 0.05)):
        if rng.random() < p:
            types.append(t)
    return types


@lru_cache(maxsize=4)
def population(world: World) -> Population:
    """The registry of the World (cached: every writer of one World shares it)."""
    rng = random.Random(f"servicetrail:{world.seed}:registry")
    parties = _make_parties(world, rng)
    holders = {role: [i for i, p in enumerate(parties) if role in p.roles]
               for role in ("IS", "GS", "ES", "ED", "GT", "OU", "RSA", FUTURE_ROLE)}

    def market(role: str) -> _Picker:  # a few big suppliers, a long tail
        members = holders[role]
        return _Picker(members, [1 / (rank + 1) ** 0.8 for rank in range(len(members))])

    electricity, gas = market("IS"), market("GS")
    dnos, gdns = _Picker(holders["ED"], [1.0] * len(holders["ED"])), _Picker(holders["GT"], [1.0] * len(holders["GT"]))
    start, end = world.start_ms, world.end_ms
    span = end - start

    def other(picker: _Picker, not_this: int) -> int:
        for _ in range(20):
            p = picker.pick(rng.random)
            if p != not_this:
                return p
        return next(p for p in picker.items if p != not_this)

    def supplier_timeline(first: int, install: int, picker: _Picker) -> list[tuple[int, int, int]]:
        timeline, t, p = [], install, first
        while True:
            change = _midnight(t + max(int(rng.expovariate(1 / (3 * 365 * _DAY))), 30 * _DAY))
            if change >= end:
                timeline.append((t, _INF, p))
                return timeline
            timeline.append((t, change, p))
            if rng.random() < 0.02:
                return timeline  # withdrawn: no supplier since (a closed end, no successor)
            gap = _DAY * rng.randint(1, 40) if rng.random() < 0.08 else 0
            t, p = change + gap, other(picker, p)

    def operator_timeline(first: int, install: int, picker: _Picker) -> list[tuple[int, int, int]]:
        if rng.random() < 0.05 and len(picker.items) > 1:
            change = _midnight(start + int(rng.random() * span))
            if change > install:
                gap = _DAY * rng.randint(1, 10) if rng.random() < 0.2 else 0
                return [(install, change, first), (change + gap, _INF, other(picker, first))]
        return [(install, _INF, first)]

    devices: list[Device] = []
    fuel: list[int] = []
    installed: list[int] = []
    sup_tl: list[list[tuple[int, int, int]]] = []
    op_tl: list[list[tuple[int, int, int]]] = []
    serial = rng.randrange(0x01_0000_0000, 0xE0_0000_0000)
    seen: set[str] = set()
    showcase: Showcase | None = None
    n_premises = 0
    target = world.devices
    while len(devices) < target:
        n_premises += 1
        forced = n_premises <= 2  # premises 1 (SMETS2) and 2 (SMETS1) hold every device type
        smets = (2 if n_premises == 1 else 1) if forced else (1 if rng.random() < 0.3 else 2)
        types = list(DEVICE_TYPES) if forced else _premises(rng)
        if rng.random() < 0.05 and not forced:
            install = _midnight(start + int(rng.random() * 0.8 * span))  # installed during the window
        else:
            install = _midnight(start - int((30 + rng.random() * 4 * 365) * _DAY))
        e_first = electricity.pick(rng.random)
        g_first = e_first if ("GS" in parties[e_first].roles and rng.random() < 0.7) else gas.pick(rng.random)
        e_op, g_op = dnos.pick(rng.random), gdns.pick(rng.random)
        if n_premises == 1 and world.showcase:
            showcase, e_sup, e_ops = _showcase_registry(world, parties, holders, install)
            g_sup = supplier_timeline(g_first, install, gas)
            g_ops = operator_timeline(g_op, install, gdns)
        elif n_premises == 2 or (n_premises == 1 and not world.showcase):
            # guaranteed variety: a change of supplier with a gap, and of network operator
            cos = _midnight(start + span // 3)
            e_sup = [(install, cos, e_first), (cos + 3 * _DAY, _INF, other(electricity, e_first))]
            g_cos = _midnight(start + span // 2)
            g_sup = [(install, g_cos, g_first), (g_cos, _INF, other(gas, g_first))]
            e_ops = [(install, _midnight(start + span // 4), e_op),
                     (_midnight(start + span // 4), _INF, other(dnos, e_op))]
            g_ops = [(install, _midnight(start + 2 * span // 3), g_op),
                     (_midnight(start + 2 * span // 3) + 5 * _DAY, _INF, other(gdns, g_op))]
        else:
            e_sup = supplier_timeline(e_first, install, electricity)
            g_sup = supplier_timeline(g_first, install, gas) if "GSME" in types else []
            e_ops = operator_timeline(e_op, install, dnos)
            g_ops = operator_timeline(g_op, install, gdns) if "GSME" in types else []
        for dtype in types:
            if len(devices) >= target:
                break
            if showcase is not None and n_premises == 1 and dtype == showcase.device_type:
                device_id = showcase.device_id
            else:
                serial += rng.randint(1, 9)
                device_id = (rng.choice(_OUIS) + "-" + "-".join(f"{(serial >> s) & 255:02X}"
                                                                 for s in (32, 24, 16, 8, 0)))
            if device_id in seen:
                continue
            seen.add(device_id)
            is_gas = dtype in _GAS_TYPES
            devices.append(Device(device_id, dtype, smets))
            fuel.append(1 if is_gas else 0)
            installed.append(install)
            sup_tl.append(g_sup if is_gas else e_sup)
            op_tl.append((g_ops if is_gas else e_ops) if dtype in _OPERATOR_TYPES else [])
    return Population(world, parties, devices, showcase, fuel, installed, sup_tl, op_tl)


def _showcase_registry(world: World, parties: list[PartyInfo], holders: dict[str, list[int]], install: int
                       ) -> tuple[Showcase, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    start, span = world.start_ms, world.end_ms - world.start_ms
    old, new = holders["IS"][0], holders["IS"][1]
    operator = holders["ED"][0]
    ou = next(i for i in holders["OU"] if parties[i].group == "OU")
    agent = next(i for i in holders["RSA"] if parties[i].group == "RSA")
    future = holders[FUTURE_ROLE][0]
    cos = _midnight(start + int(span * 0.55))
    show = Showcase(SHOWCASE_DEVICE_ID, "ESME", 2, parties[old].party_id, parties[new].party_id,
                    parties[operator].party_id, parties[ou].party_id, parties[agent].party_id,
                    parties[future].party_id, to_datetime(cos))
    return show, [(install, cos, old), (cos, _INF, new)], [(install, _INF, operator)]


# ==================================================================== DUIS documents

def _camel(title: str) -> str:
    words = re.sub(r"[^A-Za-z0-9 ]", " ", title).split()
    return "".join(w if w[:1].isupper() else w.capitalize() for w in words)


def _service_reference(srv: str) -> str:
    parts = srv.split(".")
    return ".".join(parts[:2]) if len(parts) == 3 else srv


def _b64(rng: random.Random, lo: int, hi: int) -> str:
    return base64.b64encode(rng.randbytes(rng.randint(lo, hi))).decode("ascii")


_FIELDS = ("ExecutionDateTime", "StandingCharge", "PriceScale", "TariffThreshold", "BlockPrice",
           "SwitchingTable", "SpecialDays", "ThresholdValue", "TimePeriod", "DebtRecoveryRate",
           "EmergencyCreditLimit", "DisablementThreshold", "MaxMeterBalance", "CalorificValue")


class _Documents:
    """DUIS XML pieces, built once per stream; a message is a join of a few strings."""

    def __init__(self, rng: random.Random) -> None:
        self.signatures = [self._signature(rng) for _ in range(48)]
        self.device_payloads = [_b64(rng, 24, 640) for _ in range(96)]
        self.smets1_payloads = [_b64(rng, 60, 600) for _ in range(48)]
        self.alert_payloads = [_b64(rng, 30, 120) for _ in range(32)]
        self.request_head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<sr:Request xmlns:sr="' + NS + '" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" schemaVersion="5.1"><sr:Header><sr:RequestID>')
        self.response_head = (
            '<?xml version="1.0" encoding="UTF-8" standalone="no"?><sr:Response xmlns:sr="' + NS + '" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
            'xmlns:ra="http://www.dccinterface.co.uk/ResponseAndAlert" schemaVersion="5.1"><sr:Header>')
        self.request_header: dict[str, str] = {}
        self.request_bodies: dict[str, list[tuple[str, str]]] = {}
        self.reference: dict[str, str] = {}
        for s in CATALOGUE.values():
            variant = "8" if s.non_device else ("3" if s.critical else "1")
            ref = _service_reference(s.srv)
            self.reference[s.srv] = (f"<sr:ServiceReference>{ref}</sr:ServiceReference>"
                                     f"<sr:ServiceReferenceVariant>{s.srv}</sr:ServiceReferenceVariant>")
            self.request_header[s.srv] = (
                f"</sr:RequestID><sr:CommandVariant>{variant}</sr:CommandVariant>"
                f"{self.reference[s.srv]}</sr:Header><sr:Body>")
            self.request_bodies[s.srv] = [self._body(rng, s) for _ in range(4)]

    @staticmethod
    def _signature(rng: random.Random) -> str:
        digest = base64.b64encode(rng.randbytes(32)).decode()
        value = base64.b64encode(rng.randbytes(64)).decode()
        return (
            '<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod '
            'Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod '
            'Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/><ds:Reference URI="">'
            '<ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
            '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
            f'<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>'
            f'<ds:SignatureValue>{value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial>'
            f'<ds:X509IssuerName>CN=U1, OU=07</ds:X509IssuerName><ds:X509SerialNumber>'
            f'{rng.getrandbits(120)}</ds:X509SerialNumber></ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo>'
            '</ds:Signature>')

    @staticmethod
    def _body(rng: random.Random, s: Srv) -> tuple[str, str]:
        """(before, after) the day of the request, which goes between them."""
        element = _camel(s.title)
        if s.srv == "12.2":
            device = "-".join(f"{rng.getrandbits(8):02X}" for _ in range(8))
            return (f"<sr:DevicePrenotification><sr:DeviceID>{device}</sr:DeviceID><sr:DeviceManufacturer>AB01"
                    "</sr:DeviceManufacturer><sr:DeviceModel>010A030B</sr:DeviceModel><sr:DeviceType>ESME"
                    "</sr:DeviceType><sr:SMETSCHTSVersion>SMETS V5.0</sr:SMETSCHTSVersion><sr:FirmwareVersion>"
                    "0002012F</sr:FirmwareVersion><sr:ESMEVariant>A</sr:ESMEVariant><sr:InstallDate>",
                    "</sr:InstallDate></sr:DevicePrenotification>")
        if s.title.startswith(("Read", "Retrieve")) and ("Log" in s.title or "Profile" in s.title):
            return (f"<sr:{element}><sr:ReadLogPeriod><sr:StartDateTime>",
                    f"T00:00:00Z</sr:StartDateTime><sr:EndDateTime>2099-12-31T23:59:59Z</sr:EndDateTime>"
                    f"</sr:ReadLogPeriod></sr:{element}>")
        if s.title.startswith(("Read", "Retrieve")):
            return f"<sr:{element}><sr:ExecutionDateTime>", f"T00:00:00Z</sr:ExecutionDateTime></sr:{element}>"
        children = "".join(
            f"<sr:{name}>{rng.randint(0, 99_999_999)}</sr:{name}>"
            for name in rng.sample(_FIELDS[1:], rng.randint(1, 6 if not s.critical else 12)))
        if s.critical:
            children += f"<sr:PreCommand><sr:GBCSPayload>{_b64(rng, 60, 240)}</sr:GBCSPayload></sr:PreCommand>"
        return (f"<sr:{element}><sr:ExecutionDateTime>",
                f"T02:00:00Z</sr:ExecutionDateTime>{children}</sr:{element}>")


# ==================================================================== the traffic

# exchange types: device alert, DCC alert, non-device request, else a device request
_P_DEVICE_ALERT, _P_DCC_ALERT, _P_NON_DEVICE = 0.09, 0.105, 0.15

# who sends a device request, relative to the device at that time
SUPPLIER, OPERATOR, OTHER_USER, AGENT, OTHER_SUPPLIER, OTHER_OPERATOR, EXPORT, FUTURE = range(8)
_SENDERS = _Picker(range(8), (0.66, 0.09, 0.09, 0.05, 0.04, 0.015, 0.025, 0.015))

_ALERT_CODES = ("8F1C", "8F35", "8F0A", "8F12", "8F19", "8F20", "8F3E", "8F11", "8F0F", "8F84")
_DCC_ALERTS = (("N12", "CommandFailure"), ("N24", "ChangeOfSupplier"), ("AD1", "PowerOutageEvent"),
               ("N16", "DeviceStatusChangeEvent"), ("N42", "FirmwareDistributionFailure"),
               ("N37", "SecurityCredentialsUpdated"), ("N56", "DSPScheduleRemoval"))


def _codes(pairs: Sequence[tuple[str, float]]) -> _Picker:
    return _Picker([c for c, _ in pairs], [w for _, w in pairs])


_CODES_RESPONSIBLE = _codes((("I0", 0.935), ("E20", 0.025), ("E21", 0.025), ("E5", 0.006), ("E11", 0.004),
                             ("E19", 0.003), ("E12", 0.002)))
_CODES_RESPONSIBLE_S1 = _codes((("I0", 0.90), ("E20", 0.035), ("E21", 0.05), ("E5", 0.008), ("E19", 0.004),
                                ("E17", 0.003)))
_CODES_UNAUTHORISED = _codes((("E4", 0.82), ("I0", 0.14), ("E20", 0.04)))
_CODES_THIRD_PARTY = _codes((("I0", 0.90), ("E4", 0.04), ("E20", 0.025), ("E21", 0.025), ("E12", 0.01)))
_CODES_NON_DEVICE = _codes((("I0", 0.97), ("E3", 0.01), ("E13", 0.01), ("E2", 0.01)))

_HOURS = (7, 8, 8, 7, 5, 3, 2, 3, 4, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 4, 5)  # UTC hour weights
_HOUR_CUM = [c / sum(_HOURS) for c in accumulate((0, *_HOURS))]
_HOUR_CUM[-1] = 1.0


def _diurnal(t: int) -> int:
    """Warp a uniformly spread time within its day to the hourly shape of DCC traffic (monotonic)."""
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
    """Device types an SRV may address; the catalogue's word where it has one, any HAN Device otherwise."""
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
    return ({k: _Picker([s.srv for s in v], [_popularity(s) for s in v]) for k, v in device.items()},
            {k: _Picker([s.srv for s in v], [3.0 if s.srv in ("8.2", "12.2") else 1.0 for s in v])
             for k, v in non_device.items()})


_DEVICE_SRVS, _NON_DEVICE_SRVS = _srv_tables()


def _at(timeline: list[tuple[int, int, int]], t: int) -> int | None:
    for start, end, p in timeline:
        if start <= t < end:
            return p
    return None


@dataclass(frozen=True)
class _Scripted:
    """One exchange of the showcase story, placed at a fraction of the World's span."""

    at: int  # ms
    sender: tuple[int, str]  # (party index, role)
    srv: str  # "" for a device alert
    code: str
    delay: int = 0  # response delay in ms (0: the usual)


class _Stream:
    def __init__(self, world: World) -> None:
        self.world = world
        self.pop = pop = population(world)
        self.rng = rng = random.Random(f"servicetrail:{world.seed}:traffic")
        self.rand = rng.random
        self.docs = _Documents(random.Random(f"servicetrail:{world.seed}:documents"))
        self.parties = pop.parties
        self.counters: dict[str, int] = {}
        self.seq = 0
        self.alert_counter = 1_000
        holders = {role: [i for i, p in enumerate(pop.parties) if role in p.roles]
                   for role in ("IS", "GS", "ES", "ED", "GT", "OU", "RSA", FUTURE_ROLE)}
        self.holders = holders
        self.users = [(uid, role) for p in pop.parties for role, ids in p.roles.items() for uid in ids]
        # device activity: a random rank per device, Zipf-like weight times the device type's share
        ranks = list(range(len(pop.devices)))
        rng.shuffle(ranks)
        weights = [_TRAFFIC[d.device_type] / (rank + 1) ** _ZIPF for d, rank in zip(pop.devices, ranks)]
        if pop.showcase is not None:  # busy enough to tell a story, quiet enough to read: ~150 records
            share = min(0.003, 150 / max(world.n_records, 1))
            others = sum(weights) - weights[0]
            weights[0] = others * share / (1 - share)
        self.device_picker = _Picker(range(len(pop.devices)), weights)

    # ------------------------------------------------------------ one exchange

    def _counter(self, user: str) -> int:
        n = self.counters.get(user, 999) + 1
        self.counters[user] = n
        return n

    def _push(self, heap: list, t: int, kind: str, rid: str, srv: str, user: str, device: str, code: str,
              doc: str) -> None:
        self.seq += 1
        heapq.heappush(heap, (t, self.seq, kind, rid, srv, user, device, code, doc))

    def _request(self, heap: list, t: int, user: str, device_id: str, srv: str, code: str, smets: int,
                 delay: int = 0) -> int:
        """request -> acknowledgement (+1 s) -> response; returns the number of records."""
        docs, rand = self.docs, self.rand
        counter = str(self._counter(user))
        rid = f"{user}:{device_id or DCC_ID}:{counter}"
        before, after = docs.request_bodies[srv][int(rand() * 4)]
        request = "".join((docs.request_head, rid, docs.request_header[srv], before, _day_text(t // _DAY), after,
                           "</sr:Body>", docs.signatures[int(rand() * 48)], "</sr:Request>"))
        self._push(heap, t, "request", rid, srv, user, device_id, "", request)
        ack_t = t + 1000
        ack = "".join((docs.response_head, "<sr:RequestID>", rid, "</sr:RequestID><sr:ResponseCode>I99"
                       "</sr:ResponseCode><sr:ResponseDateTime>", format_ms(ack_t),
                       "</sr:ResponseDateTime></sr:Header><sr:Body><sr:ResponseMessage>", docs.reference[srv],
                       "</sr:ResponseMessage></sr:Body></sr:Response>"))
        self._push(heap, ack_t, "acknowledgement", rid, srv, user, device_id, "I99", ack)
        if not delay:
            if code == "I0":
                delay = (2000 + int(rand() * 25_000)) if smets == 2 else (8000 + int(rand() * 90_000))
                if not device_id:
                    delay = 500 + int(rand() * 4000)
            elif code == "E21":
                delay = 120_000 + int(rand() * 180_000)
            elif code == "E20":
                delay = 30_000 + int(rand() * 30_000)
            else:
                delay = 1000 + int(rand() * 2000)
        resp_t = ack_t + delay
        origin = device_id or DCC_ID
        if code != "I0" or not device_id:
            body = "".join(("<sr:ResponseMessage>", docs.reference[srv], "</sr:ResponseMessage>"))
        elif smets == 1:
            body = "".join((
                "<sr:SMETS1ResponseMessage>", docs.reference[srv], '<sr:SMETS1SignedResponse schemaVersion="5.1">'
                "<sr:SMETS1Response><sr:Header><ra:RequestID>", rid, "</ra:RequestID><ra:ResponseCode>I0"
                "</ra:ResponseCode></sr:Header><sr:Body><sr:ResponseMessage><ra:Payload>",
                docs.smets1_payloads[int(rand() * 48)], "</ra:Payload></sr:ResponseMessage></sr:Body>"
                "</sr:SMETS1Response>", docs.signatures[int(rand() * 48)],
                "</sr:SMETS1SignedResponse></sr:SMETS1ResponseMessage>"))
        else:
            body = "".join(("<sr:ResponseMessage>", docs.reference[srv], "<sr:GBCSPayload>",
                            docs.device_payloads[int(rand() * 96)], "</sr:GBCSPayload></sr:ResponseMessage>"))
        response = "".join((
            docs.response_head, "<sr:RequestID>", rid, "</sr:RequestID><sr:ResponseID>", origin, ":", user,
            ":", counter, "</sr:ResponseID><sr:ResponseCode>", code,
            "</sr:ResponseCode><sr:ResponseDateTime>", format_ms(resp_t), "</sr:ResponseDateTime></sr:Header>"
            "<sr:Body>", body, "</sr:Body>", docs.signatures[int(rand() * 48)], "</sr:Response>"))
        self._push(heap, resp_t, "response", rid, srv, user, device_id, code, response)
        return 3

    def _device_alert(self, heap: list, t: int, device_id: str, user: str, code: str | None = None) -> int:
        docs, rand = self.docs, self.rand
        self.alert_counter += 1
        rid = f"{device_id}:{user}:{self.alert_counter}"
        alert = "".join((
            docs.response_head, "<sr:ResponseID>", rid, "</sr:ResponseID><sr:ResponseCode>I0</sr:ResponseCode>"
            "<sr:ResponseDateTime>", format_ms(t), "</sr:ResponseDateTime></sr:Header><sr:Body>"
            "<sr:DeviceAlertMessage><sr:AlertCode>", code or _ALERT_CODES[int(rand() * len(_ALERT_CODES))],
            "</sr:AlertCode><sr:GBCSPayload>", docs.alert_payloads[int(rand() * 32)],
            "</sr:GBCSPayload></sr:DeviceAlertMessage></sr:Body>", docs.signatures[int(rand() * 48)],
            "</sr:Response>"))
        self._push(heap, t, "device_alert", rid, "", user, device_id, "I0", alert)
        return 1

    def _dcc_alert(self, heap: list, t: int, user: str) -> int:
        docs, rand = self.docs, self.rand
        self.alert_counter += 1
        rid = f"{DCC_ID}:{user}:{self.alert_counter}"
        code, element = _DCC_ALERTS[int(rand() * len(_DCC_ALERTS))]
        alert = "".join((
            docs.response_head, "<sr:ResponseID>", rid, "</sr:ResponseID><sr:ResponseCode>I0</sr:ResponseCode>"
            "<sr:ResponseDateTime>", format_ms(t), "</sr:ResponseDateTime></sr:Header><sr:Body>"
            "<sr:DCCAlertMessage><sr:DCCAlertCode>", code, "</sr:DCCAlertCode><sr:DCCAlert><sr:", element,
            "><sr:DateTime>", format_ms(t - 60_000), "</sr:DateTime></sr:", element,
            "></sr:DCCAlert></sr:DCCAlertMessage></sr:Body>", docs.signatures[int(rand() * 48)],
            "</sr:Response>"))
        self._push(heap, t, "dcc_alert", rid, "", user, "", "I0", alert)
        return 1

    def _random_exchange(self, heap: list, t: int) -> int:
        rand, pop, parties, holders = self.rand, self.pop, self.parties, self.holders
        r = rand()
        if r >= _P_DCC_ALERT and r < _P_NON_DEVICE:
            user, role = self.users[int(rand() * len(self.users))]
            srvs = _NON_DEVICE_SRVS.get(role_behaviour(role))
            if not srvs:
                return 0
            return self._request(heap, t, user, "", srvs.pick(rand), _CODES_NON_DEVICE.pick(rand), 2)
        if r >= _P_DEVICE_ALERT and r < _P_DCC_ALERT:
            return self._dcc_alert(heap, t, self.users[int(rand() * len(self.users))][0])
        for _ in range(4):
            d = self.device_picker.pick(rand)
            if pop.installed[d] <= t:
                break
        else:
            return 0
        device = pop.devices[d]
        fuel_role = "GS" if pop.fuel[d] else "IS"
        supplier = _at(pop.supplier_timeline[d], t)
        if r < _P_DEVICE_ALERT:  # an alert goes to the device's Responsible Supplier
            if supplier is None:
                return 0
            return self._device_alert(heap, t, device.device_id, parties[supplier].user(fuel_role))
        sender = _SENDERS.pick(rand)
        operator_role = "GT" if pop.fuel[d] else "ED"
        party, role, codes = None, fuel_role, _CODES_RESPONSIBLE
        if sender == OPERATOR:
            party = _at(pop.operator_timeline[d], t)
            role = operator_role
        elif sender in (OTHER_USER, AGENT, FUTURE, EXPORT):
            role = {OTHER_USER: "OU", AGENT: "RSA", FUTURE: FUTURE_ROLE, EXPORT: "ES"}[sender]
            party = holders[role][int(rand() * len(holders[role]))]
            codes = _CODES_THIRD_PARTY
        elif sender == OTHER_SUPPLIER:
            former = [p for _, _, p in pop.supplier_timeline[d] if p != supplier]
            pool = holders[fuel_role]
            party = former[int(rand() * len(former))] if former and rand() < 0.6 else pool[int(rand() * len(pool))]
            party = None if party == supplier else party
            codes = _CODES_UNAUTHORISED
        elif sender == OTHER_OPERATOR:
            pool = holders[operator_role]
            party = pool[int(rand() * len(pool))]
            role, codes = operator_role, _CODES_UNAUTHORISED
            if party == _at(pop.operator_timeline[d], t):
                party = None
        srvs = _DEVICE_SRVS.get((role_behaviour(role), device.device_type)) if party is not None else None
        if not srvs:  # nobody else has business with this device: its supplier sends
            if supplier is None:
                party, codes = holders[fuel_role][int(rand() * len(holders[fuel_role]))], _CODES_UNAUTHORISED
            else:
                party, codes = supplier, _CODES_RESPONSIBLE
            role = fuel_role
            srvs = _DEVICE_SRVS.get((fuel_role, device.device_type))
            if not srvs:
                return 0
        if codes is _CODES_RESPONSIBLE and device.smets == 1:
            codes = _CODES_RESPONSIBLE_S1
        ids = parties[party].roles[role]
        user = ids[0] if len(ids) == 1 else ids[int(rand() * len(ids))]
        return self._request(heap, t, user, device.device_id, srvs.pick(rand), codes.pick(rand), device.smets)

    # ------------------------------------------------------------ the showcase story

    def _script(self) -> list[_Scripted]:
        show = self.pop.showcase
        if show is None:
            return []
        world = self.world
        start, span = world.start_ms, world.end_ms - world.start_ms
        cos = _to_ms(show.change_of_supplier)
        idx = {p.party_id: i for i, p in enumerate(self.parties)}
        old, new = (idx[show.old_supplier], "IS"), (idx[show.new_supplier], "IS")
        nop, ou = (idx[show.network_operator], "ED"), (idx[show.other_user], "OU")
        agent, future = (idx[show.agent], "RSA"), (idx[show.future_role_party], FUTURE_ROLE)

        def at(frac: float, minutes: int = 0) -> int:
            return _midnight(start + int(span * frac)) + 9 * 3_600_000 + minutes * 60_000

        story = [
            _Scripted(at(0.05), old, "4.1.1", "I0"),
            _Scripted(at(0.10), ou, "4.8.1", "I0"),  # an Other User reads the profile: old supplier sees titles
            _Scripted(at(0.15), old, "", "8F1C"),  # a device alert: the old supplier's alone
            _Scripted(at(0.20), agent, "6.2.4", "I0"),
            _Scripted(at(0.25), nop, "4.10", "I0"),
            _Scripted(at(0.30), future, "4.17", "I0"),
            _Scripted(at(0.35), old, "1.1.1", "I0"),
            _Scripted(at(0.40), ou, "4.8.1", "E20"),
            _Scripted(cos - 3 * _DAY + 11 * 3_600_000, new, "4.1.1", "E4"),  # gaining supplier, too early
            _Scripted(cos - 20_000, old, "4.6.1", "I0", delay=45_000),  # response lands after the change
            _Scripted(cos + 3_600_000, new, "6.23", "I0"),  # Update Security Credentials (CoS)
            _Scripted(cos + 2 * _DAY + 10 * 3_600_000, old, "1.1.1", "E4"),  # too late: not authorised
            _Scripted(at(0.65), new, "", "8F35"),
            _Scripted(at(0.70), ou, "4.8.1", "I0"),  # the new supplier sees this one, the old does not
            _Scripted(at(0.75), agent, "6.2.7", "I0"),
            _Scripted(at(0.80), new, "2.2", "I0"),
            _Scripted(at(0.85), new, "4.1.1", "E21"),
            _Scripted(at(0.90), nop, "6.13", "I0"),
            _Scripted(at(0.95), future, "4.8.1", "I0"),
        ]
        last = world.end_ms - _MARGIN - 10 * 60_000
        return sorted((s for s in story if start <= s.at <= last), key=lambda s: s.at)

    def _scripted_exchange(self, heap: list, step: _Scripted) -> int:
        show = self.pop.showcase
        assert show is not None
        party, role = step.sender
        user = self.parties[party].user(role)
        if not step.srv:
            return self._device_alert(heap, step.at, show.device_id, user, step.code)
        return self._request(heap, step.at, user, show.device_id, step.srv, step.code, show.smets, step.delay)

    # ------------------------------------------------------------ the loop

    def run(self) -> Iterator[Message]:
        world = self.world
        n = world.n_records
        start = world.start_ms
        last = world.end_ms - _MARGIN
        span = last - start
        heap: list = []
        script = self._script()
        s_next = 0
        produced = yielded = 0
        rand = self.rand
        pop_heap = heapq.heappop
        while produced < n:
            t = _diurnal(start + int(span * (produced + rand()) / n))
            t = last if t > last else (start if t < start else t)
            while s_next < len(script) and script[s_next].at <= t:
                produced += self._scripted_exchange(heap, script[s_next])
                s_next += 1
            produced += self._random_exchange(heap, t)
            while heap and heap[0][0] <= t:
                yield pop_heap(heap)
                yielded += 1
                if yielded >= n:
                    return
        while heap and yielded < n:
            yield pop_heap(heap)
            yielded += 1


def messages(world: World) -> Iterator[Message]:
    """The World's messages, lazily and in time order (see `Message` for the tuple's fields)."""
    yield from _Stream(world).run()


def records(world: World) -> Iterator[SatRecord]:
    """The World's SAT records, lazily and in time order."""
    for m in messages(world):
        yield SatRecord(_EPOCH + timedelta(milliseconds=m[0]), m[2], m[3], m[4], m[5], m[6], m[7],
                        "" if m[2] == "acknowledgement" else m[8])


# ==================================================================== writers

def sat_jsonl_lines(world: World) -> Iterator[bytes]:
    """SAT JSON Lines (SPEC section 4), one record a line, newline included."""
    dumps = orjson.dumps
    for t, _, kind, rid, srv, user, device, code, doc in messages(world):
        yield dumps({"logged_at": format_ms(t), "kind": kind, "request_id": rid, "srv": srv, "user_id": user,
                     "device_id": device, "response_code": code,
                     "payload": "" if kind == "acknowledgement" else doc}) + b"\n"


def duis_jsonl_lines(world: World) -> Iterator[bytes]:
    """A DUIS capture: {"logged_at": ..., "duis": "<sr:Request ...>"} a line, newline included."""
    dumps = orjson.dumps
    for m in messages(world):
        yield dumps({"logged_at": format_ms(m[0]), "duis": m[8]}) + b"\n"


def _write_lines(lines: Iterable[bytes], out: str | Path | IO[bytes], chunk: int = 2000) -> int:
    count = 0
    lines = iter(lines)
    with (open(out, "wb") if isinstance(out, (str, Path)) else nullcontext(out)) as f:
        while block := list(islice(lines, chunk)):
            f.write(b"".join(block))
            count += len(block)
    return count


def write_sat_jsonl(world: World, out: str | Path | IO[bytes]) -> int:
    """Write the SAT JSON Lines form to a path or a binary stream; returns the number of records."""
    return _write_lines(sat_jsonl_lines(world), out)


def write_duis_jsonl(world: World, out: str | Path | IO[bytes]) -> int:
    """Write the DUIS JSON Lines capture to a path or a binary stream; returns the number of messages."""
    return _write_lines(duis_jsonl_lines(world), out)


USERS_HEADER = ("user_id", "party_id", "party_name", "role")
DEVICES_HEADER = ("device_id", "device_type", "smets")
RESPONSIBILITIES_HEADER = ("device_id", "party_id", "relation", "valid_from", "valid_to")


def user_rows(world: World) -> Iterator[tuple[str, str, str, str]]:
    """Rows of users.csv: user_id, party_id, party_name, role."""
    for p in population(world).parties:
        for role, ids in p.roles.items():
            for uid in ids:
                yield uid, p.party_id, p.name, role


def device_rows(world: World) -> Iterator[tuple[str, str, str]]:
    """Rows of devices.csv: device_id, device_type, smets."""
    for d in population(world).devices:
        yield d.device_id, d.device_type, str(d.smets)


def responsibility_rows(world: World) -> Iterator[tuple[str, str, str, str, str]]:
    """Rows of responsibilities.csv: device_id, party_id, relation, valid_from, valid_to ('' = open)."""
    for r in population(world).responsibilities():
        yield (r.device_id, r.party_id, r.relation, r.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
               r.valid_to.strftime("%Y-%m-%dT%H:%M:%SZ") if r.valid_to else "")


def write_registry(world: World, folder: str | Path) -> dict[str, Path]:
    """users.csv, devices.csv and responsibilities.csv in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, header, rows in (("users.csv", USERS_HEADER, user_rows(world)),
                               ("devices.csv", DEVICES_HEADER, device_rows(world)),
                               ("responsibilities.csv", RESPONSIBILITIES_HEADER, responsibility_rows(world))):
        path = folder / name
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        written[name] = path
    return written


def write_world(world: World, folder: str | Path, *, sat: bool = True, duis: bool = False) -> dict[str, Path]:
    """The registry CSVs plus `sat.jsonl` (and `duis.jsonl` when asked) in `folder`."""
    written = write_registry(world, folder)
    if sat:
        written["sat.jsonl"] = Path(folder) / "sat.jsonl"
        write_sat_jsonl(world, written["sat.jsonl"])
    if duis:
        written["duis.jsonl"] = Path(folder) / "duis.jsonl"
        write_duis_jsonl(world, written["duis.jsonl"])
    return written


# ==================================================================== straight into the store

@dataclass
class LoadCounts:
    users: int = 0
    devices: int = 0
    responsibilities: int = 0
    records: int = 0
    duplicates: int = 0


def load_into(engine: Any, world: World, batch: int = 5000,
              progress: Callable[[int], None] | None = None) -> LoadCounts:
    """Write the World into the store through the store writers, one transaction per batch.

    Idempotent like every loader: loading the same World again adds nothing.
    `progress`, if given, is called with the number of SAT records appended after each batch.
    """
    from .store.writer import Outcome, append_records, load_device, load_responsibility, load_user

    pop = population(world)
    counts = LoadCounts()
    names = {p.party_id: p.name for p in pop.parties}
    for chunk in _chunks(pop.users, batch):
        with engine.begin() as conn:
            counts.users += sum(load_user(conn, u, names[u.party_id]) is Outcome.LOADED for u in chunk)
    for chunk in _chunks(pop.devices, batch):
        with engine.begin() as conn:
            counts.devices += sum(load_device(conn, d) is Outcome.LOADED for d in chunk)
    for chunk in _chunks(pop.responsibilities(), batch):
        with engine.begin() as conn:
            counts.responsibilities += sum(load_responsibility(conn, r) is Outcome.LOADED for r in chunk)
    for chunk in _chunks(records(world), batch):
        with engine.begin() as conn:
            loaded, duplicates = append_records(conn, chunk)
        counts.records += loaded
        counts.duplicates += duplicates
        if progress:
            progress(len(chunk))
    return counts


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while block := list(islice(it, size)):
        yield block


# ==================================================================== command line
