"""A search by Device does the same work whatever records it passes over unseen, so that its
time cannot count them (audit 21b: a supplier counted, month by month, the alerts other Users
had of its own Device, 10.9 ms against 1.7; any Party counted another's requests naming a
Device on SQLite, 9.8 ms against 1.5).

Counted, not timed, as test_lookup_work counts a look-up: on SQLite the virtual machine's
instructions, on PostgreSQL each plan node that ran with the rows it produced and the rows its
conditions removed. The same search is made over two windows of one month: one holding
records the viewer may not see, the other nothing.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from servicetrail.domain.model import Device, Responsibility, SatRecord, User
from servicetrail.domain.search import Cursor, Search, build_search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Scope, Viewer
from servicetrail.store.engine import open_store
from servicetrail.store.queries import search_page, viewer_for
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from tests import personas as P
from tests.store.work_counted import (
    postgres_nodes,
    sqlite_instructions,
    statements_sent,
)

HIDDEN_FROM, EMPTY_FROM = parse_time("2027-06-01T00:00:00Z"), parse_time("2027-06-16T00:00:00Z")
WINDOW = timedelta(days=10)
HIDDEN = 200


def alerts_to(user_id: str, device: str = P.ESME_1) -> list[SatRecord]:
    """Device alerts to another User of the viewer's Device: rule 2 hides them."""
    return [
        SatRecord(
            HIDDEN_FROM + timedelta(minutes=n),
            "device_alert",
            f"{user_id}:{device}:{7000 + n}",
            "",
            user_id,
            device,
            "8F1C",
            "",
        )
        for n in range(HIDDEN)
    ]


def requests_naming_it_from(user_id: str) -> list[SatRecord]:
    """Non-device requests naming the Device as their subject: only their sender sees them."""
    return [
        SatRecord(
            HIDDEN_FROM + timedelta(minutes=n),
            "request",
            f"{user_id}:00-00-00-00-00-00-00-00:{7000 + n}",
            "12.2",
            user_id,
            "",
            "",
            "",
            subject_device_id=P.ESME_1,
        )
        for n in range(HIDDEN)
    ]


def device_search_work(
    engine: Engine,
    viewer: Viewer,
    start: datetime,
    scope: str | None,
    device: str = P.ESME_1,
    paged: bool = False,
):
    """The work of the statement with which a search of the Device over [start, start +
    WINDOW) reads the trail (the viewer's intervals on the Device are read before it);
    `paged`: the window's end as a next page's cursor, not a filter."""
    end = start + WINDOW
    search = build_search(
        device_id=device, time_from=start, time_to=None if paged else end, scope=scope
    )
    cursor = Cursor(end, 2**62) if paged else None
    with statements_sent(engine) as sent, engine.connect() as conn:
        items, _ = search_page(conn, viewer, search, 20, cursor)
    assert items == []
    [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, statement, parameters)
    return postgres_nodes(engine, viewer, statement, parameters)  # $n and a list: prepared


@P.starts_with_personas
@pytest.mark.parametrize(
    ("party", "unseen", "scope"),
    [
        (P.SOUTHENERGY, alerts_to(P.WS_ED), None),  # its supplier: rule 3's range
        (P.SOUTHENERGY, alerts_to(P.WS_ED), "others"),
        (P.LOOKER, requests_naming_it_from(P.SE_IS), None),  # beside its own requests naming it
        (P.LOOKER, requests_naming_it_from(P.SE_IS), "own"),
        (P.SOUTHENERGY, requests_naming_it_from(P.NP_IS), "own"),
    ],
    ids=["alerts", "alerts-others", "subject", "subject-own", "subject-supplier-own"],
)
def test_a_device_search_does_the_same_work_past_records_it_may_not_show(
    engine: Engine, party: str, unseen: list[SatRecord], scope: str | None
) -> None:
    world = P.load_personas(engine)
    with engine.begin() as conn:
        append_records(conn, unseen)
    if engine.dialect.name == "postgresql":  # as autovacuum would have: the plan is made on them
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    viewer = world.viewer(party)
    past_unseen = device_search_work(engine, viewer, HIDDEN_FROM, scope)
    past_nothing = device_search_work(engine, viewer, EMPTY_FROM, scope)
    assert past_unseen == past_nothing


