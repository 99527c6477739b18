"""A small, named SAT world for tests: the personas of SPEC sections 1-3.

`load_personas(engine)` writes it through the real store writers (`store.registry`,
`store.writer`), in one transaction, and returns a `World` of handles: party ids, user ids,
device ids, the registry, and every SAT record by a readable name with the id the store gave it.

The story, on ESME-1 (SMETS2 electricity meter):

    2024-12-31 23:59:59  LOOKER reads ESME-1            nobody responsible yet
    2025-01-01 00:00:00  NORTHPOWER becomes supplier, WIRESCO network operator (inclusive starts)
    2025-01-01 00:00:00  AGENTCO reads ESME-1           exactly at the start of both intervals
    2025-02-10           NORTHPOWER reads ESME-1 (request, ack, response), gets a device alert
    2025-02-28 23:59:59  LOOKER request to ESME-1       NORTHPOWER's period
    2025-03-01 00:00:00  ... its response               SOUTHENERGY's (NORTHPOWER's end excluded)
    2025-03-05           SOUTHENERGY changes the tariff, gets a device alert
    2025-03-10..12       SUNEXPORT, FUTURECO and a User ID missing from the registry read ESME-1

plus a SMETS1 ESME, a GSME supplied by SOUTHENERGY through its Gas Supplier User ID, a
device that devices.csv never mentioned, a non-device request (SRV 8.2 to a DCC id) and
DCC alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import make_url, select
from sqlalchemy.engine import Connection, Engine

from servicetrail.domain.model import Device, Responsibility, SatRecord, User
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Viewer
from servicetrail.store.queries import viewer_for
from servicetrail.store.schema import sat_record
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records

# --- Parties -------------------------------------------------------------------------
NORTHPOWER = "NORTHPOWER"  # outgoing Responsible Supplier of ESME-1
SOUTHENERGY = "SOUTHENERGY"  # incoming Responsible Supplier of ESME-1; IS and GS (two User IDs)
WIRESCO = "WIRESCO"  # Network Operator (ED) of ESME-1 and of the SMETS1 ESME
SUNEXPORT = "SUNEXPORT"  # Export Supplier, responsible for nothing
LOOKER = "LOOKER"  # Other User
AGENTCO = "AGENTCO"  # Registered Supplier Agent
FUTURECO = "FUTURECO"  # a User Role code that does not exist yet
PARTIES = (NORTHPOWER, SOUTHENERGY, WIRESCO, SUNEXPORT, LOOKER, AGENTCO, FUTURECO)

# --- User IDs (EUI-64s; one per Party and User Role) ------------------------------------
NP_IS = "90-B3-D5-1F-30-01-00-01"
SE_IS = "90-B3-D5-1F-30-02-00-01"
SE_GS = "90-B3-D5-1F-30-02-00-02"
WS_ED = "90-B3-D5-1F-30-03-00-01"
SX_ES = "90-B3-D5-1F-30-04-00-01"
LK_OU = "90-B3-D5-1F-30-05-00-01"
AG_RSA = "90-B3-D5-1F-30-06-00-01"
FU_XR = "90-B3-D5-1F-30-07-00-01"
UNREGISTERED_USER = "90-B3-D5-1F-30-0F-00-01"  # sends traffic but is in no users.csv
DCC_ID = "90-B3-D5-1F-30-00-00-02"  # target of non-device requests

USERS: tuple[tuple[str, str, str, str], ...] = (
    # user_id, party_id, party name, role
    (NP_IS, NORTHPOWER, "North Power plc", "IS"),
    (SE_IS, SOUTHENERGY, "South Energy Ltd", "IS"),
    (SE_GS, SOUTHENERGY, "South Energy Ltd", "GS"),
    (WS_ED, WIRESCO, "Wires & Co Distribution", "ED"),
    (SX_ES, SUNEXPORT, "Sun Export Ltd", "ES"),
    (LK_OU, LOOKER, "Looker Analytics", "OU"),
    (AG_RSA, AGENTCO, "Agent Co", "RSA"),
    (FU_XR, FUTURECO, "Future Co", "XR"),
)

# --- Devices ---------------------------------------------------------------------------
ESME_1 = "00-DB-12-34-56-78-90-01"  # SMETS2 electricity meter: the change of supplier
GSME_1 = "00-DB-12-34-56-78-90-02"  # SMETS2 gas meter, SOUTHENERGY supplies it (GS)
ESME_S1 = "00-DB-12-34-56-78-90-03"  # SMETS1 electricity meter, NORTHPOWER + WIRESCO
PPMID_1 = "00-DB-12-34-56-78-90-04"  # a HAN device with nobody responsible
UNKNOWN_DEVICE = "00-DB-12-34-56-78-90-FF"  # never in devices.csv

DEVICES = (
    Device(ESME_1, "ESME", 2),
    Device(GSME_1, "GSME", 2),
    Device(ESME_S1, "ESME", 1),
    Device(PPMID_1, "PPMID", 2),
)

CHANGE_OF_SUPPLIER = parse_time("2025-03-01T00:00:00Z")
START = parse_time("2025-01-01T00:00:00Z")


def t(text: str) -> datetime:
    return parse_time(text)


REGISTRY = (
    Responsibility(ESME_1, NORTHPOWER, "supplier", START, CHANGE_OF_SUPPLIER),
    Responsibility(ESME_1, SOUTHENERGY, "supplier", CHANGE_OF_SUPPLIER, None),
    Responsibility(ESME_1, WIRESCO, "network_operator", START, None),
    Responsibility(GSME_1, SOUTHENERGY, "supplier", START, None),
    Responsibility(ESME_S1, NORTHPOWER, "supplier", t("2024-06-01T00:00:00Z"), None),
    Responsibility(ESME_S1, WIRESCO, "network_operator", t("2024-06-01T00:00:00Z"), None),
)


def _rid(originator: str, target: str, counter: int) -> str:
    return f"{originator}:{target}:{counter}"


def looker_flood(
    engine: Engine, newest: datetime, count: int, apart: timedelta = timedelta(seconds=1)
) -> list[SatRecord]:
    """LOOKER's `count` 11.2 requests to ESME-1 (another User's, to the Device), `apart` from
    one another back from `newest`, stored: a flood past the triggers' cap."""
    flood = [
        SatRecord(
            newest - apart * i,
            "request",
            _rid(LK_OU, ESME_1, 5000 + i),
            "11.2",
            LK_OU,
            ESME_1,
            "",
            "<flood>",
        )
        for i in range(count)
    ]
    with engine.begin() as conn:
        append_records(conn, flood)
    return flood


