"""store.request_search: a search by another User's Request ID lists what `decide()` lets the
viewer see, each record once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import Search
from servicetrail.store.queries import exchange_of, search_page
from servicetrail.store.writer import append_records
from tests.personas import (
    CHANGE_OF_SUPPLIER,
    ESME_1,
    NP_IS,
    SOUTHENERGY,
    load_personas,
    starts_with_personas,
)


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