@P.starts_with_personas
def test_a_party_of_many_user_ids_or_ranges_searches_with_the_same_work(engine: Engine) -> None:
    """A Party of more than 8 User IDs, or holding a Device in more than 8 ranges, was
    searched through the general form, which read every record of the Device newer than
    the page (audit 21d: 18 ms against 2.6 past 20,000 hidden records)."""
    from servicetrail.domain.model import Responsibility, User
    from servicetrail.store.registry import load_responsibility, load_user

    world = P.load_personas(engine)
    with engine.begin() as conn:
        for n in range(12):  # BIGCO: a dozen User IDs, supplier of PPMID_1 from 2027
            load_user(conn, User(f"90-B3-D5-1F-30-09-00-{n:02X}", "BIGCO", "IS"), "Big Co")
        load_responsibility(
            conn,
            Responsibility(
                P.PPMID_1, "BIGCO", "supplier", parse_time("2027-01-01T00:00:00Z"), None
            ),
        )
        load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "RANGECO", "ED"), "Range Co")
        # RANGECO: a dozen ranges, eleven in 2026 and one around the windows searched
        ranges = [(parse_time(f"2026-{m:02d}-01T00:00:00Z"), 12) for m in range(1, 12)]
        for start, days in [*ranges, (parse_time("2027-05-20T00:00:00Z"), 45)]:
            held = Responsibility(
                P.PPMID_1, "RANGECO", "network_operator", start, start + timedelta(days=days)
            )
            load_responsibility(conn, held)
        append_records(conn, alerts_to(P.WS_ED, P.PPMID_1))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    for party in ("BIGCO", "RANGECO"):
        viewer = world.viewer(party)
        past_unseen = device_search_work(engine, viewer, HIDDEN_FROM, None, P.PPMID_1)
        past_nothing = device_search_work(engine, viewer, EMPTY_FROM, None, P.PPMID_1)
        assert past_unseen == past_nothing, party


def test_the_rule_on_top_of_a_device_search_is_read_once_whatever_its_ranges(
    sqlite_url: str,
) -> None:
    """Session 50: the rule and the items' joins on top of the branches, over the page's
    candidates alone. Over their UNION ALL itself, SQLite copied them into every branch and
    ran them on every branch's rows (32 ranges at 1M: 400,209 instructions, 62 ms, against
    108,212 and 7.5 ms). Read off the program: how often it opens `responsibility`, which
    only the rule reads: twice with 2 ranges or 8, where it was 4 and 16 times."""
    engine = open_store(sqlite_url)
    first = parse_time("2025-01-02T00:00:00Z")
    with engine.begin() as conn:
        load_device(conn, Device(P.ESME_1, "ESME", 2))
        for n in (2, 8):
            load_user(conn, User(f"90-B3-D5-1F-30-0A-00-0{n}", f"HOLD{n}", "IS"), f"HOLD{n}")
            for day in range(n):  # a supplier at a time: HOLD8's days after HOLD2's
                start = first + timedelta(days=n + day)
                held = Responsibility(
                    P.ESME_1, f"HOLD{n}", "supplier", start, start + timedelta(hours=1)
                )
                load_responsibility(conn, held)

    def opens_of_responsibility(party: str) -> int:
        with statements_sent(engine) as sent, engine.connect() as conn:
            viewer = viewer_for(conn, party)
            search_page(conn, viewer, Search(device_id=P.ESME_1, scope=Scope.OTHERS), 20)
        [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            roots = {
                r[0]
                for r in driver.execute(
                    "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'responsibility'"
                )
            }
            program = driver.execute("EXPLAIN " + statement, parameters).fetchall()
        return sum(op[1] == "OpenRead" and op[3] in roots for op in program)

    try:
        assert opens_of_responsibility("HOLD8") == opens_of_responsibility("HOLD2") > 0
    finally:
        engine.dispose()


def requests_between(ranges: list[tuple[datetime, datetime]], sender: str) -> list[SatRecord]:
    """Another User's requests to the Device between each two of the viewer's ranges inside
    the hidden window: rule 3 shares their kind, but not at their times."""
    gaps = [
        (end, start)
        for (_, end), (start, _) in itertools.pairwise(ranges)
        if HIDDEN_FROM <= end and start <= HIDDEN_FROM + WINDOW
    ]
    return [
        SatRecord(
            end + timedelta(minutes=1 + n),
            "request",
            f"{sender}:{P.PPMID_1}:{8000 + 100 * i + n}",
            "1.1",
            sender,
            P.PPMID_1,
            "",
            "",
        )
        for i, (end, _) in enumerate(gaps)
        for n in range(HIDDEN // len(gaps))
    ]


@P.starts_with_personas
@pytest.mark.parametrize("paged", [False, True], ids=["window", "cursor"])
@pytest.mark.parametrize("every", [1, 3], ids=["42-ranges", "14-ranges"])
def test_a_party_holding_a_device_in_many_ranges_passes_over_others_records_between_them(
    engine: Engine, paged: bool, every: int
) -> None:
    """Finding 50b 1: past 32 ranges the search took the general form, which read every
    record of the Device newer than the page, those the viewer may not see between its ranges
    too (0.9-2.5 s at 1M on SQLite). Within 32, a branch a range, SQLite sought the search's
    time window and filtered by the range's bounds: every record in the window, between the
    ranges too. Ranges of six hours every `every` days, alike in both windows; another User's
    requests between them (and alerts) in one window only."""
    world = P.load_personas(engine)
    first = HIDDEN_FROM - timedelta(days=12)
    held = [
        (first + timedelta(days=d), first + timedelta(days=d, hours=6)) for d in range(0, 42, every)
    ]
    with engine.begin() as conn:
        load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "RANGECO", "ED"), "Range Co")
        for start, end in held:
            load_responsibility(
                conn, Responsibility(P.PPMID_1, "RANGECO", "network_operator", start, end)
            )
        append_records(conn, requests_between(held, P.WS_ED) + alerts_to(P.WS_ED, P.PPMID_1))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    viewer = world.viewer("RANGECO")
    past_unseen = device_search_work(engine, viewer, HIDDEN_FROM, None, P.PPMID_1, paged)
    past_nothing = device_search_work(engine, viewer, EMPTY_FROM, None, P.PPMID_1, paged)
    assert past_unseen == past_nothing


