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

from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import build_search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Viewer
from servicetrail.store.queries import search_page
from servicetrail.store.writer import append_records
from tests import personas as P
from tests.store.test_lookup_work import postgres_nodes, sqlite_instructions, statements_sent

HIDDEN_FROM, EMPTY_FROM = parse_time("2027-06-01T00:00:00Z"), parse_time("2027-06-16T00:00:00Z")
WINDOW = timedelta(days=10)
HIDDEN = 200


def alerts_to(user_id: str) -> list[SatRecord]:
    """Device alerts to another User of the viewer's Device: rule 2 hides them."""
    return [
        SatRecord(
            HIDDEN_FROM + timedelta(minutes=n),
            "device_alert",
            f"{user_id}:{P.ESME_1}:{7000 + n}",
            "",
            user_id,
            P.ESME_1,
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


def device_search_work(engine: Engine, viewer: Viewer, start: datetime, scope: str | None):
    """The work of the statement with which a search of ESME_1 over [start, start + WINDOW)
    reads the trail (the viewer's intervals on the Device are read before it)."""
    search = build_search(device_id=P.ESME_1, time_from=start, time_to=start + WINDOW, scope=scope)
    with statements_sent(engine) as sent, engine.connect() as conn:
        items, _ = search_page(conn, viewer, search, 20)
    assert items == []
    [(statement, parameters)] = [(sql, p) for sql, p in sent if "FROM sat_record" in sql]
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, statement, parameters)
    return postgres_nodes(engine, viewer, statement, parameters)


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
