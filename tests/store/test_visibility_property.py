"""The SQL rule (`store.visibility_sql`, through `store.queries`) agrees with
`domain.visibility.decide`.

Hypothesis builds random worlds: parties with one to three User IDs in any role (unknown
future codes included), registered and unregistered devices, non-overlapping responsibility
intervals per (device, relation) with shared boundaries, gaps, open ends and changes of
supplier / network operator, and records of all five kinds, including non-device requests
(empty device_id), devices missing from the registry and User IDs no Party holds. Each world
is written through the real writers into a fresh SQLite store built by the migrations, and
for every Party and every scope the set of (record id, access) the store returns must equal
what `decide()` gives record by record, with the payload present exactly for own records.

Times are drawn from a coarse grid shared by interval boundaries and records, plus
one-microsecond nudges on either side, and some records are drawn at an interval's end
itself, so records fall exactly on a `valid_from` or a `valid_to` often. That is what makes
this test able to fail. Searches without a Device read the visibility index
(`store.visibility_index`), a device search its own interval-first form, look-ups their own
statement, and every one applies `visible_clause` on top, which only narrows: a rule made
wider in `visibility_sql` shows only where `visible_clause` is read alone, in `iter_search`'s
general form (the exports), which this test reads for every Party and scope.

Tried in session 61: 38 one-line breakages (devsupport/visibility_breaks.py, which names
each and says how to run them), each made in a copy of src/ and run on SQLite with fixed
seeds, no shrink phase and no example database. Helper 61a ran the store's fixed-world tests
on SQLite (test_rule_personas, test_visibility_sql, test_visibility_index, test_index_search,
test_request_search, test_queries, test_export and this file's fixed worlds) with `-x`, so
one failure named where several may fail. Helper 61i ran this test (`-k sql_rule_agrees`),
as its generator now stands, on seed 1 for every breakage and on seed 2 too for kinds_*,
nondevice, party_match, device_match, others_own, from_lt, dev_cut_cursor, re_lower_max,
re_upper_min, re_end_first and own_only_sql.
- Failed this test on every seed tried, each within 2-38 s of pytest's own time: in
  visibility_sql, alerts shared by rule 3 (kinds_alerts, kinds_dcc), the party or the device
  match of held_clause dropped, scope=others keeping the viewer's own, `<` at valid_from,
  `<=` at valid_to, an open end never holding, only supplier intervals granting
  (relation_sql), every row's access "own"; in the device search, only supplier intervals
  read, a range's end taken as closed, its start as open, its own-exclusion dropped, open
  ranges dropped by the cut, the own branches only for scope=all, SQLite's open end as the
  start, the cursor's time not passed by a microsecond in `cut_ranges` (dev_cut_cursor: a
  record now and then takes an earlier one's time and Device); in the index, `<=` at an end
  (`audiences_at`) and supplier spans alone; in its re-derivation after a registry change,
  only the new holder re-derived, a moved end re-deriving too narrow a span (re_lower_max,
  re_upper_min) and a correction of the holder and the end at once re-deriving up to the
  new end only (re_end_first; wrong versions now end later too, as far as the next interval
  leaves room, by the same Party or another), the first or the last instant of a span left
  out, an open span taken as its start alone, rows written for Parties not forgotten, own
  rows not forgotten, a User ID's records not re-derived when it is registered; in
  get_visible's statement, MP141 rows not looked up; body fields selected for any access
  (own_only_sql: `check_body_fields_masked_in_sql` reads the statement's rows, which
  `domain.records.item` would otherwise mend). Before the generator drew the last four
  cases, each passed this test; fixed tests still catch them (test_queries' "falls back to
  the same answer", test_visibility_index's "touches only between the ends" and
  test_a_correction_of_the_holder_and_the_end_at_once_re_derives_both_spans).
- Passed this test and failed a fixed one until session 62 (62e), and fail it since, on
  SQLite with seeds 1 and 2: the union of ranges taking the last interval's end
  (dev_merge_max; `nest_inside` now puts one holder's interval inside another of its
  own, the case of test_a_network_operator_interval_inside_the_same_partys_supplier_interval),
  the index search without the Party (ix_party: a page with a cursor must be full and more
  must follow it, as test_queries' test_the_last_page_has_no_cursor asks) and the look-up's
  index probe without the Party (get_party: a hidden record's look-up must run the
  instructions of a missing one, as test_lookup_work counts them). On PostgreSQL
  dev_merge_max fails this test too; ix_party and get_party pass it, and change nothing a
  reader gets there: row security (`own_party_only` on sat_visibility) gives the reader's
  statements its Party's index rows alone.
- Passed this test and everything 61a ran (the fixed-world tests above, and
  test_lookup_work, test_device_search_work and tests/web's test_api,
  test_not_yours_is_not_found and test_html_access on SQLite), and change nothing a reader
  gets: the non-device filter dropped (no interval is of device ""), the earliest start of
  a change taken as the latest (the one caller gives both the same start). A third passed
  them too and fails this test since session 62 (seeds 1 and 2): scope=others reading own
  index rows (ix_others_access), which the rule on top drops, so its pages came back
  short, and the last of the others' records with a cursor to an empty page.
On PostgreSQL the row-level-security policies repeat the rule (`mp141_visibility` on
sat_record, `own_party_intervals` on responsibility), and hide a rule made wider:
test_postgresql_rule_and_row_level_security_agree_with_decide passed with alerts of either
kind shared, the party or the device match dropped and `<=` at valid_to (seed 1), and failed
with scope=others keeping the viewer's own, which the policies do not know. A widened
`visible_clause` shows on SQLite alone.
"""

