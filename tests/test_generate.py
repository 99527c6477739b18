"""The data generator (servicetrail.generate) and the demo (servicetrail.demo)."""
from __future__ import annotations

import re
import statistics
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from servicetrail.demo import DEMO_PASSWORD, build_demo, demo_logins
from servicetrail.domain.catalogue import CATALOGUE
from servicetrail.domain.model import DEVICE_TYPES, KNOWN_ROLES, Responsibility, role_behaviour
from servicetrail.domain.records import FIELDS, record_from_mapping
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Access, Viewer, decide
from servicetrail.generate import (
    DCC_ID, FUTURE_ROLE, SHOWCASE_DEVICE_ID, World, device_rows, duis_jsonl_lines, load_into, messages,
    population, records, responsibility_rows, sat_jsonl_lines, user_rows, write_duis_jsonl, write_registry,
    write_sat_jsonl,
)
from servicetrail.ingest import registry_csv
from servicetrail.ingest.duis import parse_document
from servicetrail.ingest.load import ingest, load_registry
from servicetrail.store.accounts import check_login
from servicetrail.store.schema import device, responsibility, sat_record

UTC = timezone.utc
EUI64_UPPER = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$")
SMALL = World(n_records=6_000, n_devices=600, n_parties=40, seed=11)


@pytest.fixture(scope="module")
def small_lines() -> list[bytes]:
    return list(sat_jsonl_lines(SMALL))


@pytest.fixture(scope="module")
def small_records(small_lines: list[bytes]):
    return [record_from_mapping(orjson.loads(line)) for line in small_lines]


def _registry(world: World) -> dict[tuple[str, str], list[Responsibility]]:
    by_key: dict[tuple[str, str], list[Responsibility]] = defaultdict(list)
    for r in population(world).responsibilities():
        by_key[(r.device_id, r.relation)].append(r)
    return {k: sorted(v, key=lambda r: r.valid_from) for k, v in by_key.items()}


def _holder(intervals: list[Responsibility], at: datetime) -> str | None:
    return next((r.party_id for r in intervals if r.covers(at)), None)


# ------------------------------------------------------------------ reproducibility

def test_same_seed_gives_the_same_world_and_another_seed_another() -> None:
    def everything(world: World) -> tuple:
        population.cache_clear()  # rebuild the registry too, not just replay the cached one
        return (list(user_rows(world)), list(device_rows(world)), list(responsibility_rows(world)),
                list(sat_jsonl_lines(world)), list(duis_jsonl_lines(world)))

    world = World(n_records=2_000, n_devices=150, n_parties=20, seed=5)
    first, again = everything(world), everything(World(n_records=2_000, n_devices=150, n_parties=20, seed=5))
    other = everything(World(n_records=2_000, n_devices=150, n_parties=20, seed=6))
    assert first == again
    assert len(first[3]) == 2_000
    for mine, theirs in zip(first, other):
        assert mine != theirs


# ------------------------------------------------------------------ the registry

def test_responsibility_intervals_never_overlap_and_change_over_time() -> None:
    world = World(n_records=100, n_devices=4_000, seed=3)
    registry = _registry(world)
    changes = Counter()
    for (device_id, relation), intervals in registry.items():
        for earlier, later in zip(intervals, intervals[1:]):
            assert earlier.valid_to is not None, f"{device_id} {relation}: an open interval has a successor"
            assert earlier.valid_to <= later.valid_from, f"{device_id} {relation} overlaps"
            assert not earlier.overlaps(later)
            if world.start <= later.valid_from < world.end and earlier.party_id != later.party_id:
                changes[relation] += 1
            if earlier.valid_to < later.valid_from:
                changes[f"{relation} gap"] += 1
        if intervals[-1].valid_to is None:
            changes[f"{relation} open"] += 1
        else:
            changes[f"{relation} closed"] += 1
    assert changes["supplier"] > 50 and changes["network_operator"] > 5, changes
    assert changes["supplier gap"] > 5 and changes["network_operator gap"] > 0, changes
    assert changes["supplier open"] > 1000 and changes["supplier closed"] > 0, changes
    devices = {d.device_id for d in population(world).devices}
    assert {d for d, relation in registry if relation == "supplier"} == devices  # every Device has a supplier


@pytest.mark.parametrize("world", [World(n_records=50, n_devices=18, n_parties=9, seed=1),
                                   World(n_records=50, n_devices=2_000, seed=2)], ids=["smallest", "default"])
