"""The Who-looked page (SPEC section 8), server side on both engines: a Party's own entries
of the access log, newest first, paged, between two times; never another Party's; reading
it adds no entry."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from servicetrail.domain.access_log import Reader, Tally
from servicetrail.domain.search import Cursor
from servicetrail.store.access_log import append_entries
from servicetrail.store.access_tables import access_log
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.web.screen import personas_with, signed_in

ROWS = re.compile(r'<tr role="row" id="entry-(\d+)"')


@pytest.fixture
@P.starts_with_personas
def world(engine):
    return personas_with(engine, {}, (P.SOUTHENERGY, P.WIRESCO))


def entry_ids(page: str) -> list[int]:
    return [int(found) for found in ROWS.findall(page)]


def entries_of(engine, party: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(access_log).where(access_log.c.party_id == party)
        ).scalar_one()


def test_a_party_sees_its_own_reads_newest_first_and_no_one_elses(engine, world) -> None:
    south, wires = signed_in(engine, P.SOUTHENERGY), signed_in(engine, P.WIRESCO)
    assert "to-results" not in wires.get("/access-log").text  # no entries: nothing to skip to
    wires.get("/", params={"device_id": P.ESME_1})  # another Party's read
    south.get("/", params={"device_id": P.ESME_1, "kind": "request"})
    own = world.ids["se_resp"]
    south.get(f"/records/{own}")
    page = south.get("/access-log")
    assert page.status_code == 200
    shown = entry_ids(page.text)
    assert len(shown) == entries_of(engine, P.SOUTHENERGY) == 2
    # newest first: the record page, then the search (ids need not follow time on PostgreSQL)
    record_row = page.text.index(f'Record <a href="/records/{own}">{own}</a>')
    assert record_row < page.text.index("device_id")
    assert "wiresco" not in page.text  # WIRESCO's account's read is not listed
    assert "device_id" in page.text and P.ESME_1 in page.text and "Screen" in page.text
    assert '<a href="/access-log" aria-current="page">Who looked</a>' in page.text
    # at 390 px the form filled the first screen (an auditor's, with its Party, more) and
    # nothing led past it (review of the screen, 56): the search page's link, hidden from a
    # wide screen's eye by the same rule
    assert '<a href="#entries">Skip the form to the 2 entries shown ↓</a>' in page.text
    assert '<section class="results" id="entries"' in page.text


def test_reading_the_access_log_adds_no_entry(engine, world) -> None:
    south = signed_in(engine, P.SOUTHENERGY)
    south.get("/")
    before = entries_of(engine, P.SOUTHENERGY)
    for _ in range(3):
        assert south.get("/access-log").status_code == 200
    assert entries_of(engine, P.SOUTHENERGY) == before == 1


def test_mp141_devices_link_to_their_device_pages_and_the_rest_fold_away(engine, world) -> None:
    tally = Tally()
    devices = [f"00-00-00-00-00-00-00-{n:02X}" for n in range(1, 6)]
    tally.count({"access": "mp141", "device_id": d} for d in devices)
    with engine.begin() as conn:
        append_entries(conn, [(Reader(P.SOUTHENERGY, "tok-holder", "api"), "search", {}, tally)])
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log").text
    for device in devices:
        assert f'href="/devices/{device}"' in page
    assert "<summary>2 more</summary>" in page and "5 MP141" in page and "API" in page


def test_pages_of_entries_give_each_once(engine, world) -> None:
    reads = [(Reader(P.SOUTHENERGY, "cli", "cli"), "search", {"n": n}, Tally()) for n in range(57)]
    with engine.begin() as conn:
        append_entries(conn, reads)
    south = signed_in(engine, P.SOUTHENERGY)
    first = south.get("/access-log")
    older = re.search(r'href="([^"]+)" rel="next">Older entries', first.text)
    assert older is not None and len(entry_ids(first.text)) == 50
    second = south.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and "Page 2" in second.text
    assert "Older entries" not in second.text and "« Newest entries" in second.text
    together = entry_ids(first.text) + entry_ids(second.text)
    assert len(together) == len(set(together)) == 57


# a row's time: its exact value, and the day and the clock the screen shows
SHOWN_TIME = re.compile(r'<time datetime="([^"]+)"><span>([^<]+)</span> <span>([^<]+)</span>')


def to_the_millisecond(iso: str) -> str:
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d}"


def test_an_entrys_time_is_shown_to_the_millisecond_as_a_records_is(engine, world) -> None:
    """Who looked showed `16:44:34.338544`, the server clock's microseconds, beside Search's
    `10:02:00.123` (review of the screen, 64d): cut to the millisecond, never rounded up
    past the instant, and exact in the `datetime` attribute. Three entries, each a
    transaction's own clock reading: one of them has a part of a millisecond."""
    for n in range(3):
        with engine.begin() as conn:
            append_entries(
                conn, [(Reader(P.SOUTHENERGY, "cli", "cli"), "search", {"n": n}, Tally())]
            )
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log").text
    shown = SHOWN_TIME.findall(page)
    assert len(shown) == 3
    for exact, day, clock in shown:
        assert f"{day} {clock}" == to_the_millisecond(exact), exact