from __future__ import annotations

import itertools
from datetime import datetime

from hypothesis import given, settings
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine

from servicetrail.domain.model import KINDS, Device, Responsibility, SatRecord, User
from servicetrail.domain.search import Search
from servicetrail.domain.times import format_time, parse_time
from servicetrail.domain.visibility import Access, Scope, Viewer, decide, in_scope
from servicetrail.store.engine import open_store
from servicetrail.store.items import visible_items
from servicetrail.store.queries import get_visible, iter_search, search_page, viewer_for
from servicetrail.store.schema import SHARED_KINDS, party, sat_visibility
from servicetrail.store.visibility_sql import viewer_params
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from tests.conftest import PER_EXAMPLE, StorePerExample
from tests.personas import record_ids
from devsupport.sqlite_steps import instructions
from tests.store.visibility_worlds import (
    CALENDAR_ENDS,
    GRID,
    HOLDS_NO_USER_ID,
    UNKNOWN_DEVICE,
    UNREGISTERED,
    WorldSpec,
    device_id,
    user_id,
    worlds,
)

MISSING = 10**9  # no generated record has this id


def expected(
    viewer: Viewer, spec: WorldSpec, ids: dict[tuple, int], scope: Scope
) -> dict[int, str]:
    seen = {}
    for record in spec.records:
        decision = decide(viewer, record, spec.registry)
        if decision.visible and in_scope(decision.access, scope):
            seen[ids[record.key]] = decision.access.value
    return seen


def check_world(engine: Engine, spec: WorldSpec) -> None:
    """Load `spec` into the empty store behind `engine` and compare every read with `decide()`."""
    with engine.begin() as conn:
        conn.execute(insert(party), [{"party_id": p, "name": f"{p} Ltd"} for p in spec.parties])
        for dev in spec.devices:
            load_device(conn, dev)
    loaded = 0
    for step in spec.steps:  # each write its own transaction, as the loaders do
        with engine.begin() as conn:
            if step[0] == "user":
                load_user(conn, step[1], f"{step[1].party_id} Ltd")
            elif step[0] == "interval":
                load_responsibility(conn, step[1])
            else:
                done, duplicates = append_records(conn, step[1])
                assert duplicates == 0
                loaded += done
    assert loaded == len(spec.records)
    with engine.connect() as conn:
        ids = record_ids(conn)
        by_id = {ids[r.key]: r for r in spec.records}
        check_index(conn, spec, ids)
        viewers = [viewer_for(conn, party) for party in spec.parties]
        assert all(viewers)
        # HOLDS_NO_USER_ID is seen without any User ID: rule 1 can never hold, rule 3 still can
        for viewer in viewers:
            for scope in Scope:
                items = list(iter_search(conn, viewer, Search(scope=scope)))
                got = {i["id"]: i["access"] for i in items}
                assert len(got) == len(items), "a record listed twice"
                assert got == expected(viewer, spec, ids, scope), (viewer, scope)
                for i in items:
                    check_fields(i, by_id[i["id"]])
                # newest first, ties broken by id
                order = [(parse_time(i["logged_at"]), i["id"]) for i in items]
                assert order == sorted(order, reverse=True)
            check_body_fields_masked_in_sql(conn, viewer)
            check_device_searches(conn, viewer, spec, ids, by_id)
            check_index_searches(conn, viewer, spec, ids, by_id)
            everything = expected(viewer, spec, ids, Scope.ALL)
            page, _ = search_page(conn, viewer, Search(), limit=1000)
            assert len(page) == len(everything)
            check_lookups(conn, viewer, everything, list(by_id))