def test_every_role_device_type_and_smets_generation_is_present(world: World) -> None:
    pop = population(world)
    assert len(pop.parties) == world.n_parties
    assert len(pop.devices) == world.devices
    roles = Counter(u.role for u in pop.users)
    assert set(roles) == set(KNOWN_ROLES) | {FUTURE_ROLE}
    assert any(len(p.roles) > 1 for p in pop.parties)  # some Parties hold several roles
    assert any(len(ids) > 1 for p in pop.parties for ids in p.roles.values())  # and several User IDs
    user_ids = [u.user_id for u in pop.users]
    assert len(set(user_ids)) == len(user_ids)
    assert all(EUI64_UPPER.match(u) and u.startswith("90-B3-D5-1F-30-") for u in user_ids)
    device_ids = [d.device_id for d in pop.devices]
    assert len(set(device_ids)) == len(device_ids) and all(EUI64_UPPER.match(d) for d in device_ids)
    assert not set(device_ids) & set(user_ids)
    assert {(d.device_type, d.smets) for d in pop.devices} == {(t, s) for t in DEVICE_TYPES for s in (1, 2)}


def test_registry_rows_are_what_the_registry_loaders_accept() -> None:
    world = World(n_records=10, n_devices=300, n_parties=30, seed=4)
    header = dict(zip(("users", "devices", "responsibilities"), (
        registry_csv.USERS.columns, registry_csv.DEVICES.columns, registry_csv.RESPONSIBILITIES.columns)))
    for row in user_rows(world):
        user, name = registry_csv.parse_user(dict(zip(header["users"], row)))
        assert user.role == row[3] and name == row[2]
    for row in device_rows(world):
        registry_csv.parse_device(dict(zip(header["devices"], row)))
    parsed = [registry_csv.parse_responsibility(dict(zip(header["responsibilities"], row)))
              for row in responsibility_rows(world)]
    assert parsed == list(population(world).responsibilities())


# ------------------------------------------------------------------ the SAT records

def test_every_sat_line_validates_with_the_keys_of_spec_section_4(small_lines: list[bytes]) -> None:
    assert len(small_lines) == SMALL.n_records
    for line in small_lines:
        raw = orjson.loads(line)
        assert tuple(raw) == FIELDS
        record_from_mapping(raw)