# when the watch tests' LOOKER requests come: after every persona record
WATCHED_FROM = t("2025-04-01T10:00:00Z")


def requests_to_esme_1(
    engine: Engine,
    numbers: Iterable[int],
    *,
    counter_from: int,
    user_id: str = LK_OU,
    payload: str = "<b>",
    at: datetime = WATCHED_FROM,
) -> None:
    """`user_id`'s 11.2 requests to ESME-1, stored: for each n of `numbers`, one `n` seconds
    after `at`, its Request ID's counter `counter_from + n` (each test module its own range).
    LOOKER's, unless said: MP141 titles for ESME-1's supplier, SOUTHENERGY, by then; a
    Party's own User's are its own traffic (rule 1)."""
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    at + timedelta(seconds=n),
                    "request",
                    _rid(user_id, ESME_1, counter_from + n),
                    "11.2",
                    user_id,
                    ESME_1,
                    "",
                    payload,
                )
                for n in numbers
            ],
        )


def non_device_exchange(engine: Engine, requests: int) -> int:
    """NORTHPOWER's `requests` 8.2 requests (a non-device SRV) under one Request ID, a second
    apart, and their response at 2025-03-08T10:00Z, stored; the response's id. A record
    without a Device: its possible triggers are those requests alone."""
    at = t("2025-03-08T10:00:00Z")
    rid = _rid(NP_IS, DCC_ID, 8200)
    asked = [
        SatRecord(at - timedelta(seconds=i + 1), "request", rid, "8.2", NP_IS, "", "", "")
        for i in range(requests)
    ]
    response = SatRecord(at, "response", rid, "8.2", NP_IS, "", "I0", "<inventory>")
    with engine.begin() as conn:
        append_records(conn, [*asked, response])
        return record_ids(conn)[response.key]


def _rec(
    at: str,
    kind: str,
    request_id: str,
    srv: str,
    user_id: str,
    device_id: str,
    code: str = "",
    payload: str = "",
) -> SatRecord:
    return SatRecord(t(at), kind, request_id, srv, user_id, device_id, code, payload)


