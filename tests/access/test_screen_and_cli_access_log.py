"""Who looked (SPEC section 8) through the screen and the command line, on both engines: each
page or command that shows SAT records writes one entry; the unread count in the navigation
writes none; an auditor's screen is the Who-looked page and 403 elsewhere; `servicetrail
access-log` prints JSON Lines."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from servicetrail.cli import main

from servicetrail.domain.access_log import MAX_FILTER_VALUE, MAX_FILTERS, MAX_FILTERS_TEXT
from servicetrail.domain.watches import watch_spec
from servicetrail.store.access_log import EntryFilter, iter_entries
from servicetrail.domain.search import Cursor, Search
from servicetrail.store.accounts import create_account
from servicetrail.store.queries import iter_search, viewer_for
from servicetrail.store.watch_matcher import catch_up
from servicetrail.store.watches import create_watch
from servicetrail.web.app import create_app
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.access.conftest import LATE_REQUEST_ID
from tests.personas import starts_with_personas
from tests.web.screen_sign_in import PASSWORD, TOKEN, sign_in


@pytest.fixture
@starts_with_personas
def world(engine):
    built = P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "np.analyst", P.NORTHPOWER, PASSWORD)
        create_account(conn, "the.auditor", None, PASSWORD)
    return built


def signed_in(engine, username: str) -> TestClient:
    client = TestClient(create_app(engine), raise_server_exceptions=False)
    assert sign_in(client, username).status_code == 303
    return client


def own_record(world) -> int:
    """A record of NORTHPOWER's own traffic."""
    return next(world.ids[name] for name, r in world.records.items() if r.user_id == P.NP_IS)


def logged(engine) -> list:
    with engine.connect() as conn:
        return list(iter_entries(conn, EntryFilter()))


def test_each_screen_page_that_shows_records_writes_one_entry(engine, world):
    np = signed_in(engine, "np.analyst")
    one = own_record(world)
    pages = [
        ("/", "search"),
        (f"/?device_id={P.ESME_1}", "search"),
        (f"/records/{one}", "record"),
        (f"/devices/{P.ESME_1}", "search"),
    ]
    for path, action in pages:
        before = len(logged(engine))
        assert np.get(path).status_code == 200, path
        after = logged(engine)
        assert len(after) == before + 1, path
        assert (after[0].action, after[0].interface, after[0].actor) == (
            action,
            "web",
            "np.analyst",
        )
    # the Device page's read, a search by its Device, says which page asked (review 55)
    device_page, device_search = [e.filters for e in logged(engine) if "device_id" in e.filters]
    assert device_page == {"device_id": P.ESME_1, "device_page": True}
    assert device_search == {"device_id": P.ESME_1}


@pytest.mark.parametrize(
    ("shown", "listed", "mp141"),
    [
        # NORTHPOWER's own response: its exchange (request, acknowledgement, response), and
        # among the triggers its request again, linked by Request ID and in the hour before
        ("np_resp", ("np_req", "np_ack", "np_resp"), 0),
        # WIRESCO's response, titles to NORTHPOWER (its supplier): the exchange and the
        # request again among the triggers
        ("ws_resp", ("ws_req", "ws_resp"), 2),
    ],
)
def test_a_record_listed_twice_on_a_record_page_is_counted_once(
    engine, world, shown, listed, mp141
):
    """SPEC section 8: records_returned is the records the answer returned. A record page
    shows the record, its exchange (the record among it) and its possible triggers (the
    exchange's request among them): each record once, however many times it is listed; a
    count of every listing made NORTHPOWER's own response page five reads of three records,
    and WIRESCO's two titles four MP141 records (audit 27c)."""
    np = signed_in(engine, "np.analyst")
    page = np.get(f"/records/{world.ids[shown]}?window=60")
    assert page.status_code == 200
    for name in set(listed) - {shown}:  # each is on the page
        assert f"/records/{world.ids[name]}" in page.text, name
    [entry] = logged(engine)
    assert (entry.action, entry.records_returned, entry.mp141_records_returned) == (
        "record",
        len(listed),
        mp141,
    )


