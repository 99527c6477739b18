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

from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from servicetrail.domain.model import Device, Responsibility, SatRecord, User
from servicetrail.domain.search import Search, build_search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Scope, Viewer
from servicetrail.store.engine import open_store
from servicetrail.store.queries import search_page, viewer_for
from servicetrail.store.writer import (
    append_records,
    load_device,
    load_responsibility,
    load_user,
)
from tests import personas as P
from tests.store.test_lookup_work import postgres_nodes, sqlite_instructions, statements_sent

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
    engine: Engine, viewer: Viewer, start: datetime, scope: str | None, device: str = P.ESME_1
):
    """The work of the statement with which a search of the Device over [start, start +
    WINDOW) reads the trail (the viewer's intervals on the Device are read before it)."""
    search = build_search(device_id=device, time_from=start, time_to=start + WINDOW, scope=scope)
    with statements_sent(engine) as sent, engine.connect() as conn:
        items, _ = search_page(conn, viewer, search, 20)
    assert items == []
    [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, statement, parameters)
    return postgres_nodes(engine, viewer, statement, parameters)


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
    from servicetrail.store.writer import load_responsibility, load_user

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