def persona_records() -> dict[str, SatRecord]:
    """Every SAT record of the persona world, by readable name (not yet loaded)."""
    r_pre = _rid(LK_OU, ESME_1, 1)
    r_ag = _rid(AG_RSA, ESME_1, 1)
    r_ws = _rid(WS_ED, ESME_1, 1)
    r_np = _rid(NP_IS, ESME_1, 1)
    r_np_late = _rid(NP_IS, ESME_1, 2)
    r_lk_cos = _rid(LK_OU, ESME_1, 2)
    r_se = _rid(SE_IS, ESME_1, 1)
    r_sx = _rid(SX_ES, ESME_1, 1)
    r_fu = _rid(FU_XR, ESME_1, 1)
    r_unreg = _rid(UNREGISTERED_USER, ESME_1, 1)
    r_gs = _rid(SE_GS, GSME_1, 1)
    r_lk_gas = _rid(LK_OU, GSME_1, 1)
    r_s1 = _rid(AG_RSA, ESME_S1, 1)
    r_s1_np = _rid(NP_IS, ESME_S1, 1)
    r_ppmid = _rid(LK_OU, PPMID_1, 1)
    r_unknown = _rid(LK_OU, UNKNOWN_DEVICE, 1)
    r_nd = _rid(NP_IS, DCC_ID, 1)
    r_lk_nd = _rid(LK_OU, DCC_ID, 1)
    return {
        # ESME-1 before anyone was responsible: nobody but the sender sees it
        "lk_prehistory_req": _rec(
            "2024-12-31T23:59:59Z", "request", r_pre, "4.1.1", LK_OU, ESME_1, payload="<lk pre>"
        ),
        # exactly at the start of NORTHPOWER's and WIRESCO's intervals (inclusive)
        "ag_start_req": _rec(
            "2025-01-01T00:00:00Z", "request", r_ag, "11.2", AG_RSA, ESME_1, payload="<ag read fw>"
        ),
        "ws_req": _rec(
            "2025-01-15T09:00:00Z", "request", r_ws, "4.1.1", WS_ED, ESME_1, payload="<ws read>"
        ),
        "ws_resp": _rec(
            "2025-01-15T09:00:04Z", "response", r_ws, "4.1.1", WS_ED, ESME_1, "I0", "<ws regs>"
        ),
        # NORTHPOWER's own exchange, in its period
        "np_req": _rec(
            "2025-02-10T10:00:00Z", "request", r_np, "4.1.1", NP_IS, ESME_1, payload="<np read>"
        ),
        "np_ack": _rec(
            "2025-02-10T10:00:01Z", "acknowledgement", r_np, "4.1.1", NP_IS, ESME_1, "I99"
        ),
        "np_resp": _rec(
            "2025-02-10T10:00:05Z",
            "response",
            r_np,
            "4.1.1",
            NP_IS,
            ESME_1,
            "I0",
            "<np registers 12345>",
        ),
        "np_device_alert": _rec(
            "2025-02-11T08:00:00Z",
            "device_alert",
            _rid(NP_IS, ESME_1, 99),
            "",
            NP_IS,
            ESME_1,
            "8F1C",
            "<alert: reboot>",
        ),
        "np_dcc_alert": _rec(
            "2025-02-12T08:00:00Z",
            "dcc_alert",
            _rid(NP_IS, ESME_1, 98),
            "",
            NP_IS,
            ESME_1,
            "N24",
            "<dcc alert>",
        ),
        # NORTHPOWER's own request just before the change, its response exactly at it
        "np_late_req": _rec(
            "2025-02-28T23:59:59Z",
            "request",
            r_np_late,
            "1.1.1",
            NP_IS,
            ESME_1,
            payload="<np tariff>",
        ),
        "np_late_resp": _rec(
            "2025-03-01T00:00:00Z",
            "response",
            r_np_late,
            "1.1.1",
            NP_IS,
            ESME_1,
            "I0",
            "<np tariff done>",
        ),
        # another User's request just before the change, its response just after
        "lk_cos_req": _rec(
            "2025-02-28T23:59:59.999999Z",
            "request",
            r_lk_cos,
            "11.2",
            LK_OU,
            ESME_1,
            payload="<lk fw>",
        ),
        "lk_cos_ack": _rec(
            "2025-02-28T23:59:59.999999Z", "acknowledgement", r_lk_cos, "11.2", LK_OU, ESME_1, "I99"
        ),
        "lk_cos_resp": _rec(
            "2025-03-01T00:00:00Z",
            "response",
            r_lk_cos,
            "11.2",
            LK_OU,
            ESME_1,
            "I0",
            "<lk fw version>",
        ),
        # SOUTHENERGY's own exchange, in its period
        "se_req": _rec(
            "2025-03-05T12:00:00Z", "request", r_se, "1.1.1", SE_IS, ESME_1, payload="<se tariff>"
        ),
        "se_ack": _rec(
            "2025-03-05T12:00:01Z", "acknowledgement", r_se, "1.1.1", SE_IS, ESME_1, "I99"
        ),
        "se_resp": _rec(
            "2025-03-05T12:00:09Z", "response", r_se, "1.1.1", SE_IS, ESME_1, "I0", "<se ok>"
        ),
        "se_device_alert": _rec(
            "2025-03-06T07:00:00Z",
            "device_alert",
            _rid(SE_IS, ESME_1, 99),
            "",
            SE_IS,
            ESME_1,
            "8F35",
            "<alert: low credit>",
        ),
        "ws_dcc_alert": _rec(
            "2025-03-06T07:30:00Z",
            "dcc_alert",
            _rid(WS_ED, DCC_ID, 97),
            "",
            WS_ED,
            "",
            "N12",
            "<dcc alert to ws>",
        ),
        # other roles reading ESME-1 in SOUTHENERGY's period
        "sx_req": _rec(
            "2025-03-10T10:00:00Z", "request", r_sx, "4.2", SX_ES, ESME_1, payload="<sx export>"
        ),
        "sx_resp": _rec(
            "2025-03-10T10:00:03Z", "response", r_sx, "4.2", SX_ES, ESME_1, "I0", "<sx regs>"
        ),
        "fu_req": _rec(
            "2025-03-11T10:00:00Z", "request", r_fu, "11.2", FU_XR, ESME_1, payload="<fu>"
        ),
        "unreg_req": _rec(
            "2025-03-12T10:00:00Z",
            "request",
            r_unreg,
            "11.2",
            UNREGISTERED_USER,
            ESME_1,
            payload="<unreg>",
        ),
        # the gas meter: SOUTHENERGY's Gas Supplier User ID, and LOOKER reading it
        "se_gas_req": _rec(
            "2025-02-15T10:00:00Z", "request", r_gs, "4.1.1", SE_GS, GSME_1, payload="<se gas read>"
        ),
        "se_gas_resp": _rec(
            "2025-02-15T10:00:06Z", "response", r_gs, "4.1.1", SE_GS, GSME_1, "I0", "<se gas regs>"
        ),
        "lk_gas_req": _rec(
            "2025-02-16T10:00:00Z", "request", r_lk_gas, "11.2", LK_OU, GSME_1, payload="<lk gas>"
        ),
        # SMETS1 electricity meter
        "ag_s1_req": _rec(
            "2025-02-20T10:00:00Z", "request", r_s1, "11.2", AG_RSA, ESME_S1, payload="<ag s1>"
        ),
        "ag_s1_resp": _rec(
            "2025-02-20T10:00:30Z", "response", r_s1, "11.2", AG_RSA, ESME_S1, "I0", "<ag s1 fw>"
        ),
        "np_s1_req": _rec(
            "2025-02-21T10:00:00Z", "request", r_s1_np, "4.1.1", NP_IS, ESME_S1, payload="<np s1>"
        ),
        # a HAN device nobody is responsible for
        "lk_ppmid_req": _rec(
            "2025-02-22T10:00:00Z", "request", r_ppmid, "11.2", LK_OU, PPMID_1, payload="<lk ppmid>"
        ),
        # a device missing from devices.csv
        "lk_unknown_req": _rec(
            "2025-02-23T10:00:00Z",
            "request",
            r_unknown,
            "11.2",
            LK_OU,
            UNKNOWN_DEVICE,
            payload="<lk unknown>",
        ),
        "lk_unknown_resp": _rec(
            "2025-02-23T10:00:02Z", "response", r_unknown, "11.2", LK_OU, UNKNOWN_DEVICE, "E4", ""
        ),
        # non-device requests (SRV 8.2 to the DCC): device_id empty
        "np_non_device_req": _rec(
            "2025-02-24T10:00:00Z", "request", r_nd, "8.2", NP_IS, "", payload="<np inventory>"
        ),
        "np_non_device_resp": _rec(
            "2025-02-24T10:00:02Z",
            "response",
            r_nd,
            "8.2",
            NP_IS,
            "",
            "I0",
            "<np inventory result>",
        ),
        "lk_non_device_req": _rec(
            "2025-03-07T10:00:00Z", "request", r_lk_nd, "8.2", LK_OU, "", payload="<lk inventory>"
        ),
    }


