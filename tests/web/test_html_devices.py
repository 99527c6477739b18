"""The Device page (SPEC section 6): the viewer's intervals, exchanges as rows, alerts on the
same time line, other Users' activity marked; server side, on both engines."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest

from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import Cursor
from servicetrail.store.limits import SearchTooBroad
from servicetrail.store.writer import append_records
from servicetrail.web import pages
from servicetrail.web.device_page import timeline
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.web.screen import personas_with, signed_in
from tests.store.work_counted import statements_sent

SIGNED_AT = P.t("2025-04-01T12:00:00Z")
# SUNEXPORT's CV 4 pre-command and its signed command share a Request ID; a lone pre-command
EXTRA = {
    "sx_pre_command": SatRecord(
        SIGNED_AT - timedelta(minutes=2),
        "request",
        P._rid(P.SX_ES, P.ESME_1, 9),
        "6.15.1",
        P.SX_ES,
        P.ESME_1,
        "",
        "<sx secret pre>",
        4,
    ),
    "sx_command": SatRecord(
        SIGNED_AT,
        "request",
        P._rid(P.SX_ES, P.ESME_1, 9),
        "6.15.1",
        P.SX_ES,
        P.ESME_1,
        "",
        "<sx secret signed>",
        5,
    ),
    "sx_lone_pre_command": SatRecord(
        SIGNED_AT + timedelta(hours=1),
        "request",
        P._rid(P.SX_ES, P.ESME_1, 10),
        "6.15.1",
        P.SX_ES,
        P.ESME_1,
        "",
        "<sx secret lone>",
        4,
    ),
}
SECRETS = (
    "lk fw",
    "ag read fw",
    "ws read",
    "ws regs",
    "se tariff",
    "se ok",
    "alert: low credit",
    "sx secret",
    "<np read>",
    "np registers",
)


@pytest.fixture
@P.starts_with_personas
def world(engine):
    return personas_with(engine, EXTRA, (P.NORTHPOWER, P.WIRESCO, P.SUNEXPORT))


def rows_of(page: str) -> list[str]:
    return re.findall(r'<li class="timeline-row (.*?)</details>', page, re.S)


def record_ids(row: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/records/(\d+)"', row)]


def test_exchanges_are_one_row_alerts_their_own_and_others_marked(engine, world) -> None:
    page = signed_in(engine, P.NORTHPOWER).get(
        f"/devices/{P.ESME_1.lower()}"
    )  # any case is accepted
    assert page.status_code == 200
    rows = rows_of(page.text)
    ids = world.ids
    grouped = {tuple(record_ids(row)): row for row in rows}
    # NORTHPOWER's own exchange: request, acknowledgement, response in one row, oldest first
    assert (ids["np_req"], ids["np_ack"], ids["np_resp"]) in grouped
    # the change of supplier: LOOKER's response fell in SOUTHENERGY's period, so it is not here
    lk_row = grouped[(ids["lk_cos_req"], ids["lk_cos_ack"])]
    assert (
        "row-mp141" in lk_row
        and "Looker Analytics" in lk_row
        and "another User’s activity" in lk_row
    )
    assert "as Responsible Supplier" in lk_row
    own_row = grouped[(ids["np_req"], ids["np_ack"], ids["np_resp"])]
    assert "row-own" in own_row and "another User" not in own_row
    # the two own alerts, each a row of its own, on the same time line
    assert sum("timeline-alert" in row for row in rows) == 2
    assert (ids["np_device_alert"],) in grouped and (ids["np_dcc_alert"],) in grouped
    # everything NORTHPOWER may see on the Device, each record once
    shown = [i for row in rows for i in record_ids(row)]
    assert len(shown) == len(set(shown)) == 12 and len(rows) == 7
    times = re.findall(r'<summary>\s*<time datetime="([^"]+)"', page.text)
    assert times == sorted(times, key=lambda t: P.t(t), reverse=True)
    text = unescape(page.text)
    for secret in SECRETS:
        assert secret not in text
    assert "8F35" not in text  # SOUTHENERGY's alert stays SOUTHENERGY's
    # a request's missing code is no "—", which read as a dash between its words (audit 53e)
    assert 'aria-label="none"' not in page.text


def test_only_the_viewers_own_intervals_are_shown(engine, world) -> None:
    def intervals(party: str) -> str:
        page = signed_in(engine, party).get(f"/devices/{P.ESME_1}").text
        return unescape(
            re.search(r'aria-labelledby="intervals-title">(.*?)</section>', page, re.S).group(1)
        )

    northpower, wiresco, sunexport = (
        intervals(P.NORTHPOWER),
        intervals(P.WIRESCO),
        intervals(P.SUNEXPORT),
    )
    assert "Responsible Supplier" in northpower and "2025-01-01 00:00" in northpower
    assert "2025-03-01 00:00" in northpower and "Network Operator" not in northpower
    # each bound says its zone where it is read, not only the note below (audit 63h)
    read = re.sub(r"<[^>]+>", "", northpower)
    assert "2025-01-01 00:00:00.000 UTC to 2025-03-01 00:00:00.000 UTC" in read
    assert "now (open)" not in northpower  # SOUTHENERGY's and WIRESCO's intervals are theirs
    assert (
        "Network Operator" in wiresco
        and "now (open)" in wiresco
        and "Responsible Supplier" not in wiresco
    )
    assert "You have not been this Device’s Responsible Supplier" in sunexport


def test_a_pre_command_is_marked_as_not_reaching_the_device(engine, world) -> None:
    page = signed_in(engine, P.SUNEXPORT).get(f"/devices/{P.ESME_1}").text
    rows = {tuple(record_ids(row)): row for row in rows_of(page)}
    ids = world.ids
    pair = rows[(ids["sx_pre_command"], ids["sx_command"])]
    assert "timeline-pre-command" not in pair and "its signed command did" in pair
    assert "pre-command, did not reach the Device" in pair and "CV 5: signed command" in pair
    lone = rows[(ids["sx_lone_pre_command"],)]
    assert "timeline-pre-command" in lone and "Did not reach the Device." in lone
    assert "sx secret" not in unescape(page)  # own, but the Device page shows titles only


def test_a_device_you_may_see_nothing_of_reads_like_an_empty_one(engine, world) -> None:
    c = signed_in(engine, P.NORTHPOWER)
    never_seen = "00-DB-12-34-56-78-99-99"
    answers = {
        device: c.get(f"/devices/{device}")
        for device in (
            P.GSME_1,  # SOUTHENERGY's gas meter, with traffic NORTHPOWER may not see
            P.PPMID_1,  # a HAN device nobody is responsible for, with LOOKER's traffic
            never_seen,
        )
    }
    assert {a.status_code for a in answers.values()} == {200}
    texts = {a.text.replace(device, "DEVICE") for device, a in answers.items()}
    assert len(texts) == 1 and "Nothing on this Device that you may see." in texts.pop()
    for bad in ("nonsense", "00-DB-12-34-56-78-90", "00-db-12-34-56-78-90-01-02", "%00", "²"):
        answer = c.get(f"/devices/{bad}")
        assert answer.status_code == 404 and answer.text == c.get("/records/999999").text


def test_the_time_line_pages_newest_first_without_overlap(engine, world) -> None:
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    P.t("2025-04-01T00:00:00Z") + timedelta(minutes=n, seconds=s),
                    kind,
                    f"{P.NP_IS}:{P.ESME_S1}:{1000 + n}",
                    "4.1.1",
                    P.NP_IS,
                    P.ESME_S1,
                    code,
                    f"<p{n}/>",
                )
                for n in range(40)
                for s, kind, code in ((0, "request", ""), (5, "response", "I0"))
            ],
        )
    c = signed_in(engine, P.NORTHPOWER)
    first = c.get(f"/devices/{P.ESME_S1}")
    older = re.search(r'href="([^"]+)" rel="next"', first.text).group(1)
    second = c.get(unescape(older))
    assert second.status_code == 200 and "« Newest rows" in second.text
    assert "Older rows »" in first.text  # as the search's "Older records »" (45c)
    pages = [[i for row in rows_of(p.text) for i in record_ids(row)] for p in (first, second)]
    assert len(pages[0]) == 50 and not set(pages[0]) & set(pages[1])
    # 40 exchanges of two, NORTHPOWER's request and AGENTCO's exchange (MP141) before them
    assert len(pages[0]) + len(pages[1]) == 80 + 1 + 2 and 'rel="next"' not in second.text
    assert len(rows_of(first.text)) == 25
    # a page's count is the page's: an analyst read "16 rows" as the Device's (audit 29e)
    assert "25 rows on this page" in first.text
    broken = c.get(f"/devices/{P.ESME_S1}", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 422 and "That page link is no longer valid" in broken.text


@ON_SQLITE_ALONE
def test_a_time_line_past_its_time_limit_says_how_to_narrow_it_here(
    engine, world, monkeypatch
) -> None:
    """The store's words, in lower case, said to narrow it with a Device ID, on the page of
    one, under a count of "0 rows" (audit 53e)."""

    def too_long(*_args, **_kwargs):
        raise SearchTooBroad(10.0)

    monkeypatch.setattr(pages, "party_names", too_long)
    page = signed_in(engine, P.NORTHPOWER).get(f"/devices/{P.ESME_1}")
    assert page.status_code == 422
    said = re.search(r'<div class="notice notice-warn" role="alert"><p>(.*?)</p>', page.text)[1]
    assert (
        unescape(said) == "Reading this Device’s time line took longer than 10 s and was stopped."
    )
    assert "0 rows" not in page.text
    # the narrower search it advises is a link, not a sentence to act out (review 54d)
    start = (datetime.now(timezone.utc) - timedelta(days=30)).date().isoformat()
    link = f"/?device_id={P.ESME_1}&amp;from={start}"
    assert f'<a href="{link}">Search this Device from {start} to now</a>' in page.text
    # an older page's: the 30 days before its first row
    after = Cursor(datetime(2025, 3, 1, 9, 30, 0, 500000, tzinfo=timezone.utc), 7)
    older = signed_in(engine, P.NORTHPOWER).get(
        f"/devices/{P.ESME_1}", params={"cursor": after.encode()}
    )
    assert "Search this Device from 2025-01-30 to 2025-03-01 09:30:00.500000</a>" in older.text


def test_every_device_id_links_to_its_device_page(engine, world) -> None:
    c = signed_in(engine, P.NORTHPOWER)
    link = f'href="/devices/{P.ESME_1}"'
    assert link in c.get("/", params={"device_id": P.ESME_1}).text
    record = c.get(f"/records/{world.ids['np_device_alert']}").text
    assert record.count(link) >= 3  # the breadcrumb, the details and the triggers panel


def test_rows_follow_the_time_they_show() -> None:
    def entry(i: int, at: str, kind: str, request_id: str) -> dict:
        return {
            "id": i,
            "logged_at": at,
            "kind": kind,
            "request_id": request_id,
            "access": "own",
            "response_code": "",
            "command_variant": None,
        }

    newest_first = [
        entry(4, "2025-03-01T00:00:00Z", "response", "a"),
        entry(3, "2025-02-28T23:59:59.999999Z", "request", "b"),
        entry(2, "2025-02-28T23:59:59Z", "request", "a"),
        entry(1, "2025-02-28T00:00:00Z", "response", ""),
    ]
    rows = timeline(newest_first)
    assert [[m["id"] for m in row.messages] for row in rows] == [[3], [2, 4], [1]]


def test_an_alerts_record_page_names_its_identifier_for_what_it_is(engine, world) -> None:
    """An alert answers no request: its record page's exchange says its identifier is its
    DUIS ResponseID, not a Request ID (audit 22d); a response's still names its Request ID."""
    c = signed_in(engine, P.NORTHPOWER)
    alert = c.get(f"/records/{world.ids['np_device_alert']}").text
    assert "An alert answers no request" in alert and "its DUIS ResponseID" in alert
    assert "The request, its acknowledgement and its responses" not in alert
    response = c.get(f"/records/{world.ids['np_resp']}").text
    assert "The request, its acknowledgement and its responses" in response
    # and its Details: an alert's identifier and code called what they are (audits 42f, 43c)
    assert "<dt>Alert ID</dt>" in alert and "<dt>Alert code</dt>" in alert
    assert "<dt>Request ID</dt>" not in alert and "<dt>Response code</dt>" not in alert
    assert "<dt>Request ID</dt>" in response and "<dt>Response code</dt>" in response