def test_a_search_pages_hostile_filters_are_stored_bounded(engine, world):
    """The screen keeps a query string's parameters as asked, unknown ones too: at most
    MAX_FILTERS of them, each cut to MAX_FILTER_VALUE characters, NFC, no NUL."""
    odd = "\u202e\U0001f4a3e\u0301" + "\ud800".encode("utf-8", "surrogatepass").decode(
        "utf-8", "replace"
    )
    params = {f"p{n:02d}": odd for n in range(MAX_FILTERS + 10)}
    params["p00"] = odd * 300  # longer than a value may be
    params["device_id"] = P.ESME_1
    assert signed_in(engine, "np.analyst").get("/", params=params).status_code == 200
    filters = logged(engine)[0].filters
    assert len(filters) == MAX_FILTERS
    assert all(len(v) <= MAX_FILTER_VALUE and "\x00" not in v for v in filters.values())
    assert filters["p01"] == "\u202e\U0001f4a3\u00e9" + "\ufffd" * 3
    assert len(filters["p00"]) == MAX_FILTER_VALUE


def test_an_entrys_filters_hold_so_many_characters_in_all(engine, world):
    """24 parameters the screen ignores, 500 characters each, made each entry 11.7 KB: one
    session grew the store by 6 GB an hour (audit 27b). The read's own are kept first."""
    junk = {f"x{n:02d}": "j" * 500 for n in range(MAX_FILTERS)}
    record = own_record(world)
    np = signed_in(engine, "np.analyst")
    assert np.get(f"/records/{record}", params=junk).status_code == 200
    assert np.get("/", params={**junk, "device_id": P.ESME_1}).status_code == 200
    for entry in logged(engine):
        text = sum(len(name) + len(str(value)) for name, value in entry.filters.items())
        assert text <= MAX_FILTERS_TEXT, entry.filters
    by_action = {entry.action: entry for entry in logged(engine)}
    assert by_action["record"].filters["record_id"] == record
    assert by_action["search"].filters["device_id"] == P.ESME_1
    # names a read takes elsewhere, sent first with long values, do not push out the Device
    # the search was for (review 27e: kept in the order sent, they filled the entry)
    unused = {name: name[0].upper() * 510 for name in ("window", "after", "party_id", "limit")}
    assert np.get("/", params={**unused, "device_id": P.ESME_1}).status_code == 200
    newest = max(logged(engine), key=lambda entry: entry.id)
    assert newest.filters["device_id"] == P.ESME_1, newest.filters


def test_a_pages_own_parameters_come_before_those_other_reads_take(engine, world):
    """The order was one list for every route: on a Device page, long values of names only a
    search takes (ignored there) filled the entry before its own cursor, and on a record page
    before its trigger window (review 27f)."""
    np = signed_in(engine, "np.analyst")
    searchs = {name: name[0].upper() * 510 for name in ("request_id", "srv", "kind", "from", "to")}
    cursor = Cursor(datetime(2030, 1, 1, tzinfo=timezone.utc), 10**9).encode()
    assert np.get(f"/devices/{P.ESME_1}", params={**searchs, "cursor": cursor}).status_code == 200
    newest = max(logged(engine), key=lambda entry: entry.id)
    assert newest.filters["cursor"] == cursor, newest.filters
    record = own_record(world)
    assert np.get(f"/records/{record}", params={**searchs, "window": "60"}).status_code == 200
    newest = max(logged(engine), key=lambda entry: entry.id)
    assert newest.filters["window"] == "60", newest.filters


