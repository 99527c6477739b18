"""The data generator (servicetrail.generate) and the demo (servicetrail.demo)."""

from __future__ import annotations

import random
import re
import statistics
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from lxml import etree
from sqlalchemy import func, select

from servicetrail.demo import DEMO_PASSWORD, build_demo, demo_logins
from servicetrail.domain.catalogue import CATALOGUE
from servicetrail.domain.model import DEVICE_TYPES, KNOWN_ROLES, Responsibility, role_behaviour
from servicetrail.domain.records import FIELDS, record_from_mapping
from servicetrail.domain.search import Search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Access, Viewer, decide
from servicetrail.generate import (
    DCC_ID,
    FUTURE_ROLE,
    SHOWCASE_DEVICE_ID,
    World,
    device_rows,
    duis_jsonl_lines,
    load_into,
    messages,
    population,
    records,
    responsibility_rows,
    sat_jsonl_lines,
    user_rows,
    write_duis_jsonl,
    write_registry,
    write_sat_jsonl,
)
from servicetrail.generate.documents import CANCEL, DCC_ALERTS, _Documents
from servicetrail.generate.duis_bodies import ALWAYS_DATED
from servicetrail.ingest import registry_csv
from servicetrail.ingest.duis import parse_document
from servicetrail.ingest.registry_load import load_registry
from servicetrail.ingest.trail_load import ingest
from servicetrail.store.accounts import verified_password_hash
from servicetrail.store.engine import open_store
from servicetrail.store.queries import iter_search, viewer_for
from servicetrail.store.schema import account, device, responsibility, sat_record

from tests.conftest import DUIS_SCHEMA, FIXTURES, SHARED_DUIS_SAMPLES, beside_the_checkout

UTC = timezone.utc
EUI64_UPPER = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$")
SMALL = World(n_records=6_000, n_devices=600, n_parties=40, seed=11)


@pytest.fixture(scope="module")
def small_lines() -> list[bytes]:
    return list(sat_jsonl_lines(SMALL))


@pytest.fixture(scope="module")
def small_duis() -> list[bytes]:
    return list(duis_jsonl_lines(SMALL))


@pytest.fixture(scope="module")
def small_records(small_lines: list[bytes]) -> list[SimpleNamespace]:
    """The SAT lines as they were written (validating them is another test's business)."""
    return [
        SimpleNamespace(
            **{**(raw := orjson.loads(line)), "logged_at": parse_time(raw["logged_at"])}
        )
        for line in small_lines
    ]


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
        return (
            list(user_rows(world)),
            list(device_rows(world)),
            list(responsibility_rows(world)),
            list(sat_jsonl_lines(world)),
            list(duis_jsonl_lines(world)),
        )

    world = World(n_records=2_000, n_devices=150, n_parties=20, seed=5)
    first, again = (
        everything(world),
        everything(World(n_records=2_000, n_devices=150, n_parties=20, seed=5)),
    )
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
            assert earlier.valid_to is not None, (
                f"{device_id} {relation}: an open interval has a successor"
            )
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
    assert {
        d for d, relation in registry if relation == "supplier"
    } == devices  # every Device has a supplier


@pytest.mark.parametrize(
    "world",
    [
        World(n_records=50, n_devices=18, n_parties=9, seed=1),
        World(n_records=50, n_devices=2_000, seed=2),
    ],
    ids=["smallest", "default"],
)
def test_every_role_device_type_and_smets_generation_is_present(world: World) -> None:
    pop = population(world)
    assert len(pop.parties) == world.n_parties
    assert len(pop.devices) == world.devices
    roles = Counter(u.role for u in pop.users)
    assert set(roles) == set(KNOWN_ROLES) | {FUTURE_ROLE}
    assert any(len(p.roles) > 1 for p in pop.parties)  # some Parties hold several roles
    assert any(
        len(ids) > 1 for p in pop.parties for ids in p.roles.values()
    )  # and several User IDs
    user_ids = [u.user_id for u in pop.users]
    assert len(set(user_ids)) == len(user_ids)
    assert all(EUI64_UPPER.match(u) and u.startswith("90-B3-D5-1F-30-") for u in user_ids)
    device_ids = [d.device_id for d in pop.devices]
    assert len(set(device_ids)) == len(device_ids) and all(EUI64_UPPER.match(d) for d in device_ids)
    assert not set(device_ids) & set(user_ids)
    assert {(d.device_type, d.smets) for d in pop.devices} == {
        (t, s) for t in DEVICE_TYPES for s in (1, 2)
    }


