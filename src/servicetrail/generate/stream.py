"""The message stream: random exchanges and the showcase story, merged in time order through a
small heap of in-flight messages."""
from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from ..domain.model import SatRecord, role_behaviour
from .documents import _Documents
from .registry import population
from .traffic import (
    _ALERT_CODES, _CODES_NON_DEVICE, _CODES_RESPONSIBLE, _CODES_RESPONSIBLE_S1, _CODES_THIRD_PARTY,
    _CODES_UNAUTHORISED, _DCC_ALERTS, _DEVICE_SRVS, _NON_DEVICE_SRVS, _P_DCC_ALERT, _P_DEVICE_ALERT,
    _P_NON_DEVICE, _SENDERS, _TRAFFIC, _ZIPF, AGENT, EXPORT, FUTURE, OPERATOR, OTHER_OPERATOR, OTHER_SUPPLIER,
    OTHER_USER, _diurnal,
)
from .world import _DAY, _EPOCH, DCC_ID, FUTURE_ROLE, World, _Picker, _day_text, _midnight, _to_ms, format_ms

_MARGIN = 15 * 60_000  # the last request leaves room for its response before World.end

# Message tuples, as the stream yields them (plain tuples: they are made millions of times).
T, SEQ, KIND, REQUEST_ID, SRV, USER_ID, DEVICE_ID, CODE, DOCUMENT = range(9)
Message = tuple[int, int, str, str, str, str, str, str, str]
"""(t_ms since the epoch, seq, kind, request_id, srv, user_id, device_id, response_code, DUIS document)"""


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
