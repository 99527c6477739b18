"""Audit 47f 1: a search by another User's Request ID does the same work whether that User
sent it or no one did, so the time of the answer cannot tell a hostile User whether request
N went to a Device (DUIS Request IDs are sender:device:counter, easily guessed).

Counted as tests/store/test_lookup_work.py counts a look-up (SQLite's virtual machine
instructions; PostgreSQL's executed plan nodes, their loops, rows and rows removed, as the
reader role and with a generic plan, as the service runs this search). Before
store.request_search, another Party's exchange of three messages took 128 SQLite
instructions against 45 for an unused Request ID.
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from servicetrail.domain.model import Device, Responsibility, SatRecord, User
from servicetrail.domain.search import Search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Viewer
from servicetrail.store.engine import open_store
from servicetrail.store.queries import search_page, viewer_for
from servicetrail.store.schema import party
from servicetrail.store.registry import load_device, load_responsibility, load_user
from servicetrail.store.writer import append_records
from tests.personas import (
    CHANGE_OF_SUPPLIER,
    ESME_1,
    LK_OU,
    LOOKER,
    NP_IS,
    SOUTHENERGY,
    SUNEXPORT,
    World,
    load_personas,
    starts_with_personas,
)
from tests.store.work_counted import (
    positional,
    postgres_nodes,
    sqlite_instructions,
    statements_sent,
)

# LOOKER's alert on ESME-1 in SOUTHENERGY's period: rule 2 hides it from the supplier
LK_ALERT = f"{LK_OU}:{ESME_1}:7001"


@pytest.fixture
@starts_with_personas
def world(engine: Engine) -> World:
    return with_lk_alert(engine)


def with_lk_alert(engine: Engine) -> World:
    built = load_personas(engine)
    alert = SatRecord(
        CHANGE_OF_SUPPLIER + timedelta(days=6),
        "device_alert",
        LK_ALERT,
        "",
        LK_OU,
        ESME_1,
        "8F1C",
        "<lk alert>",
    )
    with engine.begin() as conn:
        append_records(conn, [alert])
    return built


def search_statement(world: World, viewer: Viewer, request_id: str) -> tuple[str, object]:
    """The statement (and its parameters) with which `search_page` reads the trail."""
    with statements_sent(world.engine) as sent, world.engine.connect() as conn:
        search_page(conn, viewer, Search(request_id=request_id), 20)
    # on PostgreSQL SQLAlchemy's statement is seen again as psycopg's
    reads = [(sql, params) for sql, params in sent if "sat_record" in sql]
    assert len({sql for sql, _ in reads}) == 1, reads
    return reads[0]


def work(world: World, viewer: Viewer, request_id: str):
    statement, parameters = search_statement(world, viewer, request_id)
    if world.engine.dialect.name == "sqlite":
        return sqlite_instructions(world.engine, statement, parameters)
    # prepared, for the generic plan the service runs this search on (read_as)
    return postgres_nodes(world.engine, viewer, *positional(statement, parameters))


def found(world: World, viewer: Viewer, request_id: str) -> list[int]:
    with world.engine.connect() as conn:
        items, _ = search_page(conn, viewer, Search(request_id=request_id), 20)
    return [i["id"] for i in items]


HIDDEN = [
    (SUNEXPORT, f"{NP_IS}:{ESME_1}:1", "another Party's exchange on a Device never held"),
    (SOUTHENERGY, f"{NP_IS}:{ESME_1}:1", "an exchange on its Device from before its time"),
    (LOOKER, f"{NP_IS}:{ESME_1}:99", "another Party's device alert"),
    (SOUTHENERGY, LK_ALERT, "another User's device alert on its Device in its time"),
]


@pytest.mark.parametrize("party, hidden, why", HIDDEN)
def test_another_users_request_id_is_searched_with_the_work_of_an_unused_one(
    world: World, party: str, hidden: str, why: str
) -> None:
    viewer = world.viewer(party)
    unused = hidden.rsplit(":", 1)[0] + ":424242"  # the same sender and Device
    assert found(world, viewer, hidden) == [] == found(world, viewer, unused), why
    assert work(world, viewer, hidden) == work(world, viewer, unused), why


def test_the_count_sees_the_work_of_a_request_id_that_is_found(world: World) -> None:
    """The measure can fail: LOOKER's Request ID whose response fell in SOUTHENERGY's time
    costs the supplier more than an unused one."""
    viewer = world.viewer(SOUTHENERGY)
    asked, unused = f"{LK_OU}:{ESME_1}:2", f"{LK_OU}:{ESME_1}:424242"
    assert found(world, viewer, asked) == [world.ids["lk_cos_resp"]]
    assert work(world, viewer, asked) != work(world, viewer, unused)


@pytest.mark.parametrize("holds", [1, 33])  # 33: past the 32 branches the engines once wrote
@pytest.mark.parametrize("sent", ["after the last", "between the first two"])
def test_a_request_id_outside_any_number_of_the_viewers_ranges_costs_an_unused_ones_work(
    engine: Engine, holds: int, sent: str
) -> None:
    """A Party that held a Device `holds` times, an hour a day, searches another's Request ID
    whose request went to it the day after the last, or between the first two (after the
    only one, for one). With more ranges than branches the search read every record of the
    Request ID, and the time told that it was sent; then it read one range from the first's
    start to the last's end, and a record between two cost a row read (audit 48h): on
    PostgreSQL until session 49, on SQLite until 50 (228 instructions against 194 here, 33
    ranges). The ranges are now one branch's rows, any number of them, on both engines.
    SQLite's branches a range also differed with one range (180 instructions for the
    Request ID in use, 188 unused: where their seeks landed); its `json_each` seeks do not."""
    world, viewer, hidden, unused = held_and_sent(engine, holds, sent)
    assert found(world, viewer, hidden) == [] == found(world, viewer, unused)
    assert work(world, viewer, hidden) == work(world, viewer, unused)


def test_after_postgresql_analyzes_a_near_empty_store_the_work_is_an_unused_ones(
    pg_engine: Engine,
) -> None:
    """Finding 51f 1: with statistics of monthly partitions of two rows each, PostgreSQL read
    the branch of the records apart from their Request ID by a scan of each partition, not
    by the partial index, and checked the rule before the clause that tells them apart
    (which may leak a row, `substr`): the sender's request cost a look-up of the viewer's
    ranges that an unused Request ID did not. The clause is also said in terms that cannot
    leak, which it checks first."""
    world, viewer, hidden, unused = held_and_sent(pg_engine, 33, "between the first two")
    with pg_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    assert found(world, viewer, hidden) == [] == found(world, viewer, unused)
    assert work(world, viewer, hidden) == work(world, viewer, unused)


def held_and_sent(engine: Engine, holds: int, sent: str) -> tuple[World, Viewer, str, str]:
    """HOLDER's `holds` ranges on ESME_1 and SENDER's request to it after the last or between
    the first two: the world, HOLDER, the Request ID sent and one unused."""
    viewer_user, sender = "90-B3-D5-1F-30-0A-00-01", "90-B3-D5-1F-30-0B-00-01"
    first = parse_time("2025-01-02T00:00:00Z")
    with engine.begin() as conn:
        conn.execute(insert(party), [{"party_id": p, "name": p} for p in ("HOLDER", "SENDER")])
        load_user(conn, User(viewer_user, "HOLDER", "IS"), "HOLDER")
        load_user(conn, User(sender, "SENDER", "IS"), "SENDER")
        load_device(conn, Device(ESME_1, "ESME", 2))
        for day in range(holds):
            start = first + timedelta(days=day)
            load_responsibility(
                conn,
                Responsibility(ESME_1, "HOLDER", "supplier", start, start + timedelta(hours=1)),
            )
        hidden = f"{sender}:{ESME_1}:1"
        after = first + (timedelta(days=holds) if sent == "after the last" else timedelta(hours=12))
        # and the sender's request 9, so that an unused Request ID's seek ends on a row as
        # in any trail, not at the index's end
        append_records(
            conn,
            [
                SatRecord(after, "request", rid, "4.1.1", sender, ESME_1, "", "<p>")
                for rid in (hidden, f"{sender}:{ESME_1}:9")
            ],
        )
    world = cast(World, SimpleNamespace(engine=engine))  # the measures read its engine alone
    with engine.connect() as conn:
        viewer = viewer_for(conn, "HOLDER")
    return world, viewer, hidden, f"{sender}:{ESME_1}:2"


@starts_with_personas
@pytest.mark.parametrize("apart", [False, True])
def test_after_an_analyze_another_users_request_id_still_costs_an_unused_ones_work(
    sqlite_url: str, apart: bool
) -> None:
    """An operator may `ANALYZE` a SQLite store (the service never does). With statistics
    for the identity index and none for the partial index of the records apart from their
    Request ID (empty, it gets no `sqlite_stat1` row), SQLite read that branch by the
    identity index: every record of the Request ID, 198 instructions against 106 here for
    SUNEXPORT's search (session 50 at 1M: 384 against 292). `apart`: with such a record
    stored, so that both indexes have their statistics (SQLite then took the partial one
    unasked). SQLite alone: an operator's ANALYZE of PostgreSQL is the service's own
    routine (BENCHMARKS.md)."""
    engine = open_store(sqlite_url)
    try:
        world = with_lk_alert(engine)
        with engine.begin() as conn:
            if apart:  # LOOKER's User answering another's Request ID
                other = f"{NP_IS}:{ESME_1}:555"
                at = CHANGE_OF_SUPPLIER + timedelta(days=2)
                append_records(
                    conn, [SatRecord(at, "response", other, "4.1.1", LK_OU, ESME_1, "0", "<r>")]
                )
            conn.execute(text("ANALYZE"))
            indexes = conn.execute(text("SELECT idx FROM sqlite_stat1")).scalars().all()
        assert "sqlite_autoindex_sat_record_1" in indexes
        assert ("ix_sat_record_apart_request" in indexes) == apart
        for party, hidden, why in HIDDEN:
            viewer = world.viewer(party)
            unused = hidden.rsplit(":", 1)[0] + ":424242"
            assert found(world, viewer, hidden) == [] == found(world, viewer, unused), why
            assert work(world, viewer, hidden) == work(world, viewer, unused), why
    finally:
        engine.dispose()