def test_entries_between_two_times(engine, world) -> None:
    south = signed_in(engine, P.SOUTHENERGY)
    south.get("/")
    today = datetime.now(timezone.utc).date()
    shown = south.get("/access-log", params={"from": str(today)})
    assert len(entry_ids(shown.text)) == 1
    later = south.get("/access-log", params={"from": str(today + timedelta(days=1))})
    assert later.status_code == 200 and entry_ids(later.text) == []
    assert "No one of your Party has read the trail between these times" in later.text
    before = south.get("/access-log", params={"to": str(today)})
    assert entry_ids(before.text) == []


def test_reads_narrowed_to_mp141_titles_a_kind_and_a_person(engine, world) -> None:
    """ "Which of our reads returned other Users' titles, and who made them" (audit 43c),
    without reading every row; the filters stay on the next page's link."""
    south = signed_in(engine, P.SOUTHENERGY)
    south.get("/", params={"device_id": P.ESME_1})  # SOUTHENERGY's own and MP141 titles
    south.get("/", params={"scope": "own"})
    south.get(f"/records/{world.ids['se_resp']}")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                access_log.c.id,
                access_log.c.action,
                access_log.c.actor,
                access_log.c.mp141_records_returned,
            ).where(access_log.c.party_id == P.SOUTHENERGY)
        ).all()
    actor = rows[0].actor

    def shown(**asked) -> list[int]:
        page = south.get("/access-log", params=asked)
        assert page.status_code == 200
        return sorted(entry_ids(page.text))

    with_titles = sorted(row.id for row in rows if row.mp141_records_returned)
    assert with_titles and len(with_titles) < len(rows)
    assert shown(reads="mp141") == with_titles
    assert shown(action="record") == [row.id for row in rows if row.action == "record"]
    assert shown(actor=actor, action="search") == sorted(
        row.id for row in rows if row.action == "search"
    )
    # the name as one signs in with it, in any case (review of the screen, 55e)
    assert shown(actor=actor.upper(), action="search") == shown(actor=actor, action="search")
    assert shown(actor="somebody.else") == []
    page = south.get("/access-log", params={"actor": "somebody.else"}).text
    assert "No one of your Party has read the trail in this way yet" in page


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("from=yesterday", "From (UTC)"),
        ("to=2025-13-01", "To (UTC)"),
        ("from=2025-02-01&from=2025-03-01", "From (UTC)"),
        ("cursor=%25%25garbage", "That page link is no longer valid"),
        ("action=delete", "not a kind of read"),
        ("reads=own", "Reads"),
        ("actor=a%01b", "no controls"),
        ("actor=a%C2%85b", "no controls"),  # C1 controls and direction marks too
        ("actor=a%E2%80%AEb", "no controls"),
    ],
)
@ON_SQLITE_ALONE
def test_bad_dates_and_stale_links_are_said_not_crashed(engine, world, query, said) -> None:
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log?" + query)
    assert page.status_code == 422 and said in page.text
    assert entry_ids(page.text) == []


