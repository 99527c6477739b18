"""SPEC section 3, row by row and note by note, with the named personas of tests/personas.py.

Every expectation is checked twice: by the pure rule (`domain.visibility.decide`) and by the
store's read paths (`search_page`, `iter_search`, `get_visible`, `explain`), which compile
the rule to SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from servicetrail.domain.intervals import Conflict, Outcome
from servicetrail.domain.model import Responsibility
from servicetrail.domain.search import Search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Access, Scope, decide
from servicetrail.store.engine import open_store
from servicetrail.store.queries import (
    exchange_of,
    explain,
    get_visible,
    iter_own_report,
    iter_search,
    search_page,
)
from servicetrail.domain.model import SatRecord
from servicetrail.store.registry import load_responsibility
from servicetrail.store.writer import append_records
from tests.personas import (
    AGENTCO,
    CHANGE_OF_SUPPLIER,
    ESME_1,
    LK_OU,
    ESME_S1,
    FUTURECO,
    LOOKER,
    NORTHPOWER,
    PPMID_1,
    SOUTHENERGY,
    START,
    SUNEXPORT,
    UNKNOWN_DEVICE,
    UNREGISTERED_USER,
    WIRESCO,
    World,
    load_personas,
    record_ids,
)
from tests.personas import starts_with_personas

OWN, MP141 = Access.OWN.value, Access.MP141.value

# What each Party may see, by record name (everything else does not exist for it).
EXPECTED: dict[str, dict[str, str]] = {
    NORTHPOWER: {
        **dict.fromkeys(
            [
                "np_req",
                "np_ack",
                "np_resp",
                "np_device_alert",
                "np_dcc_alert",
                "np_late_req",
                "np_late_resp",
                "np_s1_req",
                "np_non_device_req",
                "np_non_device_resp",
            ],
            OWN,
        ),
        # ESME-1 in [2025-01-01, 2025-03-01), and the SMETS1 ESME (open)
        **dict.fromkeys(
            [
                "ag_start_req",
                "ws_req",
                "ws_resp",
                "lk_cos_req",
                "lk_cos_ack",
                "ag_s1_req",
                "ag_s1_resp",
            ],
            MP141,
        ),
    },
    SOUTHENERGY: {
        # two User IDs (IS and GS), both its own
        **dict.fromkeys(
            ["se_req", "se_ack", "se_resp", "se_device_alert", "se_gas_req", "se_gas_resp"], OWN
        ),
        # ESME-1 from 2025-03-01 (inclusive), the GSME from 2025-01-01
        **dict.fromkeys(
            [
                "np_late_resp",
                "lk_cos_resp",
                "sx_req",
                "sx_resp",
                "fu_req",
                "unreg_req",
                "lk_gas_req",
            ],
            MP141,
        ),
    },
    WIRESCO: {
        **dict.fromkeys(["ws_req", "ws_resp", "ws_dcc_alert"], OWN),
        **dict.fromkeys(
            [
                "ag_start_req",
                "np_req",
                "np_ack",
                "np_resp",
                "np_late_req",
                "np_late_resp",
                "lk_cos_req",
                "lk_cos_ack",
                "lk_cos_resp",
                "se_req",
                "se_ack",
                "se_resp",
                "sx_req",
                "sx_resp",
                "fu_req",
                "unreg_req",
                "ag_s1_req",
                "ag_s1_resp",
                "np_s1_req",
            ],
            MP141,
        ),
    },
    SUNEXPORT: dict.fromkeys(["sx_req", "sx_resp"], OWN),
    LOOKER: dict.fromkeys(
        [
            "lk_prehistory_req",
            "lk_cos_req",
            "lk_cos_ack",
            "lk_cos_resp",
            "lk_gas_req",
            "lk_ppmid_req",
            "lk_unknown_req",
            "lk_unknown_resp",
            "lk_non_device_req",
        ],
        OWN,
    ),
    AGENTCO: dict.fromkeys(["ag_start_req", "ag_s1_req", "ag_s1_resp"], OWN),
    FUTURECO: dict.fromkeys(["fu_req"], OWN),
}


@pytest.fixture
@starts_with_personas
def pg_world(pg_url: str) -> Iterator[World]:
    """The persona world on PostgreSQL, where reads also pass row-level security."""
    engine = open_store(pg_url)
    try:
        yield load_personas(engine)
    finally:
        engine.dispose()


def domain_view(
    world: World, party: str, registry: tuple[Responsibility, ...] | None = None
) -> dict[str, str]:
    viewer = world.viewer(party)
    seen = {}
    for name, record in world.records.items():
        decision = decide(viewer, record, registry if registry is not None else world.registry)
        if decision.visible:
            seen[name] = decision.access.value
    return seen


def store_items(
    world: World, party: str, scope: Scope = Scope.ALL, **filters: Any
) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        return list(iter_search(conn, world.viewer(party), Search(scope=scope, **filters)))


def store_view(
    world: World, party: str, scope: Scope = Scope.ALL, **filters: Any
) -> dict[str, str]:
    names = world.names_by_id
    return {names[i["id"]]: i["access"] for i in store_items(world, party, scope, **filters)}


def one(world: World, party: str, name: str) -> dict[str, Any] | None:
    with world.engine.connect() as conn:
        return get_visible(conn, world.viewer(party), world.ids[name])


def decision(world: World, party: str, name: str):
    return decide(world.viewer(party), world.records[name], world.registry)


# --- the whole table at once, per persona --------------------------------------------------


def check_table(world: World, party: str) -> None:
    assert domain_view(world, party) == EXPECTED[party]
    for scope in Scope:
        assert store_view(world, party, scope) == {
            k: v
            for k, v in EXPECTED[party].items()
            if scope is Scope.ALL or (v == OWN) == (scope is Scope.OWN)
        }
    for name in world.records:
        found = one(world, party, name)
        assert (found["access"] if found else None) == EXPECTED[party].get(name), name
        if found:
            assert ("payload" in found) == (found["access"] == OWN), name


@pytest.mark.parametrize("party", sorted(EXPECTED))
def test_each_persona_sees_exactly_what_the_table_says_in_domain_and_store(
    world: World, party: str
) -> None:
    check_table(world, party)


def test_the_same_table_holds_on_postgresql(pg_world: World) -> None:
    for party in EXPECTED:
        check_table(pg_world, party)
    with pg_world.engine.connect() as conn:
        viewer = pg_world.viewer(SOUTHENERGY)
        assert get_visible(conn, viewer, pg_world.ids["np_resp"]) is None  # hidden
        assert get_visible(conn, viewer, max(pg_world.ids.values()) + 1000) is None  # missing
        assert get_visible(conn, viewer, 2**63) is None
        _, why = explain(conn, pg_world.viewer(NORTHPOWER), pg_world.ids["ws_resp"])
        assert why.interval == Responsibility(
            ESME_1, NORTHPOWER, "supplier", START, CHANGE_OF_SUPPLIER
        )


# --- row 1: own traffic, payload included --------------------------------------------------


def test_rule1_own_records_carry_their_payload(world: World) -> None:
    for name in ("np_req", "np_resp", "np_device_alert", "np_dcc_alert", "np_non_device_req"):
        d = decision(world, NORTHPOWER, name)
        assert (d.access, d.rule, d.interval) == (Access.OWN, 1, None)
        found = one(world, NORTHPOWER, name)
        assert found["access"] == OWN
        assert found["payload"] == world.records[name].payload
    # an own record with an empty payload still has the key (an empty string)
    assert one(world, LOOKER, "lk_unknown_resp")["payload"] == ""
    assert one(world, NORTHPOWER, "np_ack")["payload"] == ""


def test_rule1_a_party_with_two_user_ids_owns_the_traffic_of_both(world: World) -> None:
    assert world.user_ids[SOUTHENERGY] == world.viewer(SOUTHENERGY).user_ids
    assert len(world.user_ids[SOUTHENERGY]) == 2
    roles = {i["user_role"] for i in store_items(world, SOUTHENERGY, Scope.OWN)}
    assert roles == {"IS", "GS"}
    gas = one(world, SOUTHENERGY, "se_gas_resp")
    assert gas["access"] == OWN and gas["payload"] == "<se gas regs>"
    assert decision(world, SOUTHENERGY, "se_gas_req").rule == 1


# --- row 2: alerts stay with their addressee -----------------------------------------------


@pytest.mark.parametrize(
    "party,name",
    [
        (
            WIRESCO,
            "np_device_alert",
        ),  # WIRESCO is ESME-1's network operator at the time: still nothing
        (WIRESCO, "np_dcc_alert"),
        (WIRESCO, "se_device_alert"),
        (NORTHPOWER, "se_device_alert"),
        (SOUTHENERGY, "np_device_alert"),
        (NORTHPOWER, "ws_dcc_alert"),
    ],
)
def test_rule2_alerts_of_another_user_are_hidden_even_from_the_responsible(
    world: World, party: str, name: str
) -> None:
    d = decision(world, party, name)
    assert (d.access, d.rule) == (None, 2)
    assert one(world, party, name) is None
    with world.engine.connect() as conn:
        assert explain(conn, world.viewer(party), world.ids[name]) is None


def test_rule2_an_alert_search_returns_only_own_alerts(world: World) -> None:
    alerts = ("device_alert", "dcc_alert")
    assert store_view(world, WIRESCO, kinds=alerts) == {"ws_dcc_alert": OWN}
    assert store_view(world, NORTHPOWER, kinds=alerts) == {
        "np_device_alert": OWN,
        "np_dcc_alert": OWN,
    }
    assert store_view(world, SOUTHENERGY, Scope.OTHERS, kinds=alerts) == {}


# --- row 3: MP141 titles, never the payload ------------------------------------------------


def test_rule3_network_operator_sees_titles_without_a_payload_key(world: World) -> None:
    found = one(world, WIRESCO, "np_resp")
    assert found["access"] == MP141
    assert "payload" not in found
    record = world.records["np_resp"]
    assert found["srv"] == "4.1.1" and found["srv_title"] == "Read Instantaneous Import Registers"
    assert found["request_id"] == record.request_id and found["response_code"] == "I0"
    assert found["device_id"] == ESME_1 and (found["device_type"], found["smets"]) == ("ESME", 2)
    assert (found["user_role"], found["party_id"]) == ("IS", NORTHPOWER)
    assert found["logged_at"] == "2025-02-10T10:00:05Z"
    d = decision(world, WIRESCO, "np_resp")
    assert (d.access, d.rule) == (Access.MP141, 3)
    # no read path carries another User's payload
    for item in store_items(world, WIRESCO, Scope.OTHERS):
        assert "payload" not in item
        assert item["access"] == MP141


def test_rule3_outgoing_supplier_sees_only_its_period(world: World) -> None:
    others = store_view(world, NORTHPOWER, Scope.OTHERS, device_id=ESME_1)
    assert others == dict.fromkeys(
        ["ag_start_req", "ws_req", "ws_resp", "lk_cos_req", "lk_cos_ack"], MP141
    )
    for name in ("se_req", "se_resp", "sx_req", "fu_req", "lk_cos_resp", "lk_prehistory_req"):
        assert decision(world, NORTHPOWER, name).rule == 4
        assert one(world, NORTHPOWER, name) is None


def test_rule3_incoming_supplier_does_not_read_its_predecessors_traffic(world: World) -> None:
    others = store_view(world, SOUTHENERGY, Scope.OTHERS, device_id=ESME_1)
    assert others == dict.fromkeys(
        ["np_late_resp", "lk_cos_resp", "sx_req", "sx_resp", "fu_req", "unreg_req"], MP141
    )
    for name in ("np_req", "np_resp", "ws_req", "ag_start_req", "np_late_req", "lk_cos_req"):
        assert decision(world, SOUTHENERGY, name).rule == 4
        assert one(world, SOUTHENERGY, name) is None


def test_rule3_request_before_the_change_and_response_after_fall_to_different_suppliers(
    world: World,
) -> None:
    # LOOKER's request (and ack) at 23:59:59.999999 on 28 Feb, its response at 00:00:00 on 1 March
    assert store_view(world, NORTHPOWER, request_id=world.records["lk_cos_req"].request_id) == {
        "lk_cos_req": MP141,
        "lk_cos_ack": MP141,
    }
    assert store_view(world, SOUTHENERGY, request_id=world.records["lk_cos_req"].request_id) == {
        "lk_cos_resp": MP141
    }
    assert store_view(world, WIRESCO, request_id=world.records["lk_cos_req"].request_id) == {
        "lk_cos_req": MP141,
        "lk_cos_ack": MP141,
        "lk_cos_resp": MP141,
    }
    assert decision(world, NORTHPOWER, "lk_cos_resp").rule == 4
    assert decision(world, SOUTHENERGY, "lk_cos_req").rule == 4


def test_rule3_interval_starts_are_inclusive_and_ends_exclusive(world: World) -> None:
    assert world.records["ag_start_req"].logged_at == START
    assert world.records["np_late_resp"].logged_at == CHANGE_OF_SUPPLIER
    # exactly at the start: NORTHPOWER and WIRESCO both see it
    assert one(world, NORTHPOWER, "ag_start_req")["access"] == MP141
    assert one(world, WIRESCO, "ag_start_req")["access"] == MP141
    # exactly at NORTHPOWER's (exclusive) end = SOUTHENERGY's (inclusive) start
    assert one(world, SOUTHENERGY, "np_late_resp")["access"] == MP141
    assert one(world, NORTHPOWER, "np_late_resp")["access"] == OWN  # its own message regardless
    # one second before anyone was responsible
    assert one(world, NORTHPOWER, "lk_prehistory_req") is None
    assert one(world, WIRESCO, "lk_prehistory_req") is None


def test_rule3_another_users_record_at_an_intervals_end_is_the_next_holders_alone(
    world: World,
) -> None:
    """The persona record at the change of supplier is NORTHPOWER's own, so the SQL's end of
    an interval made inclusive (`<=` in `held_clause`) failed no test (audit 60c): LOOKER's
    request at that instant is SOUTHENERGY's title, and for NORTHPOWER it does not exist, by
    look-up and by search."""
    at_change = SatRecord(
        CHANGE_OF_SUPPLIER, "request", f"{LK_OU}:{ESME_1}:6000", "11.2", LK_OU, ESME_1, "", "<x>"
    )
    with world.engine.begin() as conn:
        append_records(conn, [at_change])
        record_id = record_ids(conn)[at_change.key]
    assert not decide(world.viewer(NORTHPOWER), at_change, world.registry).visible
    assert decide(world.viewer(SOUTHENERGY), at_change, world.registry).access is Access.MP141
    with world.engine.connect() as conn:
        assert get_visible(conn, world.viewer(NORTHPOWER), record_id) is None
        assert get_visible(conn, world.viewer(SOUTHENERGY), record_id)["access"] == MP141
    on_esme_1 = {"device_id": ESME_1, "time_from": CHANGE_OF_SUPPLIER}
    assert record_id not in {i["id"] for i in store_items(world, NORTHPOWER, **on_esme_1)}
    assert record_id in {i["id"] for i in store_items(world, SOUTHENERGY, **on_esme_1)}
    assert record_id not in {i["id"] for i in store_items(world, NORTHPOWER, Scope.OTHERS)}


def test_rule3_applies_to_smets1_and_to_gas_meters_alike(world: World) -> None:
    s1 = one(world, NORTHPOWER, "ag_s1_resp")
    assert (s1["access"], s1["smets"], s1["device_id"]) == (MP141, 1, ESME_S1)
    assert "payload" not in s1
    assert one(world, WIRESCO, "np_s1_req")["access"] == MP141
    gas = one(world, SOUTHENERGY, "lk_gas_req")
    assert (gas["access"], gas["device_type"]) == (MP141, "GSME")
    # WIRESCO holds nothing on the gas meter: nothing
    assert one(world, WIRESCO, "lk_gas_req") is None


def test_rule3_reads_the_registry_not_the_viewers_roles(world: World) -> None:
    """An RSA made network operator of a device by the registry sees its traffic (roles are not
    consulted)."""
    assert one(world, AGENTCO, "lk_ppmid_req") is None
    interval = Responsibility(PPMID_1, AGENTCO, "network_operator", START, None)
    with world.engine.begin() as conn:
        assert load_responsibility(conn, interval) is Outcome.LOADED
    assert one(world, AGENTCO, "lk_ppmid_req")["access"] == MP141
    d = decide(world.viewer(AGENTCO), world.records["lk_ppmid_req"], [interval])
    assert (d.rule, d.interval) == (3, interval)


def test_rule3_explain_gives_the_granting_interval(world: World) -> None:
    with world.engine.connect() as conn:
        found, why = explain(conn, world.viewer(NORTHPOWER), world.ids["ws_resp"])
        assert found["access"] == MP141
        assert (why.access, why.rule) == (Access.MP141, 3)
        assert why.interval == Responsibility(
            ESME_1, NORTHPOWER, "supplier", START, CHANGE_OF_SUPPLIER
        )
        assert "Responsible Supplier" in why.reason and ESME_1 in why.reason
        assert why.badge() == "visible as Responsible Supplier, 2025-01-01 to 2025-03-01"

        _, why = explain(conn, world.viewer(WIRESCO), world.ids["se_resp"])
        assert why.rule == 3
        assert why.interval == Responsibility(ESME_1, WIRESCO, "network_operator", START, None)
        assert why.badge() == "visible as Network Operator, 2025-01-01 to now (open)"

        _, why = explain(conn, world.viewer(SOUTHENERGY), world.ids["np_late_resp"])
        assert (
            why.interval.valid_from == CHANGE_OF_SUPPLIER and why.interval.party_id == SOUTHENERGY
        )

        _, why = explain(conn, world.viewer(NORTHPOWER), world.ids["np_resp"])
        assert (why.rule, why.interval, why.badge()) == (1, None, "own")


# --- row 4 and the other roles: own traffic only -----------------------------------------


@pytest.mark.parametrize("party", [SUNEXPORT, LOOKER, AGENTCO, FUTURECO])
def test_roles_without_responsibility_see_only_their_own(world: World, party: str) -> None:
    view = store_view(world, party)
    assert view and set(view.values()) == {OWN}
    assert store_view(world, party, Scope.OTHERS) == {}
    assert domain_view(world, party) == view
    for name in world.records:
        if name not in view:
            assert decision(world, party, name).rule in (2, 4)


def test_a_future_role_is_accepted_and_treated_like_other_user(world: World) -> None:
    fu = one(world, FUTURECO, "fu_req")
    assert (fu["user_role"], fu["access"], fu["payload"]) == ("XR", OWN, "<fu>")
    # ... and its traffic is visible to ESME-1's Responsible Supplier and Network Operator, like
    # anyone's
    assert one(world, SOUTHENERGY, "fu_req")["access"] == MP141
    assert one(world, WIRESCO, "fu_req")["access"] == MP141


def test_rule4_traffic_nobody_is_responsible_for_stays_with_its_sender(world: World) -> None:
    for name in ("lk_ppmid_req", "lk_prehistory_req", "lk_non_device_req"):
        for party in world.parties:
            if party != LOOKER:
                assert decision(world, party, name).rule == 4, (party, name)
                assert one(world, party, name) is None, (party, name)


def test_non_device_requests_are_visible_to_their_sender_only(world: World) -> None:
    found = one(world, NORTHPOWER, "np_non_device_req")
    assert (found["device_id"], found["device_type"], found["srv"], found["srv_title"]) == (
        "",
        None,
        "8.2",
        "Read Inventory",
    )
    assert found["request_id"].split(":")[1] == "90-B3-D5-1F-30-00-00-02"
    for party in (WIRESCO, SOUTHENERGY):
        assert one(world, party, "np_non_device_req") is None
        assert one(world, party, "np_non_device_resp") is None


def test_unknown_device_is_shown_to_its_originator_with_no_device_type(world: World) -> None:
    found = one(world, LOOKER, "lk_unknown_req")
    assert found["device_id"] == UNKNOWN_DEVICE
    assert (found["device_type"], found["smets"], found["access"]) == (None, None, OWN)
    assert found["payload"] == "<lk unknown>"
    assert store_view(world, LOOKER, device_id=UNKNOWN_DEVICE) == {
        "lk_unknown_req": OWN,
        "lk_unknown_resp": OWN,
    }
    for party in world.parties:
        if party != LOOKER:
            assert store_view(world, party, device_id=UNKNOWN_DEVICE) == {}


def test_a_user_missing_from_the_registry_is_shown_without_role_or_party(world: World) -> None:
    found = one(world, SOUTHENERGY, "unreg_req")
    assert (found["user_id"], found["user_role"], found["party_id"]) == (
        UNREGISTERED_USER,
        None,
        None,
    )
    assert found["access"] == MP141


# --- notes ---------------------------------------------------------------------------------


def test_a_hidden_record_is_answered_exactly_like_a_missing_one(world: World) -> None:
    hidden = world.ids["np_resp"]
    missing = max(world.ids.values()) + 1000
    with world.engine.connect() as conn:
        viewer = world.viewer(SOUTHENERGY)
        assert get_visible(conn, viewer, hidden) is None
        assert get_visible(conn, viewer, missing) is None
        assert explain(conn, viewer, hidden) is None
        assert explain(conn, viewer, missing) is None
        for bad in (0, -1, 2**63, 10**30):  # ids no record can have are simply missing
            assert get_visible(conn, viewer, bad) is None
        # and a search naming it finds nothing, so it is never counted
        assert (
            list(iter_search(conn, viewer, Search(request_id=world.records["np_resp"].request_id)))
            == []
        )
        assert exchange_of(conn, viewer, world.records["np_resp"].request_id) == ([], False)


def test_hidden_records_are_never_counted(world: World) -> None:
    for party, expected in EXPECTED.items():
        with world.engine.connect() as conn:
            items, cursor = search_page(conn, world.viewer(party), Search(), limit=1000)
        assert cursor is None
        assert len(items) == len(expected), party


def test_scope_own_others_all(world: World) -> None:
    for party, expected in EXPECTED.items():
        own = {k: v for k, v in expected.items() if v == OWN}
        others = {k: v for k, v in expected.items() if v == MP141}
        assert store_view(world, party, Scope.OWN) == own, party
        assert store_view(world, party, Scope.OTHERS) == others, party
        assert store_view(world, party, Scope.ALL) == expected, party
    # scope combines with the other filters
    assert store_view(world, WIRESCO, Scope.OWN, device_id=ESME_1) == {
        "ws_req": OWN,
        "ws_resp": OWN,
    }


def test_exchange_shows_only_the_visible_messages_oldest_first(world: World) -> None:
    request_id = world.records["np_late_req"].request_id
    with world.engine.connect() as conn:
        names = world.names_by_id
        assert [
            names[i["id"]] for i in exchange_of(conn, world.viewer(NORTHPOWER), request_id)[0]
        ] == ["np_late_req", "np_late_resp"]
        assert [
            names[i["id"]] for i in exchange_of(conn, world.viewer(SOUTHENERGY), request_id)[0]
        ] == ["np_late_resp"]


def test_reports_hold_own_traffic_only(world: World) -> None:
    """SPEC section 1 rule 7: WIRESCO's report has its own records, none of the MP141 ones."""
    with world.engine.connect() as conn:
        rows = list(
            iter_own_report(
                conn, world.viewer(WIRESCO), parse_time("2024-01-01"), parse_time("2026-01-01")
            )
        )
    names = world.names_by_id
    assert {names[r["id"]] for r in rows} == {"ws_req", "ws_resp", "ws_dcc_alert"}
    assert all(r["access"] == OWN and "payload" in r for r in rows)
    # from inclusive, to exclusive
    with world.engine.connect() as conn:
        rows = list(
            iter_own_report(
                conn,
                world.viewer(WIRESCO),
                parse_time("2025-01-15T09:00:04Z"),
                parse_time("2025-03-06T07:30:00Z"),
            )
        )
    assert [names[r["id"]] for r in rows] == ["ws_resp"]


