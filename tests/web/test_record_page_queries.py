"""The record page reads a bounded number of statements however long its exchange is
(issue 12: it once explained each message of the exchange with a read of its own)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import event

from servicetrail.domain.model import SatRecord
from servicetrail.store.engine import open_store
from servicetrail.store.queries import MAX_EXCHANGE
from tests import personas as P
from tests.web.screen import personas_with, signed_in

SENT = P.t("2025-04-02T08:00:00Z")


def exchange(counter: int, responses: int) -> dict[str, SatRecord]:
    """LOOKER's request to ESME-1, its acknowledgement and `responses` responses: WIRESCO, the
    Network Operator, sees all of them under MP141."""
    rid = P._rid(P.LK_OU, P.ESME_1, counter)
    out = {
        f"req{counter}": SatRecord(SENT, "request", rid, "11.2", P.LK_OU, P.ESME_1, "", "<lk>"),
        f"ack{counter}": SatRecord(
            SENT + timedelta(seconds=1), "acknowledgement", rid, "11.2", P.LK_OU, P.ESME_1, "I0", ""
        ),
    }
    for i in range(responses):
        out[f"resp{counter}_{i}"] = SatRecord(
            SENT + timedelta(seconds=2 + i),
            "response",
            rid,
            "11.2",
            P.LK_OU,
            P.ESME_1,
            "I0",
            f"<lk {i}>",
            response_id=f"{P.ESME_1}:{P.LK_OU}:{i}",
        )
    return out


@pytest.fixture
@P.starts_with_personas
def world(engine):
    long = exchange(803, MAX_EXCHANGE)  # its request, acknowledgement and responses: 2 more
    return personas_with(engine, {**exchange(801, 1), **exchange(802, 40), **long}, (P.WIRESCO,))


def statements_for(engine, client, path: str) -> int:
    seen = []

    def count(*_args) -> None:
        seen.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        page = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert page.status_code == 200
    return len(seen)


def test_the_record_page_reads_the_same_number_of_statements_for_3_messages_and_for_42(
    engine, world
):
    client = signed_in(engine, P.WIRESCO)
    small = statements_for(engine, client, f"/records/{world.ids['req801']}")
    large = statements_for(engine, client, f"/records/{world.ids['req802']}")
    page = client.get(f"/records/{world.ids['req802']}").text
    assert page.count("visible as Network Operator") >= 42  # every message of the exchange is shown
    assert large == small


def test_an_exchange_longer_than_a_page_says_so_and_links_to_all_of_it(engine, world):
    """Its newest messages are listed, and the page says the oldest (the request among them)
    are not, instead of showing the newest 200 as if they were the whole exchange."""
    client = signed_in(engine, P.WIRESCO)
    newest = client.get(f"/records/{world.ids[f'resp803_{MAX_EXCHANGE - 1}']}").text
    assert f"the newest {MAX_EXCHANGE} messages" in newest
    assert f"Only its newest {MAX_EXCHANGE} are listed: its older messages are not" in newest
    rid = P._rid(P.LK_OU, P.ESME_1, 803)
    assert f'href="/?request_id={quote(rid)}"' in newest
    listed = newest.split('aria-labelledby="exchange-title"')[1].split("</section>")[0]
    assert listed.count('<li class="message') == MAX_EXCHANGE
    assert f'href="/records/{world.ids["req803"]}"' not in listed
    # the request's own page lists it too, after the newest
    request_page = client.get(f"/records/{world.ids['req803']}").text
    assert f"the newest {MAX_EXCHANGE} messages" in request_page
    assert "are listed, and this record after them" in request_page
    assert 'aria-current="true"' in request_page
    # an exchange of a page or less says nothing of the kind
    assert "older messages are not" not in client.get(f"/records/{world.ids['req802']}").text


@P.starts_with_personas
def test_a_record_page_not_found_reads_who_is_signed_in_once(sqlite_url: str) -> None:
    """The 404 page names who is signed in, as the route had read it: read again there (the
    session, the Party, and the navigation's unread count over the watches' events), a web
    404 cost twice the store's work of the API's (audit 50e). SQLite alone: which
    statements a page sends is the web's, not the engine's."""
    engine = open_store(sqlite_url)
    personas_with(engine, {}, (P.WIRESCO,))
    client = signed_in(engine, P.WIRESCO)
    seen: list[str] = []

    def keep(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        page = client.get("/records/999999999")
    finally:
        event.remove(engine, "before_cursor_execute", keep)
        engine.dispose()
    assert page.status_code == 404 and "wiresco" in page.text.lower()
    assert sum("FROM web_session" in s for s in seen) == 1
    assert sum("FROM watch_event" in s for s in seen) == 1
