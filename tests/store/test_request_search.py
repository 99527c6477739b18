"""store.request_search: a search by another User's Request ID lists what `decide()` lets the
viewer see, each record once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import Search
from servicetrail.store.queries import exchange_of, search_page
from servicetrail.store.writer import append_records
from tests.personas import (
    CHANGE_OF_SUPPLIER,
    ESME_1,
    LK_OU,
    NP_IS,
    SOUTHENERGY,
    WIRESCO,
    WS_ED,
    load_personas,
    starts_with_personas,
    t,
)
from tests.store.stored_times import _stored


@starts_with_personas
def test_a_request_id_stored_in_lower_case_is_listed_once(engine: Engine) -> None:
    """The writer stores a Request ID as it is given, and a record page asks for its exchange
    by the Request ID as stored. Written in lower case, NP_IS's request on ESME-1 in
    SOUTHENERGY's time was both apart from its Request ID (the index compares the stored
    text's parts with the upper-case User ID) and in the supplier's range (the search
    compared the parsed, upper-case parts): the supplier saw it twice, on both engines."""
    world = load_personas(engine)
    asked = f"{NP_IS}:{ESME_1}:777".lower()
    request = SatRecord(
        CHANGE_OF_SUPPLIER + timedelta(days=6), "request", asked, "4.1.1", NP_IS, ESME_1, "", "<p>"
    )
    with engine.begin() as conn:
        append_records(conn, [request])
    viewer = world.viewer(SOUTHENERGY)
    with engine.connect() as conn:
        found, _ = search_page(conn, viewer, Search(request_id=asked), 20)
        exchange, _ = exchange_of(conn, viewer, asked)
    assert [(i["request_id"], i["access"]) for i in found] == [(asked, "mp141")]
    assert [i["id"] for i in exchange] == [found[0]["id"]]


@pytest.mark.parametrize("sender", [WS_ED, NP_IS], ids=["own form", "another's form"])
@starts_with_personas
def test_index_rows_gone_stale_leave_a_request_id_page_whole_with_its_cursor(
    engine: Engine, sender: str
) -> None:
    """Audit 48h 5: a Request ID's page takes the newest index rows of the viewer's that carry
    it, then the rule on top. On SQLite (PostgreSQL's row security drops the rows sooner) the
    rule dropped stale ones after the LIMIT: the page came back short, with no next cursor,
    though more records were the viewer's to see. Thirty LOOKER requests on ESME-1 carry the
    Request ID (apart from it: their User is not its sender), which WIRESCO sees as titles
    until its interval is cut, in the registry alone, before the newest ten."""
    world = load_personas(engine)
    asked = f"{sender}:{ESME_1}:5"
    april = t("2025-04-01T00:00:00Z")
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    april + timedelta(minutes=n),
                    "request",
                    asked,
                    "11.2",
                    LK_OU,
                    ESME_1,
                    "",
                    "<b/>",
                )
                for n in range(30)
            ],
        )
        conn.execute(
            text(
                "UPDATE responsibility SET valid_to = :end "
                "WHERE party_id = 'WIRESCO' AND device_id = :device"
            ),
            {"end": _stored(engine, april + timedelta(minutes=20)), "device": ESME_1},
        )
    viewer = world.viewer(WIRESCO)
    search = Search(request_id=asked)
    with engine.connect() as conn:
        everything, _ = search_page(conn, viewer, search, 100)
        first, cursor = search_page(conn, viewer, search, 5)
    assert len(everything) == 20
    assert [i["id"] for i in first] == [i["id"] for i in everything[:5]]
    assert cursor is not None
