"""The "possible triggers" panel of the record page (SPEC section 6), server side, on both
engines."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest

from servicetrail.domain.model import SatRecord
from servicetrail.store.writer import append_records
from servicetrail.web.presenters import before_text
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.web.screen import personas_with, signed_in

ALERT_AT = P.t("2025-04-01T12:00:00Z")
# WIRESCO (Network Operator of ESME-1) gets an alert; before it, SUNEXPORT's CV 4 pre-command
# and its signed command, and LOOKER's read
EXTRA = {
    "ws_alert": SatRecord(
        ALERT_AT,
        "device_alert",
        P._rid(P.WS_ED, P.ESME_1, 77),
        "",
        P.WS_ED,
        P.ESME_1,
        "8F1C",
        "<ws alert>",
    ),
    "sx_pre_command": SatRecord(
        ALERT_AT - timedelta(minutes=20),
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
        ALERT_AT - timedelta(minutes=19),
        "request",
        P._rid(P.SX_ES, P.ESME_1, 9),
        "6.15.1",
        P.SX_ES,
        P.ESME_1,
        "",
        "<sx secret signed>",
        5,
    ),
    "lk_read": SatRecord(
        ALERT_AT - timedelta(hours=3),
        "request",
        P._rid(P.LK_OU, P.ESME_1, 9),
        "11.2",
        P.LK_OU,
        P.ESME_1,
        "",
        "<lk secret>",
    ),
}


@pytest.fixture
@P.starts_with_personas
def world(engine):
    return personas_with(engine, EXTRA, (P.WIRESCO, P.LOOKER, P.NORTHPOWER))


def panel(page: str) -> str:
    match = re.search(
        r'<section class="panel" aria-labelledby="triggers-title">(.*?)</section>', page, re.S
    )
    return unescape(match.group(1)) if match else ""


def test_an_alert_shows_its_possible_triggers_titles_only(engine, world):
    page = signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['ws_alert']}")
    assert page.status_code == 200
    shown = panel(page.text)
    opened = re.findall(r'href="/records/(\d+)"', shown)
    assert opened == [
        str(world.ids[n]) for n in ("sx_command", "sx_pre_command", "lk_read")
    ]  # 24 hours
    assert "Possible triggers" in shown and "3 requests" in shown
    assert "Cannot have triggered this" in shown  # the CV 4 pre-command is marked
    assert shown.count("trigger-pre-command") == 1
    assert "19 min before" in shown and "20 min before" in shown
    assert "secret" not in page.text  # never another User's payload
    # said as the Device page and the record's exchange say it (45c)
    assert "another User’s request: title only, the payload stays with that User" in shown
    # an alert's identifier is its own (its DUIS ResponseID): it has no Request ID to share
    assert "a request whose Request ID is this alert’s own identifier (its Alert ID)" in shown
    assert "same Request ID" not in shown


def test_the_window_is_chosen_on_the_page(engine, world):
    client = signed_in(engine, P.WIRESCO)
    wide = panel(client.get(f"/records/{world.ids['ws_alert']}?window=360").text)
    assert f'href="/records/{world.ids["lk_read"]}"' in wide and "3 h before" in wide
    hour = panel(client.get(f"/records/{world.ids['ws_alert']}?window=60").text)
    assert f'href="/records/{world.ids["lk_read"]}"' not in hour and "2 requests" in hour
    narrow = panel(client.get(f"/records/{world.ids['ws_alert']}?window=10").text)
    assert "No request you may see on this Device in that window" in narrow


def test_no_possible_trigger_is_said_without_a_link_to_the_empty_list(engine, world):
    """ "What may have triggered it: 0 requests ↓" jumped to a panel that lists none (audit
    57h): the words stay, the link goes."""
    page = unescape(
        signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['ws_alert']}?window=10").text
    )
    assert '<p class="jump-to">What may have triggered it: 0 requests</p>' in page
    assert 'href="#triggers-title"' not in page


@ON_SQLITE_ALONE
def test_a_bad_window_falls_back_to_a_day_and_says_so(engine, world):
    shown = panel(
        signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['ws_alert']}?window=١٠").text
    )
    assert "showing 24 hours" in shown
    assert shown.count('href="/records/') == 3
    # the message is the select's description, as a form field's error is (45c): a screen
    # reader on the select heard nothing of it
    assert re.search(
        r'<select id="f-window" name="window" aria-describedby="f-window-error">', shown
    )
    assert 'id="f-window-error"' in shown


def test_a_response_links_its_request_first_and_a_request_has_no_panel(engine, world):
    client = signed_in(engine, P.NORTHPOWER)
    shown = panel(client.get(f"/records/{world.ids['np_resp']}").text)
    assert re.findall(r'href="/records/(\d+)"', shown) == [str(world.ids["np_req"])]
    assert "Same Request ID" in shown and "5 s before" in shown
    assert panel(client.get(f"/records/{world.ids['np_req']}").text) == ""
    # the DCC's name kept in the sentence: "before this dcc alert" (review of the screen, 56)
    dcc_alert = panel(client.get(f"/records/{world.ids['np_dcc_alert']}").text)
    assert "in the 24 hours before this DCC alert, newest first" in dcc_alert


def test_a_hidden_alert_is_still_not_found(engine, world):
    answer = signed_in(engine, P.LOOKER).get(f"/records/{world.ids['ws_alert']}")
    assert answer.status_code == 404


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s before"),
        (5, "5 s before"),
        (1200, "20 min before"),
        (68400, "19 h before"),
        (90061, "1 d 1 h before"),
        (-3, "3 s after"),
    ],
)
def test_seconds_before_in_words(seconds, text):
    assert before_text(seconds) == text


def test_a_list_the_cap_cuts_links_to_the_older_requests_of_the_window(engine, world):
    """A flood of LOOKER's requests in the hour before the alert: the panel shows the cap's
    newest and links to the search screen's page of the Device's requests after the last one
    shown, which lists the rest (the oldest of the flood among them)."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    flood = P.looker_flood(
        engine, ALERT_AT - timedelta(minutes=45), MAX_TRIGGERS, timedelta(milliseconds=500)
    )
    with engine.connect() as conn:
        oldest = P.record_ids(conn)[flood[-1].key]
    client = signed_in(engine, P.WIRESCO)
    shown = panel(client.get(f"/records/{world.ids['ws_alert']}?window=60").text)
    assert shown.count('href="/records/') == MAX_TRIGGERS
    assert f'href="/records/{oldest}"' not in shown
    link = re.search(r'<a href="(/\?[^"]+)">the older requests of the window</a>', shown)
    assert link is not None, shown[-600:]
    rest = client.get(link.group(1))
    assert rest.status_code == 200
    assert f'href="/records/{oldest}?back=' in rest.text