def test_what_a_page_read_is_kept_in_its_entry_whatever_else_the_query_carries(engine, world):
    """24 parameters the screen ignores, sent first, pushed the record's id, the Device and
    the search's filters out of the entry; 520 spaces before a Device ID left the entry the
    spaces alone, while the search found the Device's records (audit 24b)."""
    np = signed_in(engine, "np.analyst")
    junk = "&".join(f"a{n:02d}=x" for n in range(MAX_FILTERS))
    record = own_record(world)
    padded = "%20" * 520 + P.ESME_1
    for address, kept in (
        (f"/records/{record}?{junk}", {"record_id": record}),
        (f"/devices/{P.ESME_1}?{junk}", {"device_id": P.ESME_1}),
        (f"/?{junk}&device_id={P.ESME_1}&scope=own", {"device_id": P.ESME_1, "scope": "own"}),
        (f"/?device_id={padded}&scope=own", {"device_id": P.ESME_1, "scope": "own"}),
    ):
        before = len(logged(engine))
        assert np.get(address).status_code == 200, address
        (entry, *_) = logged(engine)
        assert len(logged(engine)) == before + 1
        assert entry.records_returned > 0, address
        assert {name: entry.filters.get(name) for name in kept} == kept, (address, entry.filters)
    command = CliRunner().invoke(
        main,
        ["--db", str(engine.url.render_as_string(hide_password=False)), "records",
         "--party", P.NORTHPOWER, "--device", " " * 520 + P.ESME_1, "--scope", "own"],
    )  # fmt: skip
    assert command.exit_code == 0, command.output
    assert logged(engine)[0].filters["device_id"] == P.ESME_1


