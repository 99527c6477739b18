"""The message stream: random exchanges and the showcase story, merged in time order through a
small heap of in-flight messages."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from ..domain.catalogue import CATALOGUE
from ..domain.model import Device, SatRecord, role_behaviour
from .documents import CANCEL, _Documents
from .duis_bodies import ALWAYS_DATED, BODIES, DEVICE, EXECUTION
from .registry import population
from .traffic import (
    _ALERT_CODES,
    _CODES_NON_DEVICE,
    _CODES_RESPONSIBLE,
    _CODES_RESPONSIBLE_S1,
    _CODES_THIRD_PARTY,
    _CODES_UNAUTHORISED,
    _DEVICE_DCC_ALERTS,
    _DEVICE_SRVS,
    _NON_DEVICE_SRVS,
    _P_CANCEL,
    _P_DCC_ALERT,
    _P_DCC_ALERT_NO_DEVICE,
    _P_DEVICE_ALERT,
    _P_FUTURE_CRITICAL,
    _P_FUTURE_FAILS,
    _P_FUTURE_OTHER,
    _P_FUTURE_READ,
    _P_NON_DEVICE,
    _P_SCHEDULED,
    _REFUSED_BY_DCC,
    _SCHEDULED_SRVS,
    _SENDERS,
    _TRAFFIC,
    _ZIPF,
    AGENT,
    EXPORT,
    FUTURE,
    OPERATOR,
    OTHER_OPERATOR,
    OTHER_SUPPLIER,
    OTHER_USER,
    _diurnal,
)
from .world import (
    _DAY,
    _EPOCH,
    DCC_ID,
    FUTURE_ROLE,
    World,
    _Picker,
    _day_text,
    _midnight,
    _to_ms,
    format_ms,
)

_MARGIN = 15 * 60_000  # the last request leaves room for its responses before World.end

# Message tuples, as the stream yields them (plain tuples: they are made millions of times):
# (t_ms since the epoch, seq, kind, request_id, srv, user_id, device_id, response_code, DUIS
# document, command_variant), the SAT record of SPEC section 4.1 that the DUIS document
# becomes, plus the document.
T, SEQ, KIND, REQUEST_ID, SRV, USER_ID, DEVICE_ID, CODE, DOCUMENT, COMMAND_VARIANT = range(10)
Message = tuple[int, int, str, str, str, str, str, str, str, int | None]


class _Exchange(NamedTuple):
    """What every message of one Service Request carries: its Request ID, SRV, User and
    Device ("" for a non-device SRV)."""

    rid: str
    srv: str
    user: str
    device_id: str


# how likely a request of each SRV is to be future-dated (none for an SRV that cannot be)
_FUTURE_SHARE = {
    s.srv: (
        0.0
        if s.non_device or s.srv in ALWAYS_DATED or not any(EXECUTION in b for b in BODIES[s.srv])
        else _P_FUTURE_CRITICAL
        if s.critical
        else _P_FUTURE_READ
        if s.title.startswith(("Read", "Retrieve"))
        else _P_FUTURE_OTHER
    )
    for s in CATALOGUE.values()
}
_NAMES_A_DEVICE = frozenset(srv for srv, bodies in BODIES.items() if DEVICE in bodies[0])


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
        self.last = world.end_ms - _MARGIN
        self.pop = pop = population(world)
        self.rng = rng = random.Random(f"servicetrail:{world.seed}:traffic")
        self.rand = rng.random
        self.docs = _Documents(random.Random(f"servicetrail:{world.seed}:documents"), self.rand)
        self.parties = pop.parties
        self.counters: dict[str, int] = {}
        self.seq = 0
        self.alert_counter = 1_000
        holders = {
            role: [i for i, p in enumerate(pop.parties) if role in p.roles]
            for role in ("IS", "GS", "ES", "ED", "GT", "OU", "RSA", FUTURE_ROLE)
        }
        self.holders = holders
        self.users = [
            (uid, role) for p in pop.parties for role, ids in p.roles.items() for uid in ids
        ]
        # device activity: a random rank per device, Zipf-like weight times the device type's share
        ranks = list(range(len(pop.devices)))
        rng.shuffle(ranks)
        weights = [
            _TRAFFIC[d.device_type] / (rank + 1) ** _ZIPF for d, rank in zip(pop.devices, ranks)
        ]
        if (
            pop.showcase is not None
        ):  # busy enough to tell a story, quiet enough to read: ~150 records
            share = min(0.003, 150 / max(world.n_records, 1))
            others = sum(weights) - weights[0]
            weights[0] = others * share / (1 - share)
        self.device_picker = _Picker(range(len(pop.devices)), weights)

    # ------------------------------------------------------------ one exchange

    def _counter(self, user: str) -> int:
        n = self.counters.get(user, 999) + 1
        self.counters[user] = n
        return n

    def _push(
        self,
        heap: list[Message],
        t: int,
        kind: str,
        rid: str,
        srv: str,
        user: str,
        device: str,
        code: str,
        doc: str,
        variant: int | None = None,
    ) -> None:
        self.seq += 1
        heapq.heappush(heap, (t, self.seq, kind, rid, srv, user, device, code, doc, variant))

    def _installed_device(self, t: int) -> int | None:
        for _ in range(4):
            d = self.device_picker.pick(self.rand)
            if self.pop.installed[d] <= t:
                return d
        return None

    def _execution(self, srv: str, t: int) -> tuple[str, int | None]:
        """(ExecutionDateTime or "", when a future-dated command falls due or None)."""
        if srv in ALWAYS_DATED:  # a date the SRV must carry: today's, so it runs at once
            return format_ms(_midnight(t)), None
        rand = self.rand
        if rand() >= _FUTURE_SHARE[srv]:
            return "", None
        if rand() < _P_CANCEL:
            return CANCEL, None
        due = _midnight(t) + (1 + int(rand() * 14)) * _DAY + int(rand() * 4) * 3 * 3_600_000
        return format_ms(due), due

    def _subject(self, srv: str, t: int) -> str:
        """The Device a non-device request names: a new one for a pre-notification, else a known
        one."""
        if srv not in _NAMES_A_DEVICE:
            return ""
        rng = self.rng
        if srv == "12.2":
            return "-".join(f"{rng.getrandbits(8):02X}" for _ in range(8))
        d = self._installed_device(t)
        return self.pop.devices[d if d is not None else 0].device_id

    def _request(
        self,
        heap: list[Message],
        t: int,
        user: str,
        device: Device | None,
        srv: str,
        code: str,
        delay: int = 0,
    ) -> int:
        """One Service Request and what follows it; returns the number of records.

        Non-device (Command Variant 8): request -> response, synchronous. Device, non-critical (1):
        request -> acknowledgement (+1 s) -> response. Critical: request (4, a pre-command to
        the DCC) -> the DCC's response carrying the command to sign -> the signed command (5,
        same RequestID) -> acknowledgement -> response. A future-dated command's Device reports
        8F66/8F67 when it falls due.
        """
        # each step draws from self.rand in the order it always has: a seed's bytes stay
        device_id = device.device_id if device is not None else ""
        counter = str(self._counter(user))
        sent = _Exchange(f"{user}:{device_id or DCC_ID}:{counter}", srv, user, device_id)
        execution, due = self._execution(srv, t) if device is not None else ("", None)
        body = self.docs.body(
            srv,
            device.device_type if device is not None else "",
            _day_text(t // _DAY),
            execution,
            self._subject(srv, t) if device is None else "",
        )
        if device is None:
            self._non_device_exchange(heap, sent, t, code, body)
            return 2
        if not CATALOGUE[srv].critical:
            self._say(heap, sent, t, "request", "", self.docs.request(sent.rid, 1, srv, body), 1)
            records = 3
        else:
            signed_at = self._signed_pre_command(heap, sent, t, code, body, execution)
            if signed_at is None:
                return 2
            t, records = signed_at, 5
        self._acknowledged_response(heap, sent, t, device, code, counter, delay)
        if due is not None and code == "I0" and self._future_outcome(heap, sent, due):
            records += 1
        return records

    def _say(
        self,
        heap: list[Message],
        sent: _Exchange,
        t: int,
        kind: str,
        code: str,
        doc: str,
        variant: int | None = None,
    ) -> None:
        """One message of the exchange `sent`, at `t`."""
        self._push(heap, t, kind, sent.rid, sent.srv, sent.user, sent.device_id, code, doc, variant)

    def _titles_response(self, heap: list[Message], sent: _Exchange, t: int, code: str) -> None:
        """The DCC's response that carries no Device's data, only the SRV's titles."""
        docs = self.docs
        doc = docs.response(sent.rid, "", code, format_ms(t), docs.titles_only(sent.srv))
        self._say(heap, sent, t, "response", code, doc)

    def _non_device_exchange(
        self, heap: list[Message], sent: _Exchange, t: int, code: str, body: str
    ) -> None:
        """Command Variant 8: the request, and the DCC's synchronous response."""
        self._say(heap, sent, t, "request", "", self.docs.request(sent.rid, 8, sent.srv, body), 8)
        self._titles_response(heap, sent, t + 500 + int(self.rand() * 4000), code)

    def _signed_pre_command(
        self, heap: list[Message], sent: _Exchange, t: int, code: str, body: str, execution: str
    ) -> int | None:
        """A critical command: the request (4), the DCC's response with the pre-command, and
        the signed command (5) the User sends back; when it is sent, or None when the DCC
        refused the request (its response the exchange's last message)."""
        docs, srv = self.docs, sent.srv
        self._say(heap, sent, t, "request", "", docs.request(sent.rid, 4, srv, body), 4)
        answered = t + 800 + int(self.rand() * 2500)
        if code in _REFUSED_BY_DCC:
            self._titles_response(heap, sent, answered, code)
            return None
        pre_command = docs.response(sent.rid, "", "I0", format_ms(answered), docs.pre_command(srv))
        self._say(heap, sent, answered, "response", "I0", pre_command)
        signed = answered + 5000 + int(self.rand() * 120_000)  # the User signs and sends it
        doc = docs.request(sent.rid, 5, srv, docs.signed_pre_command(execution))
        self._say(heap, sent, signed, "request", "", doc, 5)
        return signed

    def _acknowledged_response(
        self,
        heap: list[Message],
        sent: _Exchange,
        t: int,
        device: Device,
        code: str,
        counter: str,
        delay: int,
    ) -> None:
        """The DCC's acknowledgement a second after the request sent at `t`, then the
        response, `delay` ms later (a script's, or one typical of `code` and the SMETS)."""
        docs, srv = self.docs, sent.srv
        ack_t = t + 1000
        ack = docs.response(
            sent.rid, "", "I99", format_ms(ack_t), docs.titles_only(srv), signed=False
        )
        self._say(heap, sent, ack_t, "acknowledgement", "I99", ack)
        resp_t = ack_t + (delay or self._response_delay(device, code))
        if code != "I0":  # the DCC answers for the Device
            self._titles_response(heap, sent, resp_t, code)
            return
        at = format_ms(resp_t)
        message = (
            docs.smets1_data(srv, sent.device_id, sent.user, counter, at)
            if device.smets == 1
            else docs.device_data(srv)
        )
        response_id = f"{sent.device_id}:{sent.user}:{counter}"
        self._say(
            heap,
            sent,
            resp_t,
            "response",
            code,
            docs.response(sent.rid, response_id, code, at, message),
        )

    def _response_delay(self, device: Device, code: str) -> int:
        """Milliseconds from the acknowledgement to the response, as `code` tends to take."""
        rand = self.rand
        if code == "I0":
            if device.smets == 2:
                return 2000 + int(rand() * 25_000)
            return 8000 + int(rand() * 90_000)
        if code == "E21":
            return 120_000 + int(rand() * 180_000)
        if code == "E20":
            return 30_000 + int(rand() * 30_000)
        return 1000 + int(rand() * 2000)

    def _future_outcome(self, heap: list[Message], sent: _Exchange, due: int) -> bool:
        """The Device's alert (8F66 done, 8F67 failed) when a future-dated command falls due,
        if that is before the stream's end; whether there was one."""
        falls_due = due + 1000 + int(self.rand() * 60_000)
        if falls_due > self.last:
            return False
        outcome = "8F67" if self.rand() < _P_FUTURE_FAILS else "8F66"
        self.alert_counter += 1
        response_id = f"{sent.device_id}:{sent.user}:{self.alert_counter}"
        doc = self.docs.response(
            sent.rid,
            response_id,
            "I0",
            format_ms(falls_due),
            self.docs.future_dated_outcome(sent.srv, outcome),
        )
        self._say(heap, sent, falls_due, "device_alert", outcome, doc)
        return True

    def _device_alert(
        self, heap: list[Message], t: int, device: Device, user: str, code: str | None = None
    ) -> int:
        docs = self.docs
        self.alert_counter += 1
        counter = str(self.alert_counter)
        device_id = device.device_id
        rid = f"{device_id}:{user}:{counter}"
        code = code or _ALERT_CODES[int(self.rand() * len(_ALERT_CODES))]
        at = format_ms(t)
        message = (
            docs.smets1_device_alert(device_id, user, counter, at, code)
            if device.smets == 1
            else docs.device_alert(code)
        )
        self._push(
            heap,
            t,
            "device_alert",
            rid,
            "",
            user,
            device_id,
            code,
            docs.response("", rid, "I0", at, message),
        )
        return 1

    def _dcc_alert(self, heap: list[Message], t: int) -> int:
        """A DCC alert: most name a Device and go to its supplier (a comms hub's outage to its
        network operator)."""
        rand, pop = self.rand, self.pop
        d = None if rand() < _P_DCC_ALERT_NO_DEVICE else self._installed_device(t)
        supplier = _at(pop.supplier_timeline[d], t) if d is not None else None
        if (
            d is None or supplier is None
        ):  # the outcome of a change of supplier: names its request only
            user = self.users[int(rand() * len(self.users))][0]
            about = pop.devices[int(rand() * len(pop.devices))].device_id
            code, device_id, d = "N24", "", 0
        else:
            device_id = pop.devices[d].device_id
            operator = (
                _at(pop.operator_timeline[d], t) if pop.devices[d].device_type == "CHF" else None
            )
            if operator is not None:
                user, code = self.parties[operator].user("ED"), "AD1"
            else:
                user, code = (
                    self.parties[supplier].user("GS" if pop.fuel[d] else "IS"),
                    _DEVICE_DCC_ALERTS.pick(rand),
                )
            about = device_id
        self.alert_counter += 1
        rid = f"{DCC_ID}:{user}:{self.alert_counter}"
        docs = self.docs
        alert = docs.dcc_alert(
            code,
            device_id,
            f"{user}:{about}:{self.counters.get(user, 1000)}",
            format_ms(t - 180_000),
            1000 + d,
        )
        self._push(
            heap,
            t,
            "dcc_alert",
            rid,
            "",
            user,
            device_id,
            code,
            docs.response("", rid, "I0", format_ms(t), alert),
        )
        return 1

    def _scheduled(self, heap: list[Message], t: int) -> int:
        """A DCC-scheduled read's data for the Device's supplier: a response with no RequestID."""
        pop = self.pop
        d = self._installed_device(t)
        if d is None:
            return 0
        supplier = _at(pop.supplier_timeline[d], t)
        if supplier is None:
            return 0
        device = pop.devices[d]
        role = "GS" if pop.fuel[d] else "IS"
        srvs = _DEVICE_SRVS.get((role, device.device_type))
        choices = [srv for srv in srvs.items if srv in _SCHEDULED_SRVS] if srvs else []
        if not choices:
            return 0
        srv = choices[int(self.rand() * len(choices))]
        user = self.parties[supplier].user(role)
        self.alert_counter += 1
        counter = str(self.alert_counter)
        response_id = f"{device.device_id}:{user}:{counter}"
        at = format_ms(t)
        docs = self.docs
        message = (
            docs.smets1_data(srv, device.device_id, user, counter, at, schedule_id=1000 + d)
            if device.smets == 1
            else docs.scheduled_data(srv, 1000 + d)
        )
        self._push(
            heap,
            t,
            "response",
            "",
            srv,
            user,
            device.device_id,
            "I0",
            docs.response("", response_id, "I0", at, message),
        )
        return 1

    def _random_exchange(self, heap: list[Message], t: int) -> int:
        rand, pop, parties, holders = self.rand, self.pop, self.parties, self.holders
        r = rand()
        if r >= _P_DCC_ALERT and r < _P_NON_DEVICE:
            user, role = self.users[int(rand() * len(self.users))]
            srvs = _NON_DEVICE_SRVS.get(role_behaviour(role))
            if not srvs:
                return 0
            return self._request(heap, t, user, None, srvs.pick(rand), _CODES_NON_DEVICE.pick(rand))
        if r >= _P_DEVICE_ALERT and r < _P_DCC_ALERT:
            return self._dcc_alert(heap, t)
        if r >= _P_NON_DEVICE and r < _P_SCHEDULED:
            return self._scheduled(heap, t)
        d = self._installed_device(t)
        if d is None:
            return 0
        device = pop.devices[d]
        fuel_role = "GS" if pop.fuel[d] else "IS"
        supplier = _at(pop.supplier_timeline[d], t)
        if r < _P_DEVICE_ALERT:  # an alert goes to the device's Responsible Supplier
            if supplier is None:
                return 0
            return self._device_alert(heap, t, device, parties[supplier].user(fuel_role))
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
            party = (
                former[int(rand() * len(former))]
                if former and rand() < 0.6
                else pool[int(rand() * len(pool))]
            )
            party = None if party == supplier else party
            codes = _CODES_UNAUTHORISED
        elif sender == OTHER_OPERATOR:
            pool = holders[operator_role]
            party = pool[int(rand() * len(pool))]
            role, codes = operator_role, _CODES_UNAUTHORISED
            if party == _at(pop.operator_timeline[d], t):
                party = None
        srvs = (
            _DEVICE_SRVS.get((role_behaviour(role), device.device_type))
            if party is not None
            else None
        )
        if not srvs:  # nobody else has business with this device: its supplier sends
            if supplier is None:
                party, codes = (
                    holders[fuel_role][int(rand() * len(holders[fuel_role]))],
                    _CODES_UNAUTHORISED,
                )
            else:
                party, codes = supplier, _CODES_RESPONSIBLE
            role = fuel_role
            srvs = _DEVICE_SRVS.get((fuel_role, device.device_type))
            if not srvs:
                return 0
        if codes is _CODES_RESPONSIBLE and device.smets == 1:
            codes = _CODES_RESPONSIBLE_S1
        assert party is not None  # srvs are chosen only for a sender
        ids = parties[party].roles[role]
        user = ids[0] if len(ids) == 1 else ids[int(rand() * len(ids))]
        return self._request(heap, t, user, device, srvs.pick(rand), codes.pick(rand))

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
            _Scripted(
                at(0.10), ou, "4.8.1", "I0"
            ),  # an Other User reads the profile: old supplier sees titles
            _Scripted(at(0.15), old, "", "8F1C"),  # a device alert: the old supplier's alone
            _Scripted(at(0.20), agent, "6.2.4", "I0"),
            _Scripted(at(0.25), nop, "4.10", "I0"),
            _Scripted(at(0.30), future, "4.17", "I0"),
            _Scripted(at(0.35), old, "1.1.1", "I0"),
            _Scripted(at(0.40), ou, "4.8.1", "E20"),
            _Scripted(
                cos - 3 * _DAY + 11 * 3_600_000, new, "4.1.1", "E4"
            ),  # gaining supplier, too early
            _Scripted(
                cos - 20_000, old, "4.6.1", "I0", delay=45_000
            ),  # response lands after the change
            _Scripted(cos + 3_600_000, new, "6.23", "I0"),  # Update Security Credentials (CoS)
            _Scripted(
                cos + 2 * _DAY + 10 * 3_600_000, old, "1.1.1", "E4"
            ),  # too late: not authorised
            _Scripted(at(0.65), new, "", "8F35"),
            _Scripted(
                at(0.70), ou, "4.8.1", "I0"
            ),  # the new supplier sees this one, the old does not
            _Scripted(at(0.75), agent, "6.2.7", "I0"),
            _Scripted(at(0.80), new, "2.2", "I0"),
            _Scripted(at(0.85), new, "4.1.1", "E21"),
            _Scripted(at(0.90), nop, "6.13", "I0"),
            _Scripted(at(0.95), future, "4.8.1", "I0"),
        ]
        last = world.end_ms - _MARGIN - 10 * 60_000
        return sorted((s for s in story if start <= s.at <= last), key=lambda s: s.at)

    def _scripted_exchange(self, heap: list[Message], step: _Scripted) -> int:
        show = self.pop.showcase
        assert show is not None
        party, role = step.sender
        user = self.parties[party].user(role)
        device = next(d for d in self.pop.devices if d.device_id == show.device_id)
        if not step.srv:
            return self._device_alert(heap, step.at, device, user, step.code)
        return self._request(heap, step.at, user, device, step.srv, step.code, step.delay)

    # ------------------------------------------------------------ the loop

    def run(self) -> Iterator[Message]:
        world = self.world
        n = world.n_records
        start = world.start_ms
        last = self.last
        span = last - start
        heap: list[Message] = []
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
    """The World's SAT records, lazily and in time order: each DUIS document read by the
    ingest's own parser, so that a store built from them (`generate --into-store`, the demo)
    holds exactly what ingesting the DUIS capture would (command variants, execution times,
    subject Devices and ResponseIDs included)."""
    from ..ingest.duis import parse_text  # the generator's one use of ingest: the parser itself

    for m in messages(world):
        yield parse_text(m[8], _EPOCH + timedelta(milliseconds=m[0]))