@ON_SQLITE_ALONE
def test_a_read_past_its_time_limit_says_how_to_narrow_it_here(engine, world, monkeypatch) -> None:
    """The store's words, in lower case, said to narrow it with a Device ID or a Request ID,
    which this page's form does not have (audit 53e)."""
    from servicetrail.store.limits import SearchTooBroad
    from servicetrail.web import access_page

    def too_long(*_args, **_kwargs):
        raise SearchTooBroad(10.0)

    monkeypatch.setattr(access_page, "readable_page", too_long)
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log")
    assert page.status_code == 422
    assert (
        "<p>The search took longer than 10 s and was stopped. Narrow it: a shorter period, one "
        "person (Who) or one kind of read (What).</p>" in page.text
    )
    # not the way already taken (review of the screen, 54d)
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log", params={"actor": "somebody"})
    assert "Narrow it: a shorter period or one kind of read (What).</p>" in page.text


@ON_SQLITE_ALONE
def test_the_title_says_what_the_page_lists_and_for_what(engine, world) -> None:
    """Every page of entries was titled "Who looked", in a browser's tabs and history and
    where a screen reader starts, whatever its filters (review of the screen, 54d)."""
    south = signed_in(engine, P.SOUTHENERGY)
    south.get("/")
    title = re.compile(r"<title>(.*?)</title>")
    assert title.search(south.get("/access-log").text)[1] == "Who looked: 1 entry · servicetrail"
    asked = {"actor": "somebody", "action": "record", "reads": "mp141", "from": "2025-02-10"}
    assert title.search(south.get("/access-log", params=asked).text)[1] == (
        "Who looked: no entries for Who somebody, What Record, Reads Other Users’ titles "
        "(MP141), From 2025-02-10 · servicetrail"
    )


def test_filters_are_shown_as_asked_but_never_run(engine, world) -> None:
    asked = {"device_id": "<script>alert(1)</script>", "srv": "x\u202ey"}
    with engine.begin() as conn:
        append_entries(conn, [(Reader(P.SOUTHENERGY, "a\u202eb", "api"), "search", asked, Tally())])
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\u202e" not in page  # direction marks shown as marks, as everywhere on the screen


@ON_SQLITE_ALONE
def test_the_page_needs_a_signed_in_account(client) -> None:
    answer = client.get("/access-log", follow_redirects=False)
    assert answer.status_code == 303 and "/login" in answer.headers["location"]


def test_a_record_id_filter_that_is_no_id_is_shown_as_asked_not_linked(engine, world) -> None:
    reads = [
        (Reader(P.SOUTHENERGY, "tok", "api"), "search", {"record_id": "12<b>"}, Tally()),
        (Reader(P.SOUTHENERGY, "tok", "api"), "record", {"record_id": True}, Tally()),
        (Reader(P.SOUTHENERGY, "tok", "api"), "why", {"record_id": 7}, Tally()),
        (Reader(P.SOUTHENERGY, "south", "web"), "record", {"record_id": 999999}, Tally()),
    ]
    with engine.begin() as conn:
        append_entries(conn, reads)
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log").text
    assert "12&lt;b&gt;" in page and 'href="/records/12' not in page
    assert 'href="/records/True"' not in page and "True" in page
    assert 'Why visible</span> · <a href="/records/7">record 7</a>' in page
    # a record page that read nothing linked to "Not found" (review of the screen, 55e)
    assert '<span class="action">Record 999999</span>' in page
    # and says what it answered: "Record 999999", "0" read like an empty record (audit 63h)
    assert page.count("answered “Not found”: no such record, or not one your Party may see") == 1


@ON_SQLITE_ALONE  # the page's words: no engine's
def test_a_record_opened_from_a_search_says_so_not_back_as_a_filter(engine, world) -> None:
    """`back` is the screen's way back to the search a record was opened from: shown as a
    filter, it read as if the Party had asked for it (review of the screen, 54d). The log
    keeps it as asked; the page says where the record was opened from, and links to it."""
    own = world.ids["se_resp"]
    back = f"device_id={P.ESME_1}&kind=response"
    south = signed_in(engine, P.SOUTHENERGY)
    south.get(f"/records/{own}", params={"back": back, "window": "60"})
    page = south.get("/access-log", params={"action": "record"}).text
    search = f"/?device_id={P.ESME_1}&amp;kind=response"
    assert f'opened from <a href="{search}">a search</a>' in page
    assert ">back<" not in page and "window" in page  # the page's other parameters still shown


