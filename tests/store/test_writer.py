"""Appending SAT records idempotently, and the registry's rules (SPEC section 4)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from servicetrail.domain.intervals import Conflict, Outcome
from servicetrail.domain.model import Device, Responsibility, User
from servicetrail.domain.times import parse_time
from servicetrail.store.schema import (
    dcc_user,
    device,
    party,
    responsibility,
    sat_payload,
    sat_record,
)
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from tests.personas import (
    ESME_1,
    GSME_1,
    NORTHPOWER,
    PPMID_1,
    SOUTHENERGY,
    WIRESCO,
    World,
    persona_records,
)


def count(engine: Engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def t(text: str):
    return parse_time(text)


# --- SAT records ------------------------------------------------------------------------


def test_re_appending_the_same_batch_adds_nothing_and_counts_duplicates(world: World) -> None:
    records, payloads = count(world.engine, sat_record), count(world.engine, sat_payload)
    batch = list(world.records.values())
    with world.engine.begin() as conn:
        assert append_records(conn, batch) == (0, len(batch))
    assert (count(world.engine, sat_record), count(world.engine, sat_payload)) == (
        records,
        payloads,
    )


def test_a_batch_with_some_new_records_loads_only_those(world: World) -> None:
    old = world.records["np_req"]
    new = replace(old, request_id=old.request_id.rsplit(":", 1)[0] + ":555", payload="<new>")
    with world.engine.begin() as conn:
        assert append_records(conn, [old, new, world.records["np_resp"]]) == (1, 2)
    assert count(world.engine, sat_record) == len(world.records) + 1


def test_duplicates_inside_one_batch_are_counted_once_loaded(engine: Engine) -> None:
    records = list(persona_records().values())[:5]
    with engine.begin() as conn:
        assert append_records(conn, records + records[:2]) == (5, 2)
    assert count(engine, sat_record) == 5


def test_the_natural_key_is_request_id_kind_and_time(world: World) -> None:
    req = world.records["np_req"]
    with world.engine.begin() as conn:
        # the same message again is a duplicate; other content under its identity a conflict
        assert append_records(conn, [req]) == (0, 1)
        with pytest.raises(Conflict, match=f"stored record {world.ids['np_req']}"):
            append_records(conn, [replace(req, payload="<forged>")])
        # another kind, or another time, is another message
        assert append_records(
            conn, [replace(req, kind="response", logged_at=t("2025-02-10T10:00:07Z"))]
        ) == (1, 0)
        assert append_records(conn, [replace(req, logged_at=t("2025-02-10T11:00:00Z"))]) == (1, 0)
    with world.engine.connect() as conn:
        payload = conn.execute(
            select(sat_payload.c.payload).where(sat_payload.c.record_id == world.ids["np_req"])
        ).scalar_one()
    assert payload == "<np read>"


def test_payload_rows_only_for_non_empty_payloads(world: World) -> None:
    with_payload = [n for n, r in world.records.items() if r.payload]
    assert count(world.engine, sat_payload) == len(with_payload)
    with world.engine.connect() as conn:
        stored = dict(conn.execute(select(sat_payload.c.record_id, sat_payload.c.payload)).all())
    assert stored == {world.ids[n]: world.records[n].payload for n in with_payload}


def test_record_ids_are_positive_and_distinct(world: World) -> None:
    ids = list(world.ids.values())
    assert all(i > 0 for i in ids) and len(set(ids)) == len(ids)
    first_max = max(ids)
    extra = replace(world.records["np_req"], logged_at=t("2026-01-01T00:00:00Z"))
    with world.engine.begin() as conn:
        append_records(conn, [extra])
        new_id = conn.execute(select(func.max(sat_record.c.id))).scalar_one()
    assert new_id > first_max


def test_an_empty_batch_is_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert append_records(conn, []) == (0, 0)


# --- responsibilities -------------------------------------------------------------------


def intervals(engine: Engine, device_id: str, relation: str) -> list[tuple]:
    r = responsibility.c
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                select(r.party_id, r.valid_from, r.valid_to)
                .where(r.device_id == device_id, r.relation == relation)
                .order_by(r.valid_from)
            )
        ]


def load(engine: Engine, interval: Responsibility) -> Outcome:
    with engine.begin() as conn:
        return load_responsibility(conn, interval)


@pytest.mark.parametrize(
    "start,end",
    [
        ("2025-02-01", "2025-04-01"),  # across the change of supplier
        ("2024-12-01", "2025-01-02"),  # into NORTHPOWER's start
        ("2025-02-28T23:59:59Z", None),  # open, from inside NORTHPOWER's period
        ("2025-06-01", None),  # inside SOUTHENERGY's open interval
        ("2024-01-01", None),  # covering everything
    ],
)
def test_overlapping_intervals_for_the_same_device_and_relation_are_rejected(
    world: World, start: str, end: str | None
) -> None:
    before = intervals(world.engine, ESME_1, "supplier")
    with pytest.raises(Conflict, match="overlaps"):
        load(
            world.engine,
            Responsibility(ESME_1, WIRESCO, "supplier", t(start), t(end) if end else None),
        )
    assert intervals(world.engine, ESME_1, "supplier") == before


def test_adjacent_intervals_and_other_relations_do_not_conflict(world: World) -> None:
    # ends exactly where NORTHPOWER's starts: half-open intervals touch without overlapping
    assert (
        load(
            world.engine,
            Responsibility(ESME_1, WIRESCO, "supplier", t("2024-06-01"), t("2025-01-01")),
        )
        is Outcome.LOADED
    )
    # the same Party may hold both relations at once
    assert (
        load(
            world.engine,
            Responsibility(GSME_1, SOUTHENERGY, "network_operator", t("2025-01-01"), None),
        )
        is Outcome.LOADED
    )


def test_the_identical_interval_again_is_a_duplicate(world: World) -> None:
    before = intervals(world.engine, ESME_1, "supplier")
    for interval in world.registry:
        assert load(world.engine, interval) is Outcome.DUPLICATE
    assert intervals(world.engine, ESME_1, "supplier") == before


def test_the_same_start_with_another_end_is_a_correction(world: World) -> None:
    closed = Responsibility(ESME_1, SOUTHENERGY, "supplier", t("2025-03-01"), t("2025-09-01"))
    assert load(world.engine, closed) is Outcome.CORRECTED
    assert intervals(world.engine, ESME_1, "supplier") == [
        (NORTHPOWER, t("2025-01-01"), t("2025-03-01")),
        (SOUTHENERGY, t("2025-03-01"), t("2025-09-01")),
    ]
    # and back to open
    reopened = replace(closed, valid_to=None)
    assert load(world.engine, reopened) is Outcome.CORRECTED
    assert intervals(world.engine, ESME_1, "supplier")[-1] == (SOUTHENERGY, t("2025-03-01"), None)


def test_the_same_start_with_another_party_is_a_correction(world: World) -> None:
    assert (
        load(world.engine, Responsibility(ESME_1, WIRESCO, "supplier", t("2025-03-01"), None))
        is Outcome.CORRECTED
    )
    assert intervals(world.engine, ESME_1, "supplier")[-1] == (WIRESCO, t("2025-03-01"), None)


def test_a_correction_that_would_overlap_is_rejected(world: World) -> None:
    before = intervals(world.engine, ESME_1, "supplier")
    with pytest.raises(Conflict, match="overlaps"):
        load(
            world.engine,
            Responsibility(ESME_1, NORTHPOWER, "supplier", t("2025-01-01"), t("2025-03-02")),
        )
    with pytest.raises(Conflict, match="overlaps"):
        load(world.engine, Responsibility(ESME_1, NORTHPOWER, "supplier", t("2025-01-01"), None))
    assert intervals(world.engine, ESME_1, "supplier") == before


def test_unknown_party_or_device_is_rejected(world: World) -> None:
    with pytest.raises(Conflict, match="unknown party_id"):
        load(world.engine, Responsibility(PPMID_1, "NOBODY", "supplier", t("2025-01-01"), None))
    with pytest.raises(Conflict, match="unknown device_id"):
        load(
            world.engine,
            Responsibility("00-DB-12-34-56-78-90-EE", WIRESCO, "supplier", t("2025-01-01"), None),
        )
    assert intervals(world.engine, PPMID_1, "supplier") == []


def test_a_conflict_leaves_the_rest_of_the_transaction_unwritten(world: World) -> None:
    with pytest.raises(Conflict), world.engine.begin() as conn:
        load_responsibility(
            conn, Responsibility(PPMID_1, WIRESCO, "supplier", t("2025-01-01"), None)
        )
        load_responsibility(
            conn, Responsibility(PPMID_1, NORTHPOWER, "supplier", t("2025-02-01"), None)
        )
    assert intervals(world.engine, PPMID_1, "supplier") == []


# --- users and devices ------------------------------------------------------------------


def test_users(engine: Engine) -> None:
    uid = "90-B3-D5-1F-30-0A-00-01"
    with engine.begin() as conn:
        assert load_user(conn, User(uid, "ACME", "IS"), "Acme plc") is Outcome.LOADED
        assert load_user(conn, User(uid, "ACME", "IS"), "Acme plc") is Outcome.DUPLICATE
        assert (
            load_user(conn, User("90-B3-D5-1F-30-0A-00-02", "ACME", "GS"), "Acme plc")
            is Outcome.LOADED
        )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(party)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(dcc_user)).scalar_one() == 2


@pytest.mark.parametrize(
    "other",
    [
        User("90-B3-D5-1F-30-0A-00-01", "OTHERCO", "IS"),
        User("90-B3-D5-1F-30-0A-00-01", "ACME", "ED"),
    ],
)
def test_a_user_id_held_by_another_party_or_role_is_a_conflict(engine: Engine, other: User) -> None:
    with engine.begin() as conn:
        load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "ACME", "IS"), "Acme plc")
    with pytest.raises(Conflict, match="already registered to ACME as IS"), engine.begin() as conn:
        load_user(conn, other, "Whoever")
    with engine.connect() as conn:
        assert tuple(conn.execute(select(dcc_user.c.party_id, dcc_user.c.role)).one()) == (
            "ACME",
            "IS",
        )
        assert conn.execute(select(party.c.party_id)).scalars().all() == ["ACME"]


def test_a_renamed_party_takes_the_latest_name(engine: Engine) -> None:
    with engine.begin() as conn:
        load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "ACME", "IS"), "Acme plc")
        assert (
            load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "ACME", "IS"), "Acme Energy")
            is Outcome.CORRECTED
        )
        assert conn.execute(select(party.c.name)).scalar_one() == "Acme Energy"
        assert (
            load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "ACME", "IS"), "Acme Energy")
            is Outcome.DUPLICATE
        )


def test_devices(engine: Engine) -> None:
    meter = Device("00-DB-12-34-56-78-90-A1", "ESME", 1)
    with engine.begin() as conn:
        assert load_device(conn, meter) is Outcome.LOADED
        assert load_device(conn, meter) is Outcome.DUPLICATE
    for other in (replace(meter, smets=2), replace(meter, device_type="GSME")):
        with (
            pytest.raises(Conflict, match="already registered as ESME SMETS1"),
            engine.begin() as conn,
        ):
            load_device(conn, other)
    with engine.connect() as conn:
        assert tuple(conn.execute(select(device.c.device_type, device.c.smets)).one()) == (
            "ESME",
            1,
        )