def test_every_time_outside_a_utc_column_says_utc(engine, world) -> None:
    """The Device time line and the exchange panel showed bare times, the footer alone saying
    UTC (audit 42f); the search table's column says it once in its header."""
    c = signed_in(engine, P.NORTHPOWER)
    time_line = c.get(f"/devices/{P.ESME_1}").text.partition('class="device-timeline"')[2]
    exchange = c.get(f"/records/{world.ids['np_resp']}").text.partition("exchange-title")[2]
    for part in (time_line, exchange):
        shown = re.findall(r"<time datetime=[^>]+>(.*?)</time>", part, re.S)
        assert len(shown) > 2 and all(text.endswith(" UTC") for text in shown), shown


def test_intervals_are_shown_to_the_instant_they_hold(engine, world) -> None:
    """To the minute, an interval from 10:00:30.5 read as 10:00 and seemed to take in the
    records of the half minute before it; year 1 read as `1-01-01` (audit 25b)."""
    from servicetrail.domain.model import Device, Responsibility
    from servicetrail.store.registry import load_device, load_responsibility

    device = "00-DB-12-00-00-00-25-0B"
    with engine.begin() as conn:
        load_device(conn, Device(device, "ESME", 2))
        load_responsibility(
            conn,
            Responsibility(
                device,
                P.NORTHPOWER,
                "supplier",
                P.t("0001-01-01T00:00:00Z"),
                P.t("2026-05-01T11:00:30.5+01:00"),
            ),
        )
    page = signed_in(engine, P.NORTHPOWER).get(f"/devices/{device}").text
    shown = re.search(r'aria-labelledby="intervals-title">(.*?)</section>', page, re.S).group(1)
    text = " ".join(re.sub(r"<[^>]+>", " ", unescape(shown)).split())
    assert (
        "Responsible Supplier , 0001-01-01 00:00:00.000 UTC to 2026-05-01 10:00:30.500 UTC" in text
    )