def test_a_page_of_the_newest_ranges_reads_no_older_range_on_postgresql(pg_engine: Engine) -> None:
    """Session 51: PostgreSQL's lateral seek of the ranges read each range's newest page and
    sorted them all (32 ranges at 1M: 30-38 ms against 4-6 now). Given the ranges newest
    first and their order (ordinality), it sorts a range at a time and stops at the page:
    a page of 5 from the two newest of 40 ranges, three records each, reads three ranges (the
    third's first row tells the second's are all there)."""
    first = HIDDEN_FROM - timedelta(days=40)
    held = [(first + timedelta(days=d), first + timedelta(days=d, hours=6)) for d in range(40)]
    sender = "90-B3-D5-1F-30-03-00-01"
    with pg_engine.begin() as conn:
        load_device(conn, Device(P.PPMID_1, "PPMID", 2))
        load_user(conn, User(sender, "WIRESCO", "ED"), "WiresCo")
        load_user(conn, User("90-B3-D5-1F-30-0A-00-01", "RANGECO", "ED"), "Range Co")
        for start, end in held:
            load_responsibility(
                conn, Responsibility(P.PPMID_1, "RANGECO", "network_operator", start, end)
            )
        exchanges = [
            SatRecord(
                start + timedelta(minutes=n),
                "request",
                f"{sender}:{P.PPMID_1}:{100 * d + n}",
                "1.1",
                sender,
                P.PPMID_1,
                "",
                "",
            )
            for d, (start, _) in enumerate(held)
            for n in range(3)
        ]
        append_records(conn, exchanges)
        viewer = viewer_for(conn, "RANGECO")
    with statements_sent(pg_engine) as sent, pg_engine.connect() as conn:
        items, _ = search_page(conn, viewer, Search(device_id=P.PPMID_1), 5)
    assert [i["request_id"] for i in items] == [r.request_id for r in exchanges[::-1][:5]]
    [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
    nodes = postgres_nodes(pg_engine, viewer, statement, parameters)
    [ranges_read] = [rows for node, _, _, rows, _ in nodes if node == "Function Scan"]
    assert ranges_read == 3


def test_a_full_page_from_the_newest_ranges_costs_no_more_for_older_ones_on_sqlite(
    sqlite_url: str,
) -> None:
    """Session 52: SQLite read a page from each of the viewer's ranges and sorted them all
    (`json_each` reports no order to stop by), and the rule on top read, for each record,
    every interval the Party held before it: a Party of 100 ranges at 1M took 240,760
    instructions, 22-34 ms, against 23,579 and 1.0 ms now. Two Parties hold the Device in
    the same two newest ranges, each full of another's exchanges; one of them in ten older
    ranges as full. The page comes from the newest range: the older ranges cost nothing."""
    engine = open_store(sqlite_url)
    sender = "90-B3-D5-1F-30-03-00-01"
    first = HIDDEN_FROM - timedelta(days=12)
    held = [(first + timedelta(days=d), first + timedelta(days=d, hours=6)) for d in range(12)]
    try:
        with engine.begin() as conn:
            load_device(conn, Device(P.PPMID_1, "PPMID", 2))
            load_user(conn, User(sender, "WIRESCO", "ED"), "WiresCo")
            # the same times in two roles: one holder of a role at a time
            for n, ranges, role in ((2, held[-2:], "supplier"), (12, held, "network_operator")):
                load_user(conn, User(f"90-B3-D5-1F-30-0A-00-{n:02X}", f"HOLD{n}", "ED"), "H")
                for start, end in ranges:
                    load_responsibility(
                        conn, Responsibility(P.PPMID_1, f"HOLD{n}", role, start, end)
                    )
            append_records(
                conn,
                [
                    SatRecord(
                        start + timedelta(minutes=n),
                        "request",
                        f"{sender}:{P.PPMID_1}:{100 * d + n}",
                        "1.1",
                        sender,
                        P.PPMID_1,
                        "",
                        "",
                    )
                    for d, (start, _) in enumerate(held)
                    for n in range(8)
                ],
            )

        def work(party: str) -> tuple[list[int], int]:
            with statements_sent(engine) as sent, engine.connect() as conn:
                viewer = viewer_for(conn, party)
                items, _ = search_page(conn, viewer, Search(device_id=P.PPMID_1), 5)
            [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
            return [i["id"] for i in items], sqlite_instructions(engine, statement, parameters)

        assert work("HOLD12") == work("HOLD2")
    finally:
        engine.dispose()