def test_a_late_correction_of_the_registry_changes_what_past_records_show(world: World) -> None:
    # NORTHPOWER's period really ended on 15 February: the registry is corrected
    corrected = Responsibility(
        ESME_1, NORTHPOWER, "supplier", START, parse_time("2025-02-15T00:00:00Z")
    )
    with world.engine.begin() as conn:
        assert load_responsibility(conn, corrected) is Outcome.CORRECTED
    registry = tuple(
        corrected
        if (r.device_id, r.party_id, r.relation) == (ESME_1, NORTHPOWER, "supplier")
        else r
        for r in world.registry
    )
    expected = {
        k: v for k, v in EXPECTED[NORTHPOWER].items() if k not in ("lk_cos_req", "lk_cos_ack")
    }
    assert store_view(world, NORTHPOWER) == expected
    assert domain_view(world, NORTHPOWER, registry) == expected
    assert one(world, NORTHPOWER, "ws_resp")["access"] == MP141  # 15 January: still inside
    assert one(world, NORTHPOWER, "lk_cos_req") is None
    with world.engine.connect() as conn:
        _, why = explain(conn, world.viewer(NORTHPOWER), world.ids["ws_resp"])
    assert why.interval == corrected

    # a correction may not make two suppliers overlap
    too_long = Responsibility(
        ESME_1, NORTHPOWER, "supplier", START, parse_time("2025-03-02T00:00:00Z")
    )
    with pytest.raises(Conflict, match="overlaps"), world.engine.begin() as conn:
        load_responsibility(conn, too_long)
    assert store_view(world, NORTHPOWER) == expected

    # correcting it back restores the history
    with world.engine.begin() as conn:
        assert load_responsibility(conn, world.registry[0]) is Outcome.CORRECTED
    assert store_view(world, NORTHPOWER) == EXPECTED[NORTHPOWER]


def test_closing_an_open_interval_hides_later_records(world: World) -> None:
    closed = Responsibility(ESME_1, WIRESCO, "network_operator", START, CHANGE_OF_SUPPLIER)
    with world.engine.begin() as conn:
        assert load_responsibility(conn, closed) is Outcome.CORRECTED
    view = store_view(world, WIRESCO, Scope.OTHERS, device_id=ESME_1)
    assert all(world.records[n].logged_at < CHANGE_OF_SUPPLIER for n in view)
    assert "np_req" in view and "se_req" not in view and "np_late_resp" not in view


def test_payload_of_an_mp141_record_is_not_in_any_search_item(world: World) -> None:
    payloads = {r.payload for r in world.records.values() if r.payload}
    for party in world.parties:
        for item in store_items(world, party):
            if item["access"] == MP141:
                assert "payload" not in item
                assert not payloads & {str(v) for v in item.values()}