@dataclass
class World:
    engine: Engine
    parties: tuple[str, ...]
    user_ids: dict[str, frozenset[str]]  # party -> its User IDs
    devices: dict[str, Device]
    registry: tuple[Responsibility, ...]
    records: dict[str, SatRecord]  # readable name -> record
    ids: dict[str, int] = field(default_factory=dict)  # readable name -> record id in the store

    @property
    def names_by_id(self) -> dict[int, str]:
        return {v: k for k, v in self.ids.items()}

    def viewer(self, party_id: str) -> Viewer:
        """The Viewer as the store builds it (every User ID of the Party)."""
        with self.engine.connect() as conn:
            found = viewer_for(conn, party_id)
        assert found is not None, party_id
        return found

    def registry_for(self, device_id: str) -> list[Responsibility]:
        return [r for r in self.registry if r.device_id == device_id]


def record_ids(conn: Connection) -> dict[tuple, int]:
    """Every stored record's natural key -> its id."""
    s = sat_record.c
    return {
        (rid, kind, at): pk
        for rid, kind, at, pk in conn.execute(select(s.request_id, s.kind, s.logged_at, s.id))
    }


# The stores (by URL) that a test fixture cloned from a template the persona world was already
# written into (tests/conftest.py): their first `load_personas` reads the ids instead of writing
# the same rows again (~0.1 s a test on PostgreSQL, where the writes create 24 month partitions).
_ALREADY_LOADED: set[str] = set()