def check_lookups(conn, viewer: Viewer, everything: dict[int, str], record_ids: list[int]) -> None:
    """Every record looked up by id is found exactly when `decide()` lets the viewer see it,
    and on SQLite the look-up's statement runs the very instructions for a hidden record as
    for a missing one, so the time of the answer cannot tell them apart (issue 10 finding 7,
    as tests/store/test_lookup_work.py counts them on fixed worlds): the look-up's probe
    without the viewer's Party (get_party) found another Party's index row and read the
    record, which the rule then dropped: the answer was right, and this test passed until
    it counted (session 62). On PostgreSQL row security leaves the probe the viewer's own
    index rows alone."""
    for record_id in record_ids:
        found = get_visible(conn, viewer, record_id)
        assert (found["access"] if found else None) == everything.get(record_id)
    if conn.dialect.name != "sqlite":
        return
    sent: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, values, context, executemany) -> None:
        sent.append((statement, values))

    event.listen(conn, "before_cursor_execute", keep)
    try:
        assert get_visible(conn, viewer, MISSING) is None
    finally:
        event.remove(conn, "before_cursor_execute", keep)
    ((statement, values),) = [(sql, v) for sql, v in sent if "sat_record" in sql]
    at = values.index(MISSING)
    driver = conn.connection.driver_connection

    def work(record_id: int) -> int:
        return instructions(driver, statement, (*values[:at], record_id, *values[at + 1 :]))

    missing_work = work(MISSING)
    for hidden in sorted(set(record_ids) - set(everything)):
        assert work(hidden) == missing_work, (viewer, hidden)


def check_body_fields_masked_in_sql(conn, viewer: Viewer) -> None:
    """The statement itself leaves another User's body fields out (`store.items.own_only`),
    not only `domain.records.item`, which drops them again and would hide a leak here."""
    for row in conn.execute(visible_items(), viewer_params(viewer)).mappings():
        if row["access"] != Access.OWN:
            assert (row["payload"], row["execution_at"], row["subject_device_id"]) == (
                None,
                None,
                None,
            ), (viewer, row["id"])


def check_index_searches(
    conn, viewer: Viewer, spec: WorldSpec, ids: dict[tuple, int], by_id: dict[int, SatRecord]
) -> None:
    """Searches without a Device read the visibility index (store.index_search.index_statement):
    paged in twos through the keyset cursor, and by each Request ID, they give exactly what
    `decide()` gives, in order."""
    for scope in Scope:
        want = expected(viewer, spec, ids, scope)
        got, cursor = [], None
        while True:
            page, cursor = search_page(conn, viewer, Search(scope=scope), 2, cursor)
            got += page
            if cursor is None:
                break
            # a next page only when more follows, and only after a full one: the index read
            # without the viewer's Party (ix_party) gave every record in order all the same,
            # but pages cut short by other Parties' rows and a last one with a cursor
            assert len(page) == 2 and len(got) < len(want), (viewer, scope, len(got))
        assert [(i["id"], i["access"]) for i in got] == [
            (i, want[i]) for i in sorted(want, key=lambda i: (by_id[i].logged_at, i), reverse=True)
        ]
    # each Request ID in one scope, the scopes in turn: another User's takes its own form
    # (store.request_search), whose branches each scope narrows differently
    for n, request_id in enumerate(sorted({r.request_id for r in spec.records})):
        scope = list(Scope)[(n + len(viewer.party_id)) % len(Scope)]
        everything = expected(viewer, spec, ids, scope)
        got, cursor = [], None
        while True:  # one at a time: the cursor crosses the records sharing the Request ID
            searched = Search(request_id=request_id, scope=scope)
            page, cursor = search_page(conn, viewer, searched, 1, cursor)
            got += page
            if cursor is None:
                break
        assert [(i["id"], i["access"]) for i in got] == [
            (i, a)
            for i, a in sorted(
                everything.items(), key=lambda e: (by_id[e[0]].logged_at, e[0]), reverse=True
            )
            if by_id[i].request_id == request_id
        ], (viewer, scope, request_id)
        assert len(got) == len({i["id"] for i in got})


