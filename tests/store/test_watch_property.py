"""Watch events equal "the records P may see that match the filters", record for record.

Random worlds (those of test_visibility_property: Parties in any role, intervals meeting
records on their boundaries, all five kinds), random watches per Party, the traffic stored
in random chunks with the matcher run between them in random batch sizes, and a random
registry correction after matching. The oracle is `decide()` and the filters written out
here again, not `domain.watches`:

- an event exists for (watch, record) iff, under the registry when it was matched, the
  record was visible to the watch's Party and matched the filters;
- it is shown iff the record is still visible under the corrected registry (a correction
  that grants visibility makes no event, one that revokes it hides the event).
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from servicetrail.domain.catalogue import CATALOGUE
from servicetrail.domain.model import KINDS, Responsibility
from servicetrail.domain.visibility import Viewer, decide
from servicetrail.domain.watches import watch_spec
from servicetrail.store.schema import party as party_table
from servicetrail.store.queries import viewer_for
from servicetrail.store.watch_events import events_after
from servicetrail.store.watch_matcher import match_new_records
from servicetrail.store.watches import create_watch
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from tests.conftest import PER_EXAMPLE, StorePerExample
from tests.personas import record_ids
from tests.store.visibility_worlds import GRID, WorldSpec, device_id, worlds

CRITICAL = {srv for srv, row in CATALOGUE.items() if row.critical}


def watch_bodies(devices: int):
    return st.fixed_dictionaries(
        {"name": st.just("w")},
        optional={
            "devices": st.one_of(
                st.just("mine"),
                st.lists(
                    st.sampled_from([device_id(d) for d in range(devices)]), min_size=1, max_size=2
                ),
            ),
            "srvs": st.one_of(
                st.sampled_from(["all", "critical"]),
                st.lists(
                    st.sampled_from(["4.1.1", "8.2", "11.2", "6.15.1"]), min_size=1, max_size=2
                ),
            ),
            "kinds": st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True),
            "senders": st.sampled_from(["others", "all"]),
        },
    )


def wanted(body: dict, viewer: Viewer, record, registry: list[Responsibility]) -> bool:
    """The filters of SPEC section 6, written out for the oracle."""
    if record.kind not in body.get("kinds", ["request"]):
        return False
    if body.get("senders", "others") == "others" and record.user_id in viewer.user_ids:
        return False
    srvs = body.get("srvs", "all")
    if (
        srvs == "critical"
        and record.srv not in CRITICAL
        or isinstance(srvs, list)
        and record.srv not in srvs
    ):
        return False
    devices = body.get("devices", "mine")
    if devices == "mine":
        return any(
            r.device_id == record.device_id
            and r.party_id == viewer.party_id
            and r.covers(record.logged_at)
            for r in registry
        )
    return record.device_id in devices


@st.composite
def scenarios(draw):
    spec: WorldSpec = draw(worlds())
    watches = [
        (party, draw(watch_bodies(len(spec.devices))))
        for party in spec.parties
        for _ in range(draw(st.integers(0, 3)))
    ]
    cuts = sorted(draw(st.lists(st.integers(0, len(spec.records)), max_size=3)))
    batch = draw(st.integers(1, 7))
    correction = None
    if spec.registry and draw(st.booleans()):
        held = draw(st.sampled_from(spec.registry))
        # the same interval, ended earlier or later, or given to another Party
        ends = [g for g in GRID if g > held.valid_from] + [None]
        correction = replace(
            held, valid_to=draw(st.sampled_from(ends)), party_id=draw(st.sampled_from(spec.parties))
        )
    return spec, watches, cuts, batch, correction


def run(engine: Engine, scenario) -> None:
    spec, watches, cuts, batch, correction = scenario
    with engine.begin() as conn:
        # every Party first: one of them (test_visibility_property's "PZ") holds no User ID
        conn.execute(
            insert(party_table), [{"party_id": p, "name": f"{p} Ltd"} for p in spec.parties]
        )
        for user in spec.users:
            load_user(conn, user, f"{user.party_id} Ltd")
        for dev in spec.devices:
            load_device(conn, dev)
        for interval in spec.registry:
            load_responsibility(conn, interval)
        made = [
            (party, body, create_watch(conn, party, watch_spec(body), None)["id"])
            for party, body in watches
        ]
    for start, end in zip([0, *cuts], [*cuts, len(spec.records)]):
        if end > start:
            with engine.begin() as conn:
                append_records(conn, spec.records[start:end])
        while True:
            with engine.begin() as conn:
                if not match_new_records(conn, batch=batch):
                    break
    registry_now = list(spec.registry)
    if correction is not None:
        with engine.begin() as conn:
            try:
                load_responsibility(conn, correction)
                registry_now = [
                    correction
                    if (r.device_id, r.relation, r.valid_from)
                    == (correction.device_id, correction.relation, correction.valid_from)
                    else r
                    for r in spec.registry
                ]
            except ValueError:  # it would overlap another interval: the registry refuses it
                pass
    with engine.connect() as conn:
        ids = record_ids(conn)
        for party, body, watch_id in made:
            viewer = viewer_for(conn, party)
            want = [
                ids[r.key]
                for r in spec.records
                if decide(viewer, r, spec.registry).visible
                and wanted(body, viewer, r, spec.registry)
                and decide(viewer, r, registry_now).visible
            ]
            got, after = [], 0
            while True:
                page, next_after = events_after(conn, viewer, watch_id, after, 2)
                if not page:
                    break
                got += page
                after = next_after
            assert sorted(e["record"]["id"] for e in got) == sorted(want), (party, body)
            assert [e["event_id"] for e in got] == sorted(e["event_id"] for e in got)
            assert all(
                not {"payload", "execution_at", "subject_device_id"} & set(e["record"]) for e in got
            )


@settings(max_examples=50, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(scenario=scenarios())
def test_watch_events_are_the_visible_matching_records_on_sqlite(
    sqlite_per_example: StorePerExample, scenario
) -> None:
    run(sqlite_per_example.fresh(), scenario)


@settings(max_examples=12, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(scenario=scenarios())
def test_watch_events_are_the_visible_matching_records_on_postgresql(
    pg_per_example: StorePerExample, scenario
) -> None:
    run(pg_per_example.fresh(), scenario)