def test_the_access_log_command_writes_one_line_an_entry_whatever_the_filters_hold(engine, world):
    """U+2028 and U+2029 are line ends to Python's splitlines() and to some editors: a filter
    holding them, written as it was, cut its entry's line in three (audit 24b)."""
    np = signed_in(engine, "np.analyst")
    odd = "a\u2028b\u2029c"
    assert np.get("/", params={"device_id": P.ESME_1, odd: odd}).status_code == 200
    shown = CliRunner().invoke(
        main, ["--db", engine.url.render_as_string(hide_password=False), "access-log"]
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert len(lines) == len(logged(engine))
    assert json.loads(lines[0])["filters"][odd] == odd  # the same JSON, escaped


def test_the_report_download_writes_its_entry_with_its_row_count(engine, world):
    np = signed_in(engine, "np.analyst")
    csrf = TOKEN.search(np.get("/report").text).group(1)
    before = len(logged(engine))
    answer = np.post(
        "/report",
        data={"csrf_token": csrf, "from": "2024-01-01", "to": "2027-01-01"},
    )
    assert answer.status_code == 200
    rows = answer.text.strip().splitlines()[1:]
    entries = logged(engine)
    assert len(entries) == before + 1
    assert (entries[0].action, entries[0].records_returned) == ("report", len(rows))


def test_the_watches_page_logs_the_events_it_shows_but_not_the_unread_count(engine, world):
    with engine.begin() as conn:
        create_watch(conn, P.NORTHPOWER, watch_spec({"name": "mine"}), None)
    catch_up(engine)
    np = signed_in(engine, "np.analyst")
    before = len(logged(engine))
    np.get("/report")  # a page with the navigation (and its unread count) and no records
    assert len(logged(engine)) == before
    assert np.get("/watches").status_code == 200
    entries = logged(engine)
    assert len(entries) == before + 1 and entries[0].action == "watch_events"


def test_an_auditor_signs_in_to_the_who_looked_page_and_sees_every_partys_reads(engine, world):
    np = signed_in(engine, "np.analyst")
    np.get("/", params={"device_id": P.ESME_1})
    np.get(f"/records/{own_record(world)}")
    auditor = TestClient(create_app(engine), raise_server_exceptions=False)
    answer = sign_in(auditor, "the.auditor", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/access-log"
    page = auditor.get("/access-log")
    assert page.status_code == 200 and "every Party · the.auditor" in page.text
    assert P.NORTHPOWER in page.text and "np.analyst" in page.text
    # beside its code, the Party's registered name: the code alone told an auditor, of no
    # Party, little (review of the screen, 56)
    assert f'{P.NORTHPOWER}</a><span class="sub">North Power plc</span>' in page.text
    assert 'href="/watches"' not in page.text and 'href="/report"' not in page.text
    assert 'href="/devices/' not in page.text  # it opens no Device page: it sees no records
    assert f"Record {own_record(world)}" in page.text and 'href="/records/' not in page.text
    one = auditor.get("/access-log", params={"party": P.WIRESCO.lower()})
    assert one.status_code == 200 and "np.analyst" not in one.text
    # the API's name for the filter, as an auditor may paste it (audit 38d)
    same = auditor.get("/access-log", params={"party_id": P.WIRESCO})
    assert same.status_code == 200 and "np.analyst" not in same.text
    both = auditor.get("/access-log", params={"party": P.WIRESCO, "party_id": P.NORTHPOWER})
    assert both.status_code == 422
    # "ſ" (U+017F) upper-cases to "S": taken for SOUTHENERGY, which the API would refuse
    long_s = auditor.get("/access-log", params={"party": "\u017fouthenergy"})
    assert long_s.status_code == 422 and "party_id must be" in long_s.text
    unknown = auditor.get("/access-log", params={"party": "NOBODY"})
    assert unknown.status_code == 422 and "no such Party" in unknown.text
    bad = auditor.get("/access-log", params={"party": "NORTH GAS!"})
    assert bad.status_code == 422 and "party_id must be" in bad.text
    assert auditor.get("/access-log", params={"party": "A\x00B"}).status_code == 422
    assert len(logged(engine)) == 2  # NORTHPOWER's reads; the auditor's are no entries


def test_an_auditor_signed_in_there_still_sees_no_record(engine, world):
    auditor = TestClient(create_app(engine), raise_server_exceptions=False)
    assert sign_in(auditor, "the.auditor", PASSWORD).status_code == 303
    one = world.ids[next(iter(world.ids))]
    for path in ("/", f"/records/{one}", f"/devices/{P.ESME_1}", "/report", "/watches"):
        answer = auditor.get(path, follow_redirects=False)
        assert answer.status_code == 403, path
        assert '<a class="btn btn-primary" href="/access-log">Back to Who looked</a>' in answer.text
        assert "Back to the search" not in answer.text  # "/" is a 403 of its own (audit 38d)
    missing = auditor.get("/no-such-page")  # signed in still, on every page (audit 38d)
    assert missing.status_code == 404 and "every Party · the.auditor" in missing.text
    assert auditor.get("/login", follow_redirects=False).headers["location"] == "/access-log"
    assert logged(engine) == []
    # and signs out as anyone does
    token = TOKEN.search(auditor.get("/logout").text).group(1)
    out = auditor.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    assert auditor.get("/access-log", follow_redirects=False).status_code == 303


def test_an_auditors_page_reads_its_session_once(engine, world):
    """Tried as a Party's first (no Party: None), the auditor's session was then read again,
    each page two look-ups of it (review 38f)."""
    from sqlalchemy import event

    auditor = TestClient(create_app(engine), raise_server_exceptions=False)
    assert sign_in(auditor, "the.auditor", PASSWORD).status_code == 303
    session_reads = []

    def count(_conn, _cursor, statement: str, *_rest) -> None:
        if "FROM web_session" in statement and statement.lstrip().startswith("SELECT"):
            session_reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert auditor.get("/access-log").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(session_reads) == 1, session_reads


def test_a_partys_account_reads_its_own_entries_whatever_party_it_asks_for(engine, world):
    np = signed_in(engine, "np.analyst")
    np.get("/", params={"device_id": P.ESME_1})
    with engine.begin() as conn:
        create_account(conn, "ws.analyst", P.WIRESCO, PASSWORD)
    signed_in(engine, "ws.analyst").get("/", params={"device_id": P.ESME_1})
    page = np.get("/access-log", params={"party": P.WIRESCO})
    assert page.status_code == 200 and "np.analyst" in page.text
    assert "ws.analyst" not in page.text and 'name="party"' not in page.text


def test_cli_reads_write_entries_and_access_log_prints_them(cli, engine, world):
    one = own_record(world)
    assert cli("records", "--party", P.WIRESCO, "--device", P.ESME_1).exit_code == 0
    shown = cli("records", "--party", P.WIRESCO, "--format", "jsonl", "--limit", "3")
    assert shown.exit_code == 0
    assert cli("triggers", str(one), "--party", P.NORTHPOWER).exit_code == 0
    report = cli(
        "report", "own", "--party", P.NORTHPOWER, "--from", "2024-01-01", "--to", "2027-01-01"
    )
    assert report.exit_code == 0
    printed = cli("access-log")
    assert printed.exit_code == 0
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [(e["action"], e["party_id"]) for e in lines] == [
        ("report", P.NORTHPOWER),
        ("triggers", P.NORTHPOWER),
        ("search", P.WIRESCO),
        ("search", P.WIRESCO),
    ]
    assert {e["actor"] for e in lines} == {"cli"} and {e["interface"] for e in lines} == {"cli"}
    # the filters as asked: the options typed, not the defaults (SPEC audit, session 17)
    assert [e["filters"] for e in lines] == [
        {"from": "2024-01-01", "to": "2027-01-01"},  # as typed, as the API's report logs them
        {"record_id": one},
        {"limit": "3"},  # the API's names, and as typed, as the API keeps them
        {"device_id": P.ESME_1},
    ]
    items = [json.loads(line) for line in shown.stdout.splitlines()]
    assert lines[2]["records_returned"] == len(items) == 3
    assert lines[2]["mp141_records_returned"] == sum(i["access"] == "mp141" for i in items)
    assert lines[0]["records_returned"] == len(report.stdout.strip().splitlines()) - 1
    only_np = cli("access-log", "--party", P.NORTHPOWER)
    assert {json.loads(line)["party_id"] for line in only_np.stdout.splitlines()} == {P.NORTHPOWER}
    none = cli("access-log", "--from", "2999-01-01T00:00:00Z")
    assert none.exit_code == 0 and none.stdout == ""
    assert cli("access-log", "--from", "yesterday").exit_code == 2
    typo = cli("access-log", "--party", P.NORTHPOWER.lower())  # said "0 entries": nobody looked
    assert typo.exit_code == 2 and "unknown party" in typo.output and typo.stdout == ""
    # party ids are upper case: told the one meant, which the operator may see (audit 60f)
    assert f"party ids are upper case: did you mean '{P.NORTHPOWER}'?" in typo.stderr
    assert "did you mean" not in cli("access-log", "--party", "nobody").stderr


def test_cli_watch_events_and_triggers_log_their_options_as_typed_and_no_default(
    cli, engine, world
):
    """Audit 54c: `watch events` logged `"after": 0` when --after was not typed, and 1 (an
    integer) when it was, where the API logs "1"; `triggers --window 60` logged 60."""
    added = cli("watch", "add", "--party", P.NORTHPOWER, "--name", "w")
    watch = json.loads(added.stdout)["id"]
    assert cli("watch", "events", str(watch), "--party", P.NORTHPOWER).exit_code == 0
    assert (
        cli("watch", "events", str(watch), "--party", P.NORTHPOWER, "--after", "1").exit_code == 0
    )
    one = own_record(world)
    assert cli("triggers", str(one), "--party", P.NORTHPOWER, "--window", "60").exit_code == 0
    assert [e.filters for e in logged(engine)[:3]] == [
        {"record_id": one, "window": "60"},
        {"watch_id": watch, "after": "1"},
        {"watch_id": watch},
    ]


def test_accounts_create_auditor_is_of_no_party(cli, world):
    made = cli("accounts", "create", "eve.auditor", "--auditor", input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    assert cli("tokens", "create", "eve.auditor").exit_code == 0
    assert "(auditor)" in cli("tokens", "list").stdout
    both = cli("accounts", "create", "x", "--auditor", "--party", P.NORTHPOWER, input=PASSWORD)
    assert both.exit_code == 2
    neither = cli("accounts", "create", "y", input=PASSWORD + "\n")
    assert neither.exit_code == 2


@pytest.mark.parametrize(
    "command",
    [
        ("report", "own", "--party", P.NORTHPOWER, "--from", "2024-01-01", "--to", "2027-01-01"),
        ("report", "own", "--party", P.NORTHPOWER, "--from", "2024-01-01", "--to", "2027-01-01",
         "--format", "jsonl"),
        ("records", "--party", P.NORTHPOWER, "--format", "jsonl"),
    ],
)  # fmt: skip
def test_a_cli_export_counts_what_it_printed_while_an_ingest_stores_more(
    cli, engine, world, lands_after_the_first_read, command
):
    """SPEC section 8: records_returned is what was printed, counted in the read that printed
    it (an export was counted, then read again after its entry: an ingest between was
    printed uncounted)."""
    header = 1 if command[0] == "report" and "jsonl" not in command else 0
    for _ in range(2):  # the late record lands during the first; the second prints it
        printed = cli(*command)
        assert printed.exit_code == 0 and lands_after_the_first_read == [1]
        assert logged(engine)[0].records_returned == len(printed.stdout.splitlines()) - header
    assert LATE_REQUEST_ID in printed.stdout


def test_a_record_page_not_found_is_logged_as_a_read_of_nothing_as_the_apis_is(engine, world):
    """A Party probing record ids through the screen leaves the same trace as through the API."""
    with engine.connect() as conn:
        seen = {i["id"] for i in iter_search(conn, viewer_for(conn, P.NORTHPOWER), Search())}
    hidden = next(i for i in world.ids.values() if i not in seen)
    np = signed_in(engine, "np.analyst")
    for wanted in (999_999_999, hidden):
        before = len(logged(engine))
        assert np.get(f"/records/{wanted}").status_code == 404
        entries = logged(engine)
        assert len(entries) == before + 1
        assert (entries[0].action, entries[0].records_returned) == ("record", 0)
        assert entries[0].filters == {"record_id": wanted}


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_query_parameter_named_as_the_address_part_does_not_rename_what_was_read(engine, world):
    """pr4: the screen ignores a parameter it does not take, but the entry keeps the query's
    parameters: `?record_id=` (or `?device_id=` on a Device's page) must not replace the id
    the address read, or an analyst could make the log name another record than the one
    looked at."""
    np = signed_in(engine, "np.analyst")
    record = own_record(world)
    for address, kept in (
        (f"/records/{record}?record_id=1", {"record_id": record}),
        (f"/devices/{P.ESME_1}?device_id={P.GSME_1}", {"device_id": P.ESME_1}),
    ):
        assert np.get(address).status_code == 200, address
        (entry, *_) = logged(engine)
        assert {name: entry.filters.get(name) for name in kept} == kept, (address, entry.filters)


@pytest.mark.parametrize(
    "asked, lands",
    [
        ("/access-log?party=WIRESCO", "/access-log?party=WIRESCO"),
        ("/records/1", "/access-log"),
        ("/access-logout", "/access-log"),  # a prefix is not the page (audit 38d)
        ("//elsewhere.example/access-log", "/access-log"),
    ],
)
@ON_SQLITE_ALONE
def test_an_auditor_signing_in_lands_on_who_looked_or_the_page_of_it_asked(
    engine, world, asked, lands
):
    client = TestClient(create_app(engine), raise_server_exceptions=False)
    answer = sign_in(client, "the.auditor", next_path=asked)
    assert answer.status_code == 303 and answer.headers["location"] == lands
    again = client.get("/login", params={"next": asked}, follow_redirects=False)
    assert again.headers["location"] == lands  # already signed in