def check_index(conn, spec: WorldSpec, ids: dict[tuple, int]) -> None:
    """The visibility index holds exactly one row per record and Party that `decide()` lets see
    it, with the rule that grants it, and the record's title fields."""
    owners = {u.user_id: u.party_id for u in spec.users}
    want = set()
    for record in spec.records:
        for p in spec.parties:
            viewer = Viewer(p, frozenset(u for u, holder in owners.items() if holder == p))
            decision = decide(viewer, record, spec.registry)
            if decision.visible:
                want.add(
                    (
                        p,
                        decision.rule,
                        record.logged_at,
                        ids[record.key],
                        record.kind,
                        record.srv or None,
                    )
                )
    v = sat_visibility.c
    got = conn.execute(select(v.party_id, v.access, v.logged_at, v.record_id, v.kind, v.srv)).all()
    assert len(got) == len(set(got)), "an index row twice"
    assert set(map(tuple, got)) == want


def check_device_searches(
    conn, viewer: Viewer, spec: WorldSpec, ids: dict[tuple, int], by_id: dict[int, SatRecord]
) -> None:
    """A search of one device takes the interval-first form (store.device_search.device_statement:
    rule 1 per User ID, rule 3 per Responsibility range of that device and viewer): it must
    give exactly the rows and order `decide()` gives, page by page through the keyset cursor
    (small pages, so the cursor's bounds cross interval boundaries)."""
    for scope in Scope:  # every scope, for a Party without User IDs too (NOT IN an empty set)
        everything = expected(viewer, spec, ids, scope)
        page, _ = search_page(conn, viewer, Search(scope=scope), 1000)  # the general form
        assert {i["id"]: i["access"] for i in page} == everything, (viewer, scope)
        for device, in_body in itertools.product(
            [d.device_id for d in spec.devices] + [UNKNOWN_DEVICE], (True, False)
        ):
            # a Device's records, and (unless asked not to) the viewer's own non-device
            # requests that name it
            # the searches of the Device alone take a window on the grid, where records and
            # intervals start and end: the ranges are cut to it in Python (cut_ranges), at no
            # cost of a search more
            start, end = (GRID[2], GRID[5]) if not in_body else (None, None)
            want = {
                i: access
                for i, access in everything.items()
                if (
                    by_id[i].device_id == device
                    or (in_body and access == Access.OWN and by_id[i].subject_device_id == device)
                )
                and (start is None or start <= by_id[i].logged_at)
                and (end is None or by_id[i].logged_at < end)
            }
            searched = Search(
                device_id=device,
                scope=scope,
                device_in_body=in_body,
                time_from=start,
                time_to=end,
            )
            got, cursor = [], None
            while True:
                page, cursor = search_page(conn, viewer, searched, 3, cursor)
                got += page
                if cursor is None:
                    break
            assert {i["id"]: i["access"] for i in got} == want, (viewer, searched)
            assert len(got) == len(want), "a record listed twice"
            order = [(parse_time(i["logged_at"]), i["id"]) for i in got]
            assert order == sorted(order, reverse=True)
            for i in got:
                check_fields(i, by_id[i["id"]])