def test_the_trail_has_every_kind_error_and_time_order(small_records) -> None:
    kinds = Counter(r.kind for r in small_records)
    assert set(kinds) == {"request", "acknowledgement", "response", "device_alert", "dcc_alert"}
    codes = Counter(r.response_code for r in small_records if r.kind == "response")
    assert codes["I0"] > 0.8 * sum(codes.values())
    for code in ("E4", "E20", "E21"):
        assert codes[code] > 0, codes
    assert all(a.logged_at <= b.logged_at for a, b in zip(small_records, small_records[1:]))
    assert SMALL.start <= small_records[0].logged_at and small_records[-1].logged_at < SMALL.end
    # the traffic is spread over the whole World, not bunched at one end
    assert small_records[len(small_records) // 2].logged_at - SMALL.start > (SMALL.end - SMALL.start) / 3


def test_exchanges_payloads_and_non_device_requests(small_records) -> None:
    requests = {r.request_id: r for r in small_records if r.kind == "request"}
    for r in small_records:
        if r.kind == "request":
            assert 500 <= len(r.payload) <= 3000 and "<sr:Request " in r.payload
            assert r.response_code == ""
        elif r.kind == "acknowledgement":
            request = requests[r.request_id]
            assert r.response_code == "I99" and r.payload == ""
            assert r.logged_at - request.logged_at == timedelta(seconds=1)
            assert (r.srv, r.user_id, r.device_id) == (request.srv, request.user_id, request.device_id)
        elif r.kind == "response":
            request = requests[r.request_id]
            assert r.logged_at > request.logged_at + timedelta(seconds=1)
            assert (r.srv, r.user_id, r.device_id) == (request.srv, request.user_id, request.device_id)
            if r.response_code == "I0" and r.device_id:
                assert "GBCSPayload>" in r.payload or "SMETS1ResponseMessage" in r.payload
    non_device = [r for r in requests.values() if CATALOGUE[r.srv].non_device]
    assert non_device and all(r.device_id == "" and r.request_id.split(":")[1] == DCC_ID for r in non_device)
    assert all(r.device_id and r.request_id.split(":")[1] == r.device_id
               for r in requests.values() if not CATALOGUE[r.srv].non_device)


def test_requests_come_from_eligible_roles_including_users_not_responsible(small_records) -> None:
    pop = population(SMALL)
    role_of = {u.user_id: u for u in pop.users}
    type_of = {d.device_id: d.device_type for d in pop.devices}
    registry = _registry(SMALL)
    senders = Counter()
    for r in small_records:
        if r.kind != "request":
            continue
        user, srv = role_of[r.user_id], CATALOGUE[r.srv]
        assert role_behaviour(user.role) in srv.eligible_roles, (r.srv, user.role)
        if not r.device_id:
            continue
        targets = srv.target_device_types
        assert not targets or type_of[r.device_id] in targets or "ZigBee Device" in targets, (r.srv, targets)
        supplier = _holder(registry.get((r.device_id, "supplier"), []), r.logged_at)
        if user.party_id != supplier:
            senders[user.role] += 1
    # MP141 matters: other Users of every kind send requests to Devices they are not the supplier of
    assert {"OU", "RSA", "ED", "GT", "ES", FUTURE_ROLE, "IS", "GS"} <= set(senders), senders


def test_alerts_go_to_the_responsible_supplier_and_dcc_alerts_carry_no_device(small_records) -> None:
    pop = population(SMALL)
    role_of = {u.user_id: u for u in pop.users}
    registry = _registry(SMALL)
    device_alerts = [r for r in small_records if r.kind == "device_alert"]
    dcc_alerts = [r for r in small_records if r.kind == "dcc_alert"]
    assert device_alerts and dcc_alerts
    for r in device_alerts:
        device_id, user_id, counter = r.request_id.split(":")
        assert (device_id, user_id) == (r.device_id, r.user_id) and counter.isdigit() and r.srv == ""
        assert role_of[r.user_id].party_id == _holder(registry[(r.device_id, "supplier")], r.logged_at)
    for r in dcc_alerts:
        assert r.device_id == "" and r.srv == "" and r.request_id.startswith(DCC_ID + ":" + r.user_id + ":")


def test_activity_is_skewed(small_records) -> None:
    per_device = Counter(r.device_id for r in small_records if r.device_id)
    counts = sorted(per_device.values())
    assert counts[-1] > 20 * statistics.median(counts), counts[-5:]
    assert len(per_device) > 0.5 * SMALL.devices  # most Devices are quiet, not silent


def test_duis_capture_parses_back_to_the_same_records(small_lines: list[bytes]) -> None:
    duis_lines = list(duis_jsonl_lines(SMALL))
    assert len(duis_lines) == len(small_lines)
    kinds = Counter()
    for sat_line, duis_line in zip(small_lines, duis_lines):
        sat = record_from_mapping(orjson.loads(sat_line))
        entry = orjson.loads(duis_line)
        assert set(entry) == {"logged_at", "duis"}
        parsed = parse_document(entry["duis"].encode("utf-8"), parse_time(entry["logged_at"]))
        key = ("request_id", "kind", "srv", "user_id", "device_id", "logged_at", "response_code")
        assert tuple(getattr(parsed, k) for k in key) == tuple(getattr(sat, k) for k in key)
        if sat.kind != "acknowledgement":
            assert parsed.payload == sat.payload
        kinds[parsed.kind] += 1
    assert len(kinds) == 5


def test_files_written_load_through_the_ingest_paths(tmp_path: Path, engine) -> None:
    world = World(n_records=1_500, n_devices=120, n_parties=15, seed=8)
    files = write_registry(world, tmp_path)
    for name, what in (("users.csv", registry_csv.USERS), ("devices.csv", registry_csv.DEVICES),
                       ("responsibilities.csv", registry_csv.RESPONSIBILITIES)):
        summary = load_registry(engine, what, files[name], tmp_path / f"{name}.rejects.jsonl")
        assert summary.rejected == 0 and summary.loaded > 0, (name, summary.line())
    assert write_sat_jsonl(world, tmp_path / "sat.jsonl") == 1_500
    assert write_duis_jsonl(world, tmp_path / "duis.jsonl") == 1_500
    sat = ingest(engine, [tmp_path / "sat.jsonl"])
    assert (sat.loaded, sat.rejected) == (1_500, 0)
    duis = ingest(engine, [tmp_path / "duis.jsonl"])  # the same messages: nothing new
    assert (duis.loaded, duis.rejected, duis.duplicates) == (0, 0, 1_500)


# ------------------------------------------------------------------ streaming

def test_the_stream_is_lazy_and_constant_in_memory() -> None:
    huge = World(n_records=10_000_000, n_devices=2_000, seed=9)
    began = time.perf_counter()
    first = list(islice(sat_jsonl_lines(huge), 10)) + list(islice(records(huge), 10))
    assert len(first) == 20 and time.perf_counter() - began < 2.0
    next(messages(huge))  # builds the registry and the tables once; the stream must then hold ~nothing
    tracemalloc.start()
    try:
        payload_bytes = sum(len(m[8]) for m in islice(messages(huge), 40_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert payload_bytes > 40_000_000
    assert peak < 5_000_000, f"peak {peak:,} bytes while streaming {payload_bytes:,}"


def test_sat_jsonl_generation_is_fast() -> None:
    world = World(n_records=100_000, n_devices=5_000, seed=10)
    began = time.perf_counter()
    count = sum(1 for _ in sat_jsonl_lines(world))
    elapsed = time.perf_counter() - began
    assert count == 100_000
    assert elapsed < 10, f"{count / elapsed:,.0f} records/s"  # about 1 s on a laptop


# ------------------------------------------------------------------ the showcase and the demo

def test_the_showcase_device_tells_the_mp141_story() -> None:
    world = World(n_records=20_000, n_devices=800, seed=12)
    show = population(world).showcase
    assert show is not None and show.device_id == SHOWCASE_DEVICE_ID
    suppliers = _registry(world)[(SHOWCASE_DEVICE_ID, "supplier")]
    assert [(r.party_id, r.valid_to) for r in suppliers] == [
        (show.old_supplier, show.change_of_supplier), (show.new_supplier, None)]
    assert world.start < show.change_of_supplier < world.end
    trail = [r for r in records(world) if r.device_id == SHOWCASE_DEVICE_ID]
    party_of = {u.user_id: u.party_id for u in population(world).users}
    senders = {party_of[r.user_id] for r in trail if r.kind == "request"}
    assert {show.old_supplier, show.new_supplier, show.network_operator, show.other_user, show.agent,
            show.future_role_party} <= senders
    assert any(r.kind == "device_alert" for r in trail)
    refused = [r for r in trail if r.response_code == "E4" and party_of[r.user_id] == show.old_supplier]
    assert any(r.logged_at > show.change_of_supplier for r in refused)

    intervals = [r for k, v in _registry(world).items() if k[0] == SHOWCASE_DEVICE_ID for r in v]

    def viewer(party_id: str) -> Viewer:
        return Viewer(party_id, frozenset(u for u, p in party_of.items() if p == party_id))

    old, new = viewer(show.old_supplier), viewer(show.new_supplier)
    by_other_user = [r for r in trail if party_of[r.user_id] == show.other_user and r.kind == "request"]
    before = [r for r in by_other_user if r.logged_at < show.change_of_supplier]
    after = [r for r in by_other_user if r.logged_at >= show.change_of_supplier]
    assert before and after
    assert all(decide(old, r, intervals).access is Access.MP141 for r in before)
    assert all(not decide(new, r, intervals).visible for r in before)
    assert all(decide(new, r, intervals).access is Access.MP141 for r in after)
    assert all(not decide(old, r, intervals).visible for r in after)


def test_build_demo_loads_a_realistic_store_and_working_logins(engine) -> None:
    began = time.perf_counter()
    logins = build_demo(engine, end=datetime(2026, 6, 1, tzinfo=UTC))
    elapsed = time.perf_counter() - began
    assert elapsed < 60, f"demo build took {elapsed:.1f} s"  # about 5 s on an idle laptop
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() >= 50_000
        kinds = set(conn.execute(select(sat_record.c.kind).distinct()).scalars())
        assert kinds == {"request", "acknowledgement", "response", "device_alert", "dcc_alert"}
        assert conn.execute(select(func.count()).select_from(sat_record)
                            .where(sat_record.c.response_code == "E4")).scalar() > 0
        assert conn.execute(select(device.c.device_id)
                            .where(device.c.device_id == logins.showcase_device_id)).first()
        assert conn.execute(select(func.count()).select_from(sat_record)
                            .where(sat_record.c.device_id == logins.showcase_device_id)).scalar() > 50
        assert conn.execute(select(func.count()).select_from(responsibility)).scalar() > 1000
        for login in logins:
            assert len(login.password) >= 12 and login.password == DEMO_PASSWORD
            assert check_login(conn, login.username, login.password) == login.party_id
            assert login.description and "\n" not in login.description
        assert check_login(conn, logins[0].username, "not-the-demo-password") is None
    pop = population(logins.world)
    roles_of = {p.party_id: set(p.roles) for p in pop.parties}
    featured = set().union(*(roles_of[login.party_id] for login in logins))
    assert {"IS", "ED", "OU", "RSA", FUTURE_ROLE} <= featured
    assert len({login.party_id for login in logins}) == len(logins)
    assert list(demo_logins(engine)) == list(logins)  # described again later, from the store
    again = build_demo(engine, end=datetime(2026, 6, 1, tzinfo=UTC))  # idempotent
    assert again.loaded.records == 0 and [login.username for login in again] == [l.username for l in logins]


def test_load_into_writes_the_whole_world_once(engine) -> None:
    world = World(n_records=8_000, n_devices=300, n_parties=20, seed=13)
    pop = population(world)
    counts = load_into(engine, world, batch=5_000)
    assert (counts.users, counts.devices, counts.records, counts.duplicates) == (
        len(pop.users), len(pop.devices), 8_000, 0)
    assert counts.responsibilities == sum(1 for _ in pop.responsibilities())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() == 8_000
    again = load_into(engine, world)
    assert (again.users, again.devices, again.responsibilities, again.records, again.duplicates) == (
        0, 0, 0, 0, 8_000)
