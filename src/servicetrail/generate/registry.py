"""The registry of a World: its Parties, Devices of every type and the supplier and network
operator timelines of each, plus the showcase Device and who plays which part in its story."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from ..domain.model import DEVICE_TYPES, Device, Relation, Responsibility, User
from .parties import PartyInfo, _make_parties
from .world import _DAY, FUTURE_ROLE, SHOWCASE_DEVICE_ID, World, _Picker, _midnight, to_datetime

_INF = 1 << 62  # an open-ended interval ends here


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
        return (
            f"Device {self.device_id} ({self.device_type}, SMETS{self.smets}): {self.old_supplier} "
            f"was its Responsible Supplier until {cos}, {self.new_supplier} since; "
            f"{self.network_operator} holds the Network Operator certificate. Other User "
            f"{self.other_user}, agent {self.agent} and {self.future_role_party} (future role "
            f"{FUTURE_ROLE}) send it requests; it raises alerts; {self.old_supplier}'s tariff "
            "update after the change is refused with E4."
        )


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
        return [
            User(uid, p.party_id, role)
            for p in self.parties
            for role, ids in p.roles.items()
            for uid in ids
        ]

    def party_name(self, party_id: str) -> str:
        return next(p.name for p in self.parties if p.party_id == party_id)

    def responsibilities(self) -> Iterator[Responsibility]:
        for dev, sup, nop in zip(self.devices, self.supplier_timeline, self.operator_timeline):
            for relation, timeline in ((Relation.SUPPLIER, sup), (Relation.NETWORK_OPERATOR, nop)):
                for start, end, p in timeline:
                    yield Responsibility(
                        dev.device_id,
                        self.parties[p].party_id,
                        relation.value,
                        to_datetime(start),
                        None if end >= _INF else to_datetime(end),
                    )


_OUIS = (
    "00-DB-12",
    "BC-33-AC",
    "88-73-84",
    "00-07-81",
    "D0-52-A8",
    "00-1E-5E",
    "70-EE-50",
    "A4-C1-38",
)
_GAS_TYPES = frozenset({"GSME", "GPF"})
_OPERATOR_TYPES = frozenset(
    {"ESME", "GSME", "GPF", "CHF", "HCALCS"}
)  # hold a Network Operator certificate


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
    holders = {
        role: [i for i, p in enumerate(parties) if role in p.roles]
        for role in ("IS", "GS", "ES", "ED", "GT", "OU", "RSA", FUTURE_ROLE)
    }

    def market(role: str) -> _Picker:  # a few big suppliers, a long tail
        members = holders[role]
        return _Picker(members, [1 / (rank + 1) ** 0.8 for rank in range(len(members))])

    electricity, gas = market("IS"), market("GS")
    dnos, gdns = (
        _Picker(holders["ED"], [1.0] * len(holders["ED"])),
        _Picker(holders["GT"], [1.0] * len(holders["GT"])),
    )
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
            install = _midnight(
                start + int(rng.random() * 0.8 * span)
            )  # installed during the window
        else:
            install = _midnight(start - int((30 + rng.random() * 4 * 365) * _DAY))
        e_first = electricity.pick(rng.random)
        g_first = (
            e_first
            if ("GS" in parties[e_first].roles and rng.random() < 0.7)
            else gas.pick(rng.random)
        )
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
            e_ops = [
                (install, _midnight(start + span // 4), e_op),
                (_midnight(start + span // 4), _INF, other(dnos, e_op)),
            ]
            g_ops = [
                (install, _midnight(start + 2 * span // 3), g_op),
                (_midnight(start + 2 * span // 3) + 5 * _DAY, _INF, other(gdns, g_op)),
            ]
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
                device_id = (
                    rng.choice(_OUIS)
                    + "-"
                    + "-".join(f"{(serial >> s) & 255:02X}" for s in (32, 24, 16, 8, 0))
                )
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


def _showcase_registry(
    world: World, parties: list[PartyInfo], holders: dict[str, list[int]], install: int
) -> tuple[Showcase, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    start, span = world.start_ms, world.end_ms - world.start_ms
    old, new = holders["IS"][0], holders["IS"][1]
    operator = holders["ED"][0]
    ou = next(i for i in holders["OU"] if parties[i].group == "OU")
    agent = next(i for i in holders["RSA"] if parties[i].group == "RSA")
    future = holders[FUTURE_ROLE][0]
    cos = _midnight(start + int(span * 0.55))
    show = Showcase(
        SHOWCASE_DEVICE_ID,
        "ESME",
        2,
        parties[old].party_id,
        parties[new].party_id,
        parties[operator].party_id,
        parties[ou].party_id,
        parties[agent].party_id,
        parties[future].party_id,
        to_datetime(cos),
    )
    return show, [(install, cos, old), (cos, _INF, new)], [(install, _INF, operator)]