def check_fields(item: dict, record: SatRecord) -> None:
    """Every viewer sees the title fields, command_variant among them; only the record's own
    User sees what is read from its body (SPEC section 5)."""
    assert item["command_variant"] == record.command_variant
    if item["access"] == Access.OWN:
        assert item["payload"] == record.payload
        assert item["execution_at"] == (
            format_time(record.execution_at) if record.execution_at else None
        )
        assert item["subject_device_id"] == record.subject_device_id
    else:
        assert not {"payload", "execution_at", "subject_device_id"} & set(item)


@settings(max_examples=60, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(spec=worlds())
def test_sql_rule_agrees_with_decide_for_every_party_and_scope(
    sqlite_per_example: StorePerExample, spec: WorldSpec
) -> None:
    check_world(sqlite_per_example.fresh(), spec)


@settings(max_examples=15, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(spec=worlds())
def test_postgresql_rule_and_row_level_security_agree_with_decide(
    pg_per_example: StorePerExample, spec: WorldSpec
) -> None:
    """The same property on PostgreSQL: its own SQL dialect, timestamptz, COPY ingest and the
    row-level-security policies all sit on this path."""
    check_world(pg_per_example.fresh(), spec)


# Fixed worlds the generator reaches too rarely to be relied on (audit 27c): one device,
# P0 responsible for it, P1's User sending it requests at G1..G6.
FIXED_DEVICE = device_id(1)
FIXED_USERS = [User(user_id(0, 0), "P0", "IS"), User(user_id(1, 0), "P1", "OU")]


def fixed_world(registry: list[Responsibility]) -> WorldSpec:
    sender = FIXED_USERS[1].user_id
    records = [
        SatRecord(
            at,
            "request",
            f"{sender}:{FIXED_DEVICE}:{n}",
            "4.1.1",
            sender,
            FIXED_DEVICE,
            "",
            f"<p{n}>",
        )
        for n, at in enumerate(GRID[1:7], start=1)
    ]
    steps = [("user", u) for u in FIXED_USERS]
    steps += [("interval", r) for r in registry] + [("records", records)]
    return WorldSpec(FIXED_USERS, [Device(FIXED_DEVICE, "ESME", 2)], registry, records, steps)


def device_search_times(engine: Engine, party: str, limit: int) -> list[list]:
    """The logged_at of each page of the party's search of FIXED_DEVICE, followed by cursor."""
    pages, cursor = [], None
    with engine.connect() as conn:
        viewer = viewer_for(conn, party)
        while True:
            page, cursor = search_page(conn, viewer, Search(device_id=FIXED_DEVICE), limit, cursor)
            pages.append([parse_time(i["logged_at"]) for i in page])
            if cursor is None:
                return pages


def test_a_network_operator_interval_inside_the_same_partys_supplier_interval(
    engine: Engine,
) -> None:
    """P0 is the supplier over [G0, G7) and, inside it, network operator over [G2, G3): the
    union is [G0, G7), and a device search saw only [G0, G3) of it when the inner interval's
    end replaced the outer's (audit 27c)."""
    registry = [
        Responsibility(FIXED_DEVICE, "P0", "supplier", GRID[0], GRID[7]),
        Responsibility(FIXED_DEVICE, "P0", "network_operator", GRID[2], GRID[3]),
    ]
    check_world(engine, fixed_world(registry))
    assert device_search_times(engine, "P0", 10) == [list(reversed(GRID[1:7]))]


def test_a_device_search_paged_to_the_end_of_the_viewers_range_lists_every_record(
    engine: Engine,
) -> None:
    """P0 is the supplier over [G0, G6): it sees P1's requests at G1..G5, more than a page
    of 3, and not the one at G6, the end of its range (half-open, as every interval is).
    With the range's end taken as closed, the G6 record filled the row that says another
    page follows: on SQLite the first page came with no cursor and G2, G1 were never
    listed (audit 27c)."""
    registry = [Responsibility(FIXED_DEVICE, "P0", "supplier", GRID[0], GRID[6])]
    check_world(engine, fixed_world(registry))
    assert device_search_times(engine, "P0", 3) == [
        [GRID[5], GRID[4], GRID[3]],
        [GRID[2], GRID[1]],
    ]


def test_a_correction_of_the_holder_and_the_end_at_once_re_derives_both_spans(
    sqlite_url: str,
) -> None:
    """P0 is loaded as the open-ended supplier from G0, P1's requests at G1..G6 come in,
    and the interval is corrected to PZ until G4: the change re-derives both Parties' rows
    up to the later of the two ends, P0's open one, not only to G4 (store.visibility_index's
    `touched_by`). Re-derived up to G4 alone, P0 kept its index rows of G4..G6, which every
    search hides again but the index must not hold; the generator then corrected a holder
    keeping the end, so no generated world showed it (session 61; it now draws this too).
    SQLite alone: the span is worked out in Python, the same for both engines."""
    right = Responsibility(FIXED_DEVICE, HOLDS_NO_USER_ID, "supplier", GRID[0], GRID[4])
    spec = fixed_world([right])
    wrong = Responsibility(FIXED_DEVICE, "P0", "supplier", GRID[0], None)
    users = [step for step in spec.steps if step[0] == "user"]
    spec.steps = [*users, ("interval", wrong), ("records", spec.records), ("interval", right)]
    engine = open_store(sqlite_url)
    try:
        check_world(engine, spec)
    finally:
        engine.dispose()


def test_the_generator_reaches_the_cases_that_matter() -> None:
    """Guards the property above against a generator that quietly stops producing the hard cases."""
    seen = set()
    at_ends: list[bool] = []
    nested: list[bool] = []
    after_last: list[bool] = []
    seen_elsewhere: list[bool] = []

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(spec=worlds())
    def look(spec: WorldSpec) -> None:
        bounds = {r.valid_from for r in spec.registry} | {
            r.valid_to for r in spec.registry if r.valid_to
        }
        ends = {r.valid_to for r in spec.registry if r.valid_to}
        starts = {r.valid_from for r in spec.registry}
        if ends & starts:
            seen.add("adjacent intervals")
        if any(r.valid_to is None for r in spec.registry):
            seen.add("open interval")
        if len({r.party_id for r in spec.registry}) > 1:
            seen.add("several holders")
        if any(len({u.user_id for u in spec.users if u.party_id == p}) > 1 for p in spec.parties):
            seen.add("party with several user ids")
        for wrong, right in corrections(spec):
            if right.valid_to and (wrong.valid_to is None or wrong.valid_to > right.valid_to):
                seen.add(
                    "an end corrected earlier"
                    if wrong.party_id == right.party_id
                    else "a holder and an end corrected at once"
                )
        on_devices = [(r.logged_at, r.device_id) for r in spec.records if r.device_id]
        if len(on_devices) > len(set(on_devices)):
            seen.add("records of one time on one device")
        ends = [i for i in spec.registry if i.valid_to]
        # counted, not just seen: with records drawn from the grid alone it was rare enough
        # that the property test missed `<=` in held_clause in most runs (audit 60c)
        at_ends.append(any(ended_for(r, i, spec) for r in spec.records for i in ends))
        nested.append(any(past_inner_end(r, spec) for r in spec.records))
        # records only another Party sees: a look-up of one by id must not find its index
        # row (get_party), and one older than all a Party sees lies past the Party's last row
        # in the index's order, where a page read without the Party (ix_party) ended
        seers = [seen_by(spec, p) for p in spec.parties]
        others = [(mine, theirs - mine) for mine, theirs in itertools.permutations(seers, 2)]
        seen_elsewhere.append(any(hidden for _, hidden in others))
        after_last.append(
            any(min(mine)[0] > min(hidden)[0] for mine, hidden in others if mine and hidden)
        )
        for record in spec.records:
            if record.logged_at in bounds:
                seen.add("record on a boundary")
            if record.logged_at == CALENDAR_ENDS[-1]:
                seen.add("record at the last instant")
            if record.device_id == "":
                seen.add("non-device record")
            if record.device_id == UNKNOWN_DEVICE:
                seen.add("unknown device")
            if record.user_id in UNREGISTERED:
                seen.add("unregistered user")
            if record.subject_device_id:
                seen.add("non-device request naming a device")
            if sum(r.request_id == record.request_id for r in spec.records) > 1:
                seen.add("records sharing a Request ID")
            if record.execution_at:
                seen.add("future-dated request")
            seen.add(record.kind)

    look()
    assert seen >= {
        "adjacent intervals",
        "open interval",
        "several holders",
        "party with several user ids",
        "record on a boundary",
        "record at the last instant",
        "non-device record",
        "unknown device",
        "unregistered user",
        "non-device request naming a device",
        "future-dated request",
        "records sharing a Request ID",
        "an end corrected earlier",
        "a holder and an end corrected at once",
        "records of one time on one device",
        *KINDS,
    }
    # another User's shared record exactly at the end of an interval not renewed: 29 of these
    # 100 worlds (7 before records were drawn at intervals' ends too; session 60)
    assert sum(at_ends) >= 15
    # another User's shared record past a nested interval's end, inside the outer one: 32 of
    # these 100 worlds; 7-37 in 100 on seeds 0-7, 0-5 before nest_inside (session 62)
    assert sum(nested) >= 6
    # a record only another Party sees: 65; one older than all a Party sees: 45
    assert sum(seen_elsewhere) >= 40 and sum(after_last) >= 25


def corrections(spec: WorldSpec) -> list[tuple[Responsibility, Responsibility]]:
    """Each interval first loaded wrong with the one of the final registry that corrects it
    (the same Device, relation and start)."""
    final = {(r.device_id, r.relation, r.valid_from): r for r in spec.registry}
    return [
        (step[1], final[key])
        for step in spec.steps
        if step[0] == "interval"
        and step[1] not in spec.registry
        and (key := (step[1].device_id, step[1].relation, step[1].valid_from)) in final
    ]


def seen_by(spec: WorldSpec, party_id: str) -> set[tuple[datetime, tuple[str, str, datetime]]]:
    """The (time, key) of each record `decide()` lets the Party see."""
    own = frozenset(u.user_id for u in spec.users if u.party_id == party_id)
    return {
        (r.logged_at, r.key)
        for r in spec.records
        if decide(Viewer(party_id, own), r, spec.registry).visible
    }


def past_inner_end(record: SatRecord, spec: WorldSpec) -> bool:
    """Another User's shared record on a Device whose holder has two intervals there, one
    inside the other, between the inner one's end and the outer one's: what the union of the
    holder's ranges taken to the last interval's end (dev_merge_max) leaves out."""
    for outer, inner in itertools.permutations(spec.registry, 2):
        if (
            outer.device_id == inner.device_id == record.device_id
            and outer.party_id == inner.party_id
            and outer.valid_from < inner.valid_from
            and inner.valid_to is not None
            and outer.valid_to is not None
            and inner.valid_to <= record.logged_at < outer.valid_to
        ):
            own = frozenset(u.user_id for u in spec.users if u.party_id == outer.party_id)
            viewer = Viewer(outer.party_id, own)
            if record.user_id not in own and decide(viewer, record, spec.registry).visible:
                return True
    return False


def ended_for(record: SatRecord, interval: Responsibility, spec: WorldSpec) -> bool:
    """A shared record on the interval's Device exactly at its end, which `decide()` hides from
    the holder: what an end taken as inclusive (`<=` in held_clause) shows wrongly."""
    own = frozenset(u.user_id for u in spec.users if u.party_id == interval.party_id)
    return (
        record.logged_at == interval.valid_to
        and record.kind in SHARED_KINDS
        and record.device_id == interval.device_id
        and not decide(Viewer(interval.party_id, own), record, spec.registry).visible
    )


@settings(max_examples=10, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(spec=worlds())
def test_a_registry_change_re_derived_a_few_records_at_a_time_agrees_with_decide(
    sqlite_per_example: StorePerExample,
    pg_per_example: StorePerExample,
    monkeypatch,
    spec: WorldSpec,
) -> None:
    """A registry change reads its records and re-derives them a round at a time (a server-side
    cursor on PostgreSQL), since all at once held 619 MB for a correction of 10,000 intervals
    (audit 26e): rounds of two records and statements of one span, on both engines."""
    from servicetrail.store import visibility_index

    monkeypatch.setattr(visibility_index, "_RECORDS_A_ROUND", 2)
    monkeypatch.setattr(visibility_index, "_SPANS_A_STATEMENT", 1)
    check_world(sqlite_per_example.fresh(), spec)
    check_world(pg_per_example.fresh(), spec)
