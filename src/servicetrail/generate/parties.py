"""The Parties of a World: companies in every User Role, their names, Party IDs and User IDs."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .world import FUTURE_ROLE, World


@dataclass
class PartyInfo:
    party_id: str
    name: str
    group: str  # supplier, ED, GT, OU, RSA, XR: what the company mainly is
    roles: dict[str, list[str]] = field(default_factory=dict)  # role -> its User IDs

    def user(self, role: str) -> str:
        return self.roles[role][0]


_PLACES = (
    "Albion",
    "Avon",
    "Severn",
    "Pennine",
    "Thames",
    "Cotswold",
    "Mercia",
    "Wessex",
    "Cheviot",
    "Solent",
    "Humber",
    "Mersey",
    "Tyne",
    "Clyde",
    "Forth",
    "Trent",
    "Medway",
    "Tamar",
    "Dart",
    "Ouse",
    "Kennet",
    "Eden",
    "Lune",
    "Ribble",
    "Wear",
    "Tees",
    "Usk",
    "Taff",
    "Towy",
    "Ness",
    "Spey",
    "Tay",
    "Calder",
    "Aire",
    "Derwent",
    "Fowey",
    "Stour",
    "Itchen",
    "Arun",
    "Rother",
    "Parrett",
    "Otter",
    "Mendip",
    "Quantock",
    "Chiltern",
    "Malvern",
    "Wrekin",
    "Peak",
    "Fenland",
    "Broadland",
    "Weald",
    "Purbeck",
    "Exmoor",
    "Dartmoor",
    "Kielder",
    "Lomond",
    "Cairn",
    "Skye",
    "Arran",
    "Anglesey",
    "Gower",
    "Wirral",
    "Furness",
    "Holderness",
    "Lindsey",
    "Breckland",
    "Wychwood",
    "Sherwood",
    "Arden",
    "Bowland",
    "Cleveland",
    "Hambleton",
    "Wolds",
    "Moorfoot",
    "Ochil",
    "Sidlaw",
    "Trossach",
    "Morven",
    "Lammermuir",
    "Galloway",
    "Carrick",
    "Kintyre",
    "Lorne",
    "Moray",
    "Buchan",
    "Mearns",
    "Fife",
    "Lothian",
    "Tweed",
    "Teviot",
    "Solway",
    "Eskdale",
    "Wensley",
    "Swale",
    "Nidd",
    "Wharfe",
    "Hodder",
    "Irwell",
    "Goyt",
    "Dove",
    "Manifold",
    "Churnet",
    "Tame",
    "Soar",
    "Welland",
    "Nene",
    "Ouzel",
    "Colne",
    "Lea",
    "Mimram",
    "Wey",
    "Mole",
    "Darent",
    "Cuckmere",
    "Ouse Vale",
    "Meon",
    "Avonmouth",
    "Frome",
    "Axe",
    "Culm",
    "Torridge",
    "Camel",
    "Lynher",
    "Teign",
    "Brue",
    "Cary",
    "Yeo",
    "Wylye",
    "Nadder",
    "Ebble",
    "Bourne",
    "Loddon",
    "Pang",
    "Windrush",
    "Evenlode",
    "Cherwell",
    "Ray",
    "Thame",
    "Ock",
    "Glyme",
)
# (name suffix, party_id suffix)
_SUPPLIER_SUFFIX = (
    ("Energy", "ENERGY"),
    ("Power", "POWER"),
    ("Gas & Power", "GP"),
    ("Utilities", "UTIL"),
    ("Home Energy", "HOME"),
    ("Electric", "ELEC"),
    ("Energy Supply", "SUPPLY"),
)
_DNO_REGIONS = (
    "North West",
    "Yorkshire",
    "West Midlands",
    "East Midlands",
    "Eastern",
    "South Wales",
    "South Western",
    "London",
    "South Eastern",
    "Southern",
    "North Scotland",
    "South Scotland",
    "Merseyside",
    "Northern",
)
_GDN_REGIONS = (
    "Northern",
    "North West",
    "Midlands",
    "East of England",
    "London",
    "Wales & West",
    "Southern",
    "Scotland",
)
_OU_SUFFIX = (
    ("Analytics", "ANALYTICS"),
    ("Energy Insights", "INSIGHT"),
    ("Data Services", "DATA"),
    ("Heat Networks", "HEAT"),
    ("Smart Services", "SMART"),
    ("Research", "RESEARCH"),
    ("Switching", "SWITCH"),
    ("Flex", "FLEX"),
)
_RSA_SUFFIX = (
    ("Metering Services", "METERING"),
    ("Meter Operations", "MOP"),
    ("Smart Installations", "INSTALL"),
)


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
            name, code = rng.choice(
                _SUPPLIER_SUFFIX if "GS" in roles else _SUPPLIER_SUFFIX[:2] + _SUPPLIER_SUFFIX[3:]
            )
        where = place()
        add(f"{where} {name}", where + code, "supplier", roles)
    for i in range(counts["ED"]):
        if i < len(_DNO_REGIONS):
            add(
                f"{_DNO_REGIONS[i]} Electricity Networks",
                _DNO_REGIONS[i] + "NET",
                "ED",
                ["ED", "GT"] if i == 2 else ["ED"],
            )  # one multi-utility network holds both
        else:
            where = place()
            add(f"{where} Distribution", where + "IDNO", "ED", ["ED"])  # an independent DNO
    for i in range(counts["GT"]):
        if i < len(_GDN_REGIONS):
            add(
                f"{_GDN_REGIONS[i]} Gas Networks",
                _GDN_REGIONS[i].replace("&", "") + "GAS",
                "GT",
                ["GT"],
            )
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