@pytest.mark.parametrize(
    "path",
    [
        f"/devices/{P.ESME_1}",
        f"/devices/{P.ESME_1}?scope=own",
        "/",
        "/?scope=own",
        f"/?device_id={P.ESME_1}",
        f"/?request_id={P._rid(P.NP_IS, P.ESME_1, 1)}",
    ],
)
def test_the_screens_that_show_titles_read_no_payload(engine, world, path) -> None:
    """The search and Device pages show no payload, yet read every own one on the page: a
    page of a supplier's own firmware images held 0.8-1.1 GB in the server to send 52-67 KB
    of HTML (audit 30a). No statement a screen sends reads the payloads' table."""

    browser = signed_in(engine, P.NORTHPOWER)
    with statements_sent(engine) as sent:
        page = browser.get(path)
    assert page.status_code == 200 and "<np read>" not in page.text
    assert sent and not [sql for sql, _ in sent if "sat_payload" in str(sql)]


def test_title_only_is_said_in_one_way_on_every_screen(engine, world) -> None:
    """A record page, the Device time line, the possible triggers and the badges' legend
    each said "title only" in words of their own ("its title only", "titles only", "title
    only: ...") and mixed straight and curly apostrophes (review of the screen, 45c)."""
    c = signed_in(engine, P.NORTHPOWER)
    ids = world.ids
    pages = {
        "device": c.get(f"/devices/{P.ESME_1}").text,
        "record": c.get(f"/records/{ids['lk_cos_req']}").text,
        "search": c.get("/", params={"device_id": P.ESME_1}).text,
        "watches": c.get("/watches").text,
    }
    said = "title only, the payload stays with that User"
    for name, page in pages.items():
        text = unescape(re.sub(r"<[^>]+>", " ", page))
        phrases = re.findall(r"[Tt]itles? only[^.;)]*", text)
        assert phrases, name
        for phrase in phrases:
            assert phrase.lower().startswith(said.lower()) or phrase in (
                "title only, as above",
                "title only, even of your own records",  # a watch's events
            ), (
                name,
                phrase,
            )
        # (but the DUIS codes' meanings, which keep the reference's words: tests/domain)
        ours = re.sub(
            r'<details class="legend" id="code-legend">.*?</details>', "", page, flags=re.S
        )
        ours = unescape(re.sub(r"<[^>]+>", " ", ours))
        assert not re.search(r"[A-Za-z]'[A-Za-z]", ours), (name, re.findall(r".{20}'.{5}", ours))