def test_a_read_of_a_watchs_events_names_the_watch(engine, world) -> None:
    """ "watch 3" named nothing the screen shows: the Party's watch is named, one since
    deleted says so (review of the screen, 55e)."""
    from servicetrail.domain.watches import watch_spec
    from servicetrail.store.watches import create_watch

    with engine.begin() as conn:
        made = create_watch(conn, P.SOUTHENERGY, watch_spec({"name": "supply <off>"}), None)
        web, api = Reader(P.SOUTHENERGY, "south", "web"), Reader(P.SOUTHENERGY, "tok", "api")
        append_entries(
            conn,
            [
                (web, "watch_events", {"watch": made["id"]}, Tally()),
                (api, "stream", {"watch_id": made["id"] + 1000, "after": 5}, Tally()),
            ],
        )
    page = signed_in(engine, P.SOUTHENERGY).get("/access-log").text
    assert "watch</span> <bdi class=\"mono\">“supply &lt;off&gt;”</bdi>" in page
    assert f"watch_id</span> <bdi class=\"mono\">{made['id'] + 1000} (deleted)</bdi>" in page


@ON_SQLITE_ALONE  # the bounds are the engines' same
def test_narrowed_reads_take_a_heavy_slot(engine, world) -> None:
    """A page narrowed to an actor, a kind or MP141 titles walks every entry of the Party's
    in the period that fails the filter (audit 49d: 2M entries, a day of a Party's cheap reads,
    1.7 s a page that matched none): it holds a heavy slot, as a broad search does, and is
    refused while the Party's is taken; the plain page is not."""
    south = signed_in(engine, P.SOUTHENERGY)
    limits = south.app.state.limits
    limits.heavy_wait = 0
    with limits.holding(P.SOUTHENERGY, "heavy"):
        assert south.get("/access-log", params={"actor": "nobody"}).status_code == 429
        assert south.get("/access-log", params={"reads": "mp141"}).status_code == 429
        assert south.get("/access-log").status_code == 200
    assert south.get("/access-log", params={"actor": "nobody"}).status_code == 200


def test_a_device_pages_read_says_device_page_not_a_search_by_its_device(engine, world) -> None:
    """A Device page's read is stored as SPEC 8's search by its Device, and Who looked said
    "Search, device_id X", as for a search typed by the same Device (review of the screen,
    55). A query that names the mark as a parameter is a search still. An older page's
    cursor was shown as its token ("cursor MjAyNS0w..."), which told an analyst nothing
    (review of the screen, 56): it says where the page began; a token the server did not
    issue, as sent."""
    south = signed_in(engine, P.SOUTHENERGY)
    after = Cursor(datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc), 7).encode()
    assert south.get(f"/devices/{P.ESME_1}", params={"cursor": after}).status_code == 200
    assert south.get("/", params={"device_id": P.GSME_1, "device_page": "True"}).status_code == 200
    with engine.begin() as conn:  # (a search by a cursor not ours reads nothing, logs nothing)
        reader = Reader(P.SOUTHENERGY, "tok-holder", "api")
        append_entries(conn, [(reader, "search", {"cursor": "not-ours"}, Tally())])
    page = south.get("/access-log").text
    assert page.count("Device page <a") == 1
    forged, search_row, page_row = page.split('<tr role="row" id="entry-')[1:4]  # newest first
    assert f'Device page <a class="mono" href="/devices/{P.ESME_1}">' in page_row
    assert "device_id" not in page_row and "device_page" not in page_row
    assert "older than 2025-03-01 09:30:00.000 UTC" in page_row and after not in page
    assert "not-ours" in forged
    assert 'class="action">Search<' in search_row and P.GSME_1 in search_row
    # the kind of read to narrow to says which it takes in: SPEC 8's action is a search
    narrowed = south.get("/access-log", params={"action": "search"}).text
    assert '<option value="search" selected>Search (Device pages too)</option>' in narrowed
    assert narrowed.count("Device page <a") == 1