def test_registry_rows_are_what_the_registry_loaders_accept() -> None:
    world = World(n_records=10, n_devices=300, n_parties=30, seed=4)
    header = dict(
        zip(
            ("users", "devices", "responsibilities"),
            (
                registry_csv.USERS.columns,
                registry_csv.DEVICES.columns,
                registry_csv.RESPONSIBILITIES.columns,
            ),
        )
    )
    for row in user_rows(world):
        user, name = registry_csv.parse_user(dict(zip(header["users"], row)))
        assert user.role == row[3] and name == row[2]
    for row in device_rows(world):
        registry_csv.parse_device(dict(zip(header["devices"], row)))
    parsed = [
        registry_csv.parse_responsibility(dict(zip(header["responsibilities"], row)))
        for row in responsibility_rows(world)
    ]
    assert parsed == list(population(world).responsibilities())


# ------------------------------------------------------------------ the SAT records


def test_every_sat_line_validates_with_the_keys_of_spec_section_4(small_lines: list[bytes]) -> None:
    assert len(small_lines) == SMALL.n_records
    for line in small_lines:
        raw = orjson.loads(line)
        assert tuple(raw) == (*FIELDS, "command_variant")
        assert (
            raw["command_variant"] in range(1, 9)
            if raw["kind"] == "request"
            else raw["command_variant"] is None
        )
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
    assert (
        small_records[len(small_records) // 2].logged_at - SMALL.start
        > (SMALL.end - SMALL.start) / 3
    )


def test_exchanges_payloads_and_non_device_requests(small_records) -> None:
    requests = defaultdict(
        list
    )  # a critical request is sent twice: pre-command, then signed command
    for r in small_records:
        if r.kind == "request":
            assert 500 <= len(r.payload) <= 6000 and "<sr:Request " in r.payload
            assert r.response_code == ""
            requests[r.request_id].append(r)
        elif r.kind == "acknowledgement":
            request = requests[r.request_id][-1]
            assert r.response_code == "I99" and r.payload == ""
            assert r.logged_at - request.logged_at == timedelta(seconds=1)
            assert request.command_variant in (
                1,
                5,
            )  # asynchronous: the others are answered at once
            assert (r.srv, r.user_id, r.device_id) == (
                request.srv,
                request.user_id,
                request.device_id,
            )
        elif r.kind == "response" and r.request_id:
            request = requests[r.request_id][-1]
            assert r.logged_at > request.logged_at
            assert (r.srv, r.user_id, r.device_id) == (
                request.srv,
                request.user_id,
                request.device_id,
            )
            if r.response_code == "I0" and r.device_id and request.command_variant != 4:
                assert "GBCSPayload>" in r.payload or "SMETS1ResponseMessage" in r.payload
    non_device = [r for sent in requests.values() for r in sent if CATALOGUE[r.srv].non_device]
    assert non_device and all(
        r.device_id == "" and r.request_id.split(":")[1] == DCC_ID for r in non_device
    )
    assert all(
        r.device_id and r.request_id.split(":")[1] == r.device_id
        for sent in requests.values()
        for r in sent
        if not CATALOGUE[r.srv].non_device
    )


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
        assert not targets or type_of[r.device_id] in targets or "ZigBee Device" in targets, (
            r.srv,
            targets,
        )
        supplier = _holder(registry.get((r.device_id, "supplier"), []), r.logged_at)
        if user.party_id != supplier:
            senders[user.role] += 1
    # MP141 matters: other Users of every kind send requests to Devices they are not the supplier of
    assert {"OU", "RSA", "ED", "GT", "ES", FUTURE_ROLE, "IS", "GS"} <= set(senders), senders


def test_alerts_go_to_the_responsible_supplier_or_the_commands_sender(small_records) -> None:
    pop = population(SMALL)
    role_of = {u.user_id: u for u in pop.users}
    registry = _registry(SMALL)
    commands = {r.request_id: r for r in small_records if r.kind == "request"}
    device_alerts = [r for r in small_records if r.kind == "device_alert"]
    dcc_alerts = [r for r in small_records if r.kind == "dcc_alert"]
    assert device_alerts and dcc_alerts
    for r in device_alerts:
        if r.srv:  # a future-dated command's outcome: it answers that command
            command = commands[r.request_id]
            assert (r.srv, r.user_id, r.device_id) == (
                command.srv,
                command.user_id,
                command.device_id,
            )
            assert r.response_code in ("8F66", "8F67")
            continue
        device_id, user_id, counter = r.request_id.split(":")
        assert (device_id, user_id) == (r.device_id, r.user_id) and counter.isdigit()
        assert re.fullmatch(r"8F[0-9A-F]{2}", r.response_code)
        assert role_of[r.user_id].party_id == _holder(
            registry[(r.device_id, "supplier")], r.logged_at
        )
    naming = [r for r in dcc_alerts if r.device_id]
    assert naming and len(naming) < len(dcc_alerts)  # most name a Device, some do not
    for r in dcc_alerts:
        assert r.srv == "" and r.request_id.startswith(DCC_ID + ":" + r.user_id + ":")
        assert re.fullmatch(r"AD1|N\d+", r.response_code)
        if (
            r.device_id
        ):  # to whoever answers for that Device: its network operator for a power outage
            relation = "network_operator" if r.response_code == "AD1" else "supplier"
            assert role_of[r.user_id].party_id == _holder(
                registry[(r.device_id, relation)], r.logged_at
            )


def test_activity_is_skewed(small_records) -> None:
    per_device = Counter(r.device_id for r in small_records if r.device_id)
    counts = sorted(per_device.values())
    assert counts[-1] > 20 * statistics.median(counts), counts[-5:]
    assert len(per_device) > 0.5 * SMALL.devices  # most Devices are quiet, not silent


# ------------------------------------------------------ DUIS: valid, and what the DCC sends

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
RA = "{http://www.dccinterface.co.uk/ResponseAndAlert}"


def _element(root: etree._Element, local_name: str) -> etree._Element | None:
    return next(root.iter(SR + local_name), None)


def _as_spec_41_says(document: str, logged_at: str) -> dict:
    """The SAT record SPEC section 4.1 makes of a DUIS document, read here straight from the XML
    (the test's own reading of the table, so that it checks the generator without the parser)."""
    root = etree.fromstring(document.encode())
    header = root.find(SR + "Header")
    rid, response_id = (
        header.findtext(SR + "RequestID") or "",
        header.findtext(SR + "ResponseID") or "",
    )
    if root.tag == SR + "Request":
        originator, target, _ = rid.split(":")
        srv = header.findtext(SR + "ServiceReferenceVariant")
        return {
            "logged_at": logged_at,
            "kind": "request",
            "request_id": rid,
            "srv": srv,
            "user_id": originator,
            "device_id": "" if CATALOGUE[srv].non_device else target,
            "response_code": "",
            "command_variant": int(header.findtext(SR + "CommandVariant")),
        }
    sent_by, sent_to = response_id.split(":")[:2] if response_id else ("", "")
    requester, target = rid.split(":")[:2] if rid else ("", "")
    code = header.findtext(SR + "ResponseCode")
    message = root.find(SR + "Body")[0]
    name = etree.QName(message).localname
    srv = message.findtext(SR + "ServiceReferenceVariant") or ""
    record = {
        "logged_at": header.findtext(SR + "ResponseDateTime"),
        "srv": srv,
        "command_variant": None,
    }
    alert = {"request_id": response_id, "user_id": sent_to, "srv": ""}
    if name == "DeviceAlertMessage":
        record |= alert | {
            "kind": "device_alert",
            "device_id": sent_by,
            "response_code": message.findtext(SR + "AlertCode"),
        }
    elif name == "DCCAlertMessage":
        named = next(
            (
                e.text
                for e in message.find(SR + "DCCAlert").iter()
                if str(e.tag).endswith("DeviceID")
            ),
            "",
        )
        record |= alert | {
            "kind": "dcc_alert",
            "device_id": named,
            "response_code": message.findtext(SR + "DCCAlertCode"),
        }
    elif name == "SMETS1ResponseMessage" and _element(message, "DeviceAlertMessage") is not None:
        inner = _element(message, "SMETS1Response").find(SR + "Header")
        record |= alert | {
            "kind": "device_alert",
            "device_id": inner.findtext(RA + "BusinessOriginatorID"),
            "response_code": inner.findtext(RA + "GBCSHexadecimalMessageCode"),
        }
    elif _element(message, "FutureDatedDeviceAlertMessage") is not None:
        record |= {
            "kind": "device_alert",
            "request_id": rid,
            "user_id": sent_to,
            "device_id": target,
            "response_code": _element(message, "FutureDatedAlertCode").text,
        }
    else:
        if name == "SMETS1ResponseMessage" and not srv:
            record["srv"] = (
                _element(message, "SMETS1Response")
                .find(SR + "Header")
                .findtext(RA + "ServiceReferenceVariant")
            )
        device = "" if CATALOGUE[record["srv"]].non_device else (target if rid else sent_by)
        record |= {
            "kind": "acknowledgement" if code == "I99" else "response",
            "request_id": rid,
            "user_id": requester if rid else sent_to,
            "device_id": device,
            "response_code": code,
        }
    return record


def test_every_generated_duis_document_is_valid_against_the_5_4_schema(
    small_duis, duis_schema
) -> None:
    invalid = []
    for line in small_duis:
        document = orjson.loads(line)["duis"]
        if not duis_schema.validate(etree.fromstring(document.encode())):
            invalid.append(f"{duis_schema.error_log.last_error.message}\n{document[:600]}")
    assert not invalid, f"{len(invalid)} of {len(small_duis)} invalid; the first:\n{invalid[0]}"
    # the schema held the document to something: an element out of place is refused
    broken = orjson.loads(small_duis[0])["duis"].replace("<sr:Header>", "<sr:Header><sr:Body/>", 1)
    assert not duis_schema.validate(etree.fromstring(broken.encode()))


def test_every_srv_is_schema_valid_in_every_shape_the_generator_makes(duis_schema) -> None:
    # a stream of a few thousand messages meets only some SRVs in each shape: this meets them all
    docs = _Documents(random.Random(1), random.Random(2).random)
    rid, at = "90-B3-D5-1F-30-01-00-00:00-DB-12-00-00-00-00-01:1001", "2025-03-04T05:06:07.890Z"
    response_id = "00-DB-12-00-00-00-00-01:90-B3-D5-1F-30-01-00-00:1001"
    device, user = response_id.split(":")[:2]
    invalid = []
    for s in CATALOGUE.values():
        documents = []
        for device_type in ("ESME", "GSME"):
            undated = () if s.srv in ALWAYS_DATED else ("",)
            for execution in (*undated, "2025-03-05T00:00:00.000Z", CANCEL):
                body = docs.body(
                    s.srv, device_type, "2025-03-04", execution, "" if not s.non_device else device
                )
                documents += [docs.request(rid, variant, s.srv, body) for variant in (1, 4, 8)]
                documents.append(docs.request(rid, 5, s.srv, docs.signed_pre_command(execution)))
        for message in (
            docs.titles_only(s.srv),
            docs.device_data(s.srv),
            docs.pre_command(s.srv),
            docs.scheduled_data(s.srv, 1001),
            docs.future_dated_outcome(s.srv, "8F66"),
            docs.smets1_data(s.srv, device, user, "1001", at),
            docs.smets1_data(s.srv, device, user, "1001", at, schedule_id=1001),
        ):
            documents += [
                docs.response(rid, response_id, "I0", at, message),
                docs.response("", response_id, "I0", at, message),
            ]
        for document in documents:
            if not duis_schema.validate(etree.fromstring(document.encode())):
                invalid.append(f"{s.srv}: {duis_schema.error_log.last_error.message}")
    alerts = [docs.dcc_alert(code, device, rid, at, 1001) for code in DCC_ALERTS]
    for message in (
        docs.device_alert("8F1C"),
        docs.smets1_device_alert(device, user, "1001", at, "8F1C"),
        *alerts,
    ):
        if not duis_schema.validate(
            etree.fromstring(docs.response("", response_id, "I0", at, message).encode())
        ):
            invalid.append(duis_schema.error_log.last_error.message)
    assert not invalid, invalid[:5]


# Fixtures that are invalid on purpose (file name: why); every other one must be valid.
DELIBERATELY_INVALID: dict[str, str] = {}


def test_the_repos_own_duis_fixtures_are_valid_against_the_5_4_schema(duis_schema) -> None:
    fixtures = [f for f in sorted(FIXTURES.rglob("*")) if f.suffix.lower() == ".xml"]
    assert len(fixtures) >= 10
    invalid = {}
    for path in fixtures:
        if path.name in DELIBERATELY_INVALID:
            continue
        if not duis_schema.validate(etree.parse(str(path))):
            invalid[str(path.relative_to(FIXTURES))] = duis_schema.error_log.last_error.message
    assert not invalid, (
        "invalid DUIS fixtures (list a deliberate one in DELIBERATELY_INVALID, with why): "
        f"{invalid}"
    )


def test_the_vendored_schema_is_the_shared_one() -> None:
    shared = beside_the_checkout(SHARED_DUIS_SAMPLES.parent / "schema")
    vendored = DUIS_SCHEMA.parent
    assert sorted(p.name for p in vendored.iterdir()) == sorted(p.name for p in shared.iterdir())
    for path in shared.iterdir():
        assert (vendored / path.name).read_bytes() == path.read_bytes(), path.name


def test_the_sat_lines_are_what_spec_4_1_makes_of_the_duis_capture(small_lines, small_duis) -> None:
    shapes = Counter()
    for sat_line, duis_line in zip(small_lines, small_duis, strict=True):
        sat, entry = orjson.loads(sat_line), orjson.loads(duis_line)
        assert entry["logged_at"] == sat["logged_at"]
        expected = _as_spec_41_says(entry["duis"], entry["logged_at"])
        assert {k: sat[k] for k in expected} == expected, entry["duis"][:1500]
        assert sat["payload"] == ("" if sat["kind"] == "acknowledgement" else entry["duis"])
        shapes[
            (sat["kind"], sat["command_variant"], bool(sat["request_id"]), bool(sat["device_id"]))
        ] += 1
        shapes["SMETS1 " + sat["kind"]] += "SMETS1ResponseMessage" in entry["duis"]
    for shape in (
        ("request", 1, True, True),
        ("request", 4, True, True),
        ("request", 5, True, True),
        ("request", 8, True, False),
        ("response", None, False, True),
        ("dcc_alert", None, True, True),
        ("dcc_alert", None, True, False),
        "SMETS1 response",
        "SMETS1 device_alert",
    ):
        assert shapes[shape] > 0, (shape, shapes)


def _requests(records) -> dict[str, list]:
    sent = defaultdict(list)
    for r in records:
        if r.kind == "request":
            sent[r.request_id].append(r)
    return sent


def test_critical_requests_are_a_pre_command_then_the_signed_command(small_records) -> None:
    by_request = defaultdict(list)
    for r in small_records:
        by_request[r.request_id].append(r)
    critical = signed = 0
    for exchange in by_request.values():
        requests = [r for r in exchange if r.kind == "request"]
        if not requests:
            continue
        srv = CATALOGUE[requests[0].srv]
        variants = [r.command_variant for r in requests]
        if srv.non_device:
            assert variants == [8] and not any(r.kind == "acknowledgement" for r in exchange)
        elif not srv.critical:
            assert variants == [1]
        else:
            critical += 1
            pre_command = requests[0]
            answer = next(r for r in exchange if r.kind == "response")
            assert (
                pre_command.command_variant == 4
                and "<sr:SignedPreCommand>" not in pre_command.payload
            )
            if answer.response_code != "I0":  # refused by the DCC: no command to sign
                assert variants == [4] and len(exchange) == 2
                continue
            signed += 1
            assert "<sr:PreCommand>" in answer.payload and variants == [4, 5]
            command = requests[1]
            assert command.logged_at > answer.logged_at > pre_command.logged_at
            assert "<sr:SignedPreCommand>" in command.payload
    assert critical > 20 and signed > 0.8 * critical


def _execution(request) -> str | None:
    found = _element(
        etree.fromstring(request.payload.encode()).find(SR + "Body"), "ExecutionDateTime"
    )
    return found.text if found is not None else None


def test_future_dated_commands_cancellations_and_their_outcomes(small_records) -> None:
    requests = _requests(small_records)
    future = {rid: sent[-1] for rid, sent in requests.items() if _execution(sent[-1])}
    cancellations = {rid for rid, r in future.items() if _execution(r) == "3000-12-31T00:00:00Z"}
    outcomes = [r for r in small_records if r.kind == "device_alert" and r.srv]
    assert len(future) > 10 and cancellations and len(outcomes) > 10
    for outcome in outcomes:
        command = future[outcome.request_id]  # the command it reports on, by its RequestID
        assert outcome.request_id not in cancellations
        assert outcome.logged_at >= parse_time(_execution(command)) > command.logged_at
        assert "<sr:FutureDatedDeviceAlertMessage>" in outcome.payload
    # an outcome for every command that fell due inside the World and was accepted
    responses = {r.request_id: r for r in small_records if r.kind == "response" and r.request_id}
    due = [
        rid
        for rid, r in future.items()
        if rid not in cancellations
        and responses[rid].response_code == "I0"
        and parse_time(_execution(r)) < small_records[-1].logged_at - timedelta(minutes=2)
    ]
    assert due and set(due) <= {o.request_id for o in outcomes}


def test_non_device_requests_name_a_device_in_their_body(small_records) -> None:
    known = {d.device_id for d in population(SMALL).devices}
    named = Counter()
    for r in small_records:
        if r.kind == "request" and r.srv in (
            "8.3",
            "8.4",
            "8.14.1",
            "8.14.2",
            "8.14.3",
            "8.14.4",
            "11.4",
            "12.2",
        ):
            body = etree.fromstring(r.payload.encode()).find(SR + "Body")
            first = next(
                e.text
                for e in body.iter()
                if re.fullmatch(r"[0-9A-F]{2}(-[0-9A-F]{2}){7}", e.text or "")
            )
            assert r.device_id == "" and (first in known) == (
                r.srv != "12.2"
            )  # 12.2 announces a new one
            named[r.srv] += 1
    assert len(named) >= 4, named


def test_responses_without_a_request_id_are_the_dccs_scheduled_reads(small_records) -> None:
    pop = population(SMALL)
    role_of = {u.user_id: u for u in pop.users}
    registry = _registry(SMALL)
    scheduled = [r for r in small_records if r.kind == "response" and not r.request_id]
    assert scheduled
    for r in scheduled:
        assert (
            r.srv in ("4.1.1", "4.6.1", "4.8.1", "4.17") and r.device_id and r.response_code == "I0"
        )
        assert "<sr:DSPScheduleID>" in r.payload
        assert role_of[r.user_id].party_id == _holder(
            registry[(r.device_id, "supplier")], r.logged_at
        )


def test_duis_capture_parses_back_to_the_same_records(small_lines: list[bytes], small_duis) -> None:
    assert len(small_duis) == len(small_lines)
    kinds = Counter()
    key = ("request_id", "kind", "srv", "user_id", "device_id", "response_code", "command_variant")
    for sat_line, duis_line in zip(small_lines, small_duis):
        sat = orjson.loads(sat_line)
        entry = orjson.loads(duis_line)
        assert set(entry) == {"logged_at", "duis"}
        parsed = parse_document(entry["duis"].encode("utf-8"), parse_time(entry["logged_at"]))
        assert {k: getattr(parsed, k, None) for k in key} == {k: sat[k] for k in key}, entry[
            "duis"
        ][:1500]
        assert parsed.logged_at == parse_time(sat["logged_at"])
        if sat["kind"] != "acknowledgement":
            assert parsed.payload == sat["payload"]
        kinds[parsed.kind] += 1
    assert len(kinds) == 5


@pytest.fixture
def another_engine(db_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A second empty store on the same engine as `engine`."""
    url = (
        f"sqlite:///{tmp_path / 'other.db'}"
        if db_url.startswith("sqlite")
        else request.getfixturevalue("pg_server").new_database(template="st_template")
    )
    built = open_store(url)
    yield built
    built.dispose()
    if not db_url.startswith("sqlite"):
        request.getfixturevalue("pg_server").drop_database(url)


def test_both_written_forms_load_through_the_ingest_paths_to_the_same_trail(
    tmp_path: Path, engine, another_engine
) -> None:
    # Loading one form and then the other into the same store no longer gives only duplicates: SPEC
    # section 4 identifies a DUIS response or alert by its ResponseID too, which SAT JSON Lines do
    # not
    # carry. So each form goes into its own store, and every Party must see the same trail in both.
    world = World(n_records=1_500, n_devices=120, n_parties=15, seed=8)
    files = write_registry(world, tmp_path)
    assert write_sat_jsonl(world, tmp_path / "sat.jsonl") == 1_500
    assert write_duis_jsonl(world, tmp_path / "duis.jsonl") == 1_500
    for store, form in ((engine, "sat.jsonl"), (another_engine, "duis.jsonl")):
        for name, what in (
            ("users.csv", registry_csv.USERS),
            ("devices.csv", registry_csv.DEVICES),
            ("responsibilities.csv", registry_csv.RESPONSIBILITIES),
        ):
            summary = load_registry(store, what, files[name], tmp_path / f"{name}.rejects.jsonl")
            assert summary.rejected == 0 and summary.loaded > 0, (name, summary.line())
        loaded = ingest(store, [tmp_path / form])
        assert (loaded.loaded, loaded.rejected) == (1_500, 0), (form, loaded.line())
        again = ingest(store, [tmp_path / form])
        assert (again.loaded, again.rejected, again.duplicates) == (0, 0, 1_500), form

    def trail(store, party_id: str) -> list[dict]:
        with store.connect() as conn:
            items = list(iter_search(conn, viewer_for(conn, party_id), Search()))
        for item in items:
            del item["id"]
            if item["kind"] == "acknowledgement":  # SAT JSON Lines keep no acknowledgement payload
                item.pop("payload", None)
            for kept_from_duis_only in (
                "execution_at",
                "subject_device_id",
            ):  # SPEC 4.1: not SAT JSON Lines keys
                item.pop(kept_from_duis_only, None)
        return items

    seen = 0
    for party in population(world).parties:
        from_sat = trail(engine, party.party_id)
        assert from_sat == trail(another_engine, party.party_id), party.party_id
        seen += len(from_sat)
    assert seen > 1_500  # MP141: records are seen by their senders and by the Devices' suppliers


# ------------------------------------------------------------------ streaming


def test_the_stream_is_lazy_and_constant_in_memory() -> None:
    huge = World(n_records=10_000_000, n_devices=2_000, seed=9)
    began = time.perf_counter()
    first = list(islice(sat_jsonl_lines(huge), 10)) + list(islice(records(huge), 10))
    assert len(first) == 20 and time.perf_counter() - began < 2.0
    next(
        messages(huge)
    )  # builds the registry and the tables once; the stream must then hold ~nothing
    tracemalloc.start()
    try:
        payload_bytes = sum(len(m[8]) for m in islice(messages(huge), 40_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert payload_bytes > 40_000_000
    assert peak < 5_000_000, f"peak {peak:,} bytes while streaming {payload_bytes:,}"


def test_sat_jsonl_generation_is_fast() -> None:
    """Timed as this process's CPU, not the wall: at a load average of 17 (other suites on a
    shared machine) the wall was 10.5 s and the test failed (session 51)."""
    world = World(n_records=100_000, n_devices=5_000, seed=10)
    began = time.process_time()
    count = sum(1 for _ in sat_jsonl_lines(world))
    elapsed = time.process_time() - began
    assert count == 100_000
    assert elapsed < 10, f"{count / elapsed:,.0f} records/s"  # about 1 s on a laptop


# ------------------------------------------------------------------ the showcase and the demo


def test_the_showcase_device_tells_the_mp141_story() -> None:
    world = World(n_records=20_000, n_devices=800, seed=12)
    show = population(world).showcase
    assert show is not None and show.device_id == SHOWCASE_DEVICE_ID
    suppliers = _registry(world)[(SHOWCASE_DEVICE_ID, "supplier")]
    assert [(r.party_id, r.valid_to) for r in suppliers] == [
        (show.old_supplier, show.change_of_supplier),
        (show.new_supplier, None),
    ]
    assert world.start < show.change_of_supplier < world.end
    trail = [r for r in records(world) if r.device_id == SHOWCASE_DEVICE_ID]
    party_of = {u.user_id: u.party_id for u in population(world).users}
    senders = {party_of[r.user_id] for r in trail if r.kind == "request"}
    assert {
        show.old_supplier,
        show.new_supplier,
        show.network_operator,
        show.other_user,
        show.agent,
        show.future_role_party,
    } <= senders
    assert any(r.kind == "device_alert" for r in trail)
    refused = [
        r for r in trail if r.response_code == "E4" and party_of[r.user_id] == show.old_supplier
    ]
    assert any(r.logged_at > show.change_of_supplier for r in refused)

    intervals = [r for k, v in _registry(world).items() if k[0] == SHOWCASE_DEVICE_ID for r in v]

    def viewer(party_id: str) -> Viewer:
        return Viewer(party_id, frozenset(u for u, p in party_of.items() if p == party_id))

    old, new = viewer(show.old_supplier), viewer(show.new_supplier)
    by_other_user = [
        r for r in trail if party_of[r.user_id] == show.other_user and r.kind == "request"
    ]
    before = [r for r in by_other_user if r.logged_at < show.change_of_supplier]
    after = [r for r in by_other_user if r.logged_at >= show.change_of_supplier]
    assert before and after
    assert all(decide(old, r, intervals).access is Access.MP141 for r in before)
    assert all(not decide(new, r, intervals).visible for r in before)
    assert all(decide(new, r, intervals).access is Access.MP141 for r in after)
    assert all(not decide(old, r, intervals).visible for r in after)


def test_build_demo_loads_a_realistic_store_and_working_logins(sqlite_url) -> None:
    """On SQLite, the demo's store (`make demo`); its loaders are the store's own, tested on
    both engines elsewhere (a second build on PostgreSQL cost the suite 11 s). The build is
    timed as this process's CPU, not the wall: SQLite works in this process, and at a load
    average of 8-17 the wall was 81 s and the test failed for the load alone (session 51)."""
    engine = open_store(sqlite_url)
    began = time.process_time()
    logins = build_demo(engine, end=datetime(2026, 6, 1, tzinfo=UTC))
    elapsed = time.process_time() - began
    assert elapsed < 60, f"demo build took {elapsed:.1f} s of CPU"  # about 5 s on a laptop
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() >= 50_000
        kinds = set(conn.execute(select(sat_record.c.kind).distinct()).scalars())
        assert kinds == {"request", "acknowledgement", "response", "device_alert", "dcc_alert"}
        assert (
            conn.execute(
                select(func.count())
                .select_from(sat_record)
                .where(sat_record.c.response_code == "E4")
            ).scalar()
            > 0
        )
        assert conn.execute(
            select(device.c.device_id).where(device.c.device_id == logins.showcase_device_id)
        ).first()
        assert (
            conn.execute(
                select(func.count())
                .select_from(sat_record)
                .where(sat_record.c.device_id == logins.showcase_device_id)
            ).scalar()
            > 50
        )
        assert conn.execute(select(func.count()).select_from(responsibility)).scalar() > 1000
        for login in logins:
            assert len(login.password) >= 12 and login.password == DEMO_PASSWORD
            assert verified_password_hash(conn, login.username, login.password) is not None
            party = conn.execute(
                select(account.c.party_id).where(account.c.username == login.username)
            ).scalar_one()
            assert party == login.party_id
            assert login.description and "\n" not in login.description
        assert verified_password_hash(conn, logins[0].username, "not-the-demo-password") is None
    pop = population(logins.world)
    roles_of = {p.party_id: set(p.roles) for p in pop.parties}
    featured = set().union(*(roles_of[login.party_id] for login in logins))
    assert {"IS", "ED", "OU", "RSA", FUTURE_ROLE} <= featured
    assert len({login.party_id for login in logins}) == len(logins)
    assert list(demo_logins(engine)) == list(logins)  # described again later, from the store
    engine.dispose()


def test_build_demo_again_on_its_store_adds_nothing(sqlite_url) -> None:
    """`make demo` run twice. On a World of 2,000 records: built again on the 50,000 of the
    test above, it cost that test 4.2 s of its 10 s of CPU, and what is skipped (the records
    stored, the accounts there) is skipped whatever their number."""
    engine = open_store(sqlite_url)
    end = datetime(2026, 6, 1, tzinfo=UTC)
    logins = build_demo(engine, records=2_000, end=end)
    assert logins.loaded is not None and logins.loaded.records == 2_000
    again = build_demo(engine, records=2_000, end=end)
    assert again.loaded is not None and again.loaded.records == 0
    assert [login.username for login in again] == [login.username for login in logins]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() == 2_000
        assert conn.execute(select(func.count()).select_from(account)).scalar() == len(logins)
    engine.dispose()


def test_load_into_writes_the_whole_world_once(engine) -> None:
    world = World(n_records=8_000, n_devices=300, n_parties=20, seed=13)
    pop = population(world)
    counts = load_into(engine, world, batch=5_000)
    assert (counts.users, counts.devices, counts.records, counts.duplicates) == (
        len(pop.users),
        len(pop.devices),
        8_000,
        0,
    )
    assert counts.responsibilities == sum(1 for _ in pop.responsibilities())
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() == 8_000
    again = load_into(engine, world)
    assert (
        again.users,
        again.devices,
        again.responsibilities,
        again.records,
        again.duplicates,
    ) == (0, 0, 0, 0, 8_000)