def test_a_list_within_the_cap_has_no_such_link(engine, world):
    shown = panel(signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['ws_alert']}").text)
    assert "the older requests of the window" not in shown


def test_a_cut_list_without_a_device_says_so_and_links_to_the_rest(engine, world):
    """A response with no Device lists only the requests sharing its Request ID: past the cap,
    the panel says how many it shows and links to the search for the others."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    response_id = P.non_device_exchange(engine, MAX_TRIGGERS + 1)
    client = signed_in(engine, P.NORTHPOWER)
    shown = panel(client.get(f"/records/{response_id}").text)
    assert f"Only {MAX_TRIGGERS} are shown" in shown
    link = re.search(r'<a href="(/\?[^"]+)">the other requests with its Request ID</a>', shown)
    assert link is not None and "request_id=" in link.group(1)
    assert client.get(link.group(1)).status_code == 200


@ON_SQLITE_ALONE
def test_a_record_page_past_its_time_limit_says_what_reads_less(engine, world, monkeypatch):
    """The generic "Narrow your search" page told a record page, which has nothing to narrow,
    to name a Device ID or a Request ID (review of the screen, 54d): an alert's page offers its
    triggers' shortest look-back, the widest of its reads; a page over that, to try again."""
    from servicetrail.store.limits import SearchTooBroad
    from servicetrail.store.logged_reads import LoggedRead

    def too_long(*_args, **_kwargs):
        raise SearchTooBroad(10.0)

    monkeypatch.setattr(LoggedRead, "triggers_for", too_long)
    client = signed_in(engine, P.WIRESCO)
    alert = world.ids["ws_alert"]
    page = client.get(f"/records/{alert}?back=device_id%3D1")
    assert page.status_code == 422 and "Narrow your search" not in page.text
    said = unescape(re.search(r'<div class="error-page">(.*?)</div>', page.text, re.S)[1])
    assert f"Reading record {alert} took longer than 10 s and was stopped. Its possible " in said
    assert "over the 24 hours before it: open it with a look-back of 1 hour" in said
    assert f'href="/records/{alert}?window=60&back=device_id%3D1">Open it with a shorter' in said
    hour = unescape(client.get(f"/records/{alert}?window=60").text)
    assert "look-back" not in hour and "Try again in a moment;" in hour


def test_a_request_sharing_an_alerts_id_is_marked_same_id_as_this_alert(engine, world):
    """The badge of a request whose Request ID is an alert's own identifier (an alert with no
    SRV: its DUIS ResponseID) had no test (review of the screen, 55): it said "Same Request
    ID", which an alert does not have. Two days before it, past the window: listed first."""
    alert_id = EXTRA["ws_alert"].request_id
    shares = SatRecord(
        ALERT_AT - timedelta(days=2), "request", alert_id, "6.8", P.WS_ED, P.ESME_1, "", "<ws>"
    )
    with engine.begin() as conn:
        append_records(conn, [shares])
        shared = P.record_ids(conn)[shares.key]
    shown = panel(signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['ws_alert']}").text)
    assert re.findall(r'href="/records/(\d+)"', shown)[0] == str(shared)
    first, *others = shown.split('class="trigger-link"')[1:]
    assert first.startswith(">Same ID as this alert<") and "2 d before" in first
    assert others and all(o.startswith(">Same Device<") for o in others)
    assert "Same Request ID" not in shown