def url_of(engine_or_url: Engine | str) -> str:
    """The store a URL or an engine names, whichever driver it names it through."""
    url = make_url(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url.url
    return f"{url.get_backend_name()}://{url.host}:{url.port}/{url.database}"


def cloned_with_personas(url: str) -> None:
    """Says that the store at `url` is a copy of one that `load_personas` wrote into and that
    nothing else has written to yet."""
    _ALREADY_LOADED.add(url_of(url))


def forget_the_personas(url: str) -> None:
    _ALREADY_LOADED.discard(url_of(url))


def starts_with_personas(fixture_or_test):
    """Marks a fixture, or a test, whose first write to the test's own store is
    `load_personas` (of an engine on it): the store is then cloned from a template that
    already holds the persona world (tests/conftest.py). On PostgreSQL a store written
    afresh took ~0.19 s of CPU, client and server, and one cloned with the world ~0.045 s."""
    fixture_or_test.starts_with_personas = True
    return fixture_or_test


def load_personas(engine: Engine) -> World:
    """Write the persona world into `engine` through the store writers, and hand back its
    handles."""
    records = persona_records()
    if url_of(engine) in _ALREADY_LOADED:
        _ALREADY_LOADED.discard(url_of(engine))  # its first call only: a second one writes
        with engine.connect() as conn:
            keys = record_ids(conn)
        assert len(keys) == len(records), "the persona template and this world differ"
        return _world_of(engine, records, keys)
    with engine.begin() as conn:
        for user_id, party_id, name, role in USERS:
            load_user(conn, User(user_id, party_id, role), name)
        for dev in DEVICES:
            load_device(conn, dev)
        for interval in REGISTRY:
            load_responsibility(conn, interval)
        loaded, duplicates = append_records(conn, list(records.values()))
        assert (loaded, duplicates) == (len(records), 0)
        keys = record_ids(conn)
    return _world_of(engine, records, keys)


def _world_of(engine: Engine, records: dict[str, SatRecord], keys: dict[tuple, int]) -> World:
    user_ids: dict[str, set[str]] = {p: set() for p in PARTIES}
    for user_id, party_id, _name, _role in USERS:
        user_ids[party_id].add(user_id)
    return World(
        engine=engine,
        parties=PARTIES,
        user_ids={p: frozenset(ids) for p, ids in user_ids.items()},
        devices={d.device_id: d for d in DEVICES},
        registry=REGISTRY,
        records=records,
        ids={name: keys[rec.key] for name, rec in records.items()},
    )
