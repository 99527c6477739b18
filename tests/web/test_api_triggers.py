"""GET /api/v1/records/{id}/triggers (SPEC section 6), on both engines, with the personas and
a few records placed at the window's edges."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from servicetrail.domain.model import SatRecord
from servicetrail.store.writer import append_records
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.personas import starts_with_personas

# WIRESCO is ESME-1's Network Operator from 2025-01-01 on: it sees every request to it under
# MP141, and its own alert at ALERT_AT is the record whose triggers are asked for.
ALERT_AT = P.t("2025-04-01T12:00:00Z")
WINDOW = 60
US = timedelta(microseconds=1)
LINKED = P._rid(P.WS_ED, P.ESME_1, 7)


def _req(
    at,
    user_id: str,
    counter: int,
    device: str = P.ESME_1,
    request_id: str | None = None,
    command_variant: int | None = None,
    srv: str = "11.2",
    payload: str | None = None,
) -> SatRecord:
    rid = request_id or P._rid(user_id, device, counter)
    body = f"<secret {counter}>" if payload is None else payload
    return SatRecord(at, "request", rid, srv, user_id, device, "", body, command_variant)


EDGE_RECORDS = {
    "ws_alert": SatRecord(
        ALERT_AT, "device_alert", LINKED, "", P.WS_ED, P.ESME_1, "8F1C", "<alert>"
    ),
    # its Request ID's request, two days before: outside the window, listed first all the same
    "ws_linked_req": _req(ALERT_AT - timedelta(days=2), P.WS_ED, 7, request_id=LINKED),
    "at_window_start": _req(ALERT_AT - timedelta(minutes=WINDOW), P.LK_OU, 501),
    "just_before_window": _req(ALERT_AT - timedelta(minutes=WINDOW) - US, P.LK_OU, 502),
    "at_alert_time": _req(ALERT_AT, P.AG_RSA, 503),
    "just_after_alert": _req(ALERT_AT + US, P.LK_OU, 504),
    "middle_pre_command": _req(
        ALERT_AT - timedelta(minutes=30, seconds=0.5), P.SX_ES, 505, command_variant=4
    ),
    "other_device": _req(ALERT_AT - timedelta(minutes=5), P.LK_OU, 506, device=P.ESME_S1),
    "acknowledgement": SatRecord(
        ALERT_AT - timedelta(minutes=10),
        "acknowledgement",
        P._rid(P.LK_OU, P.ESME_1, 501),
        "11.2",
        P.LK_OU,
        P.ESME_1,
        "I99",
        "",
    ),
}


@pytest.fixture
@starts_with_personas
def world(engine):
    built = P.load_personas(engine)
    with engine.begin() as conn:
        append_records(conn, list(EDGE_RECORDS.values()))
        keys = P.record_ids(conn)
    built.ids.update({name: keys[rec.key] for name, rec in EDGE_RECORDS.items()})
    return built


def triggers(client, headers, record_id: int, **params):
    return client.get(f"/api/v1/records/{record_id}/triggers", headers=headers, params=params)


def names(world, body) -> list[tuple[str, str]]:
    by_id = world.names_by_id
    return [(by_id[entry["record"]["id"]], entry["link"]) for entry in body["items"]]


def test_window_edges_are_both_included_and_a_microsecond_outside_is_not(client, bearer, world):
    response = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window=str(WINDOW))
    assert response.status_code == 200, response.text
    assert names(world, response.json()) == [
        ("ws_linked_req", "request_id"),
        ("at_alert_time", "same_device"),
        ("middle_pre_command", "same_device"),
        ("at_window_start", "same_device"),
    ]
    seconds = [entry["seconds_before"] for entry in response.json()["items"]]
    assert seconds == [2 * 86400, 0, 30 * 60, WINDOW * 60]  # 1800.5 s is rounded down


def test_a_wider_window_reaches_the_request_a_microsecond_outside(client, bearer, world):
    body = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window=str(WINDOW + 1)).json()
    assert ("just_before_window", "same_device") in names(world, body)


def test_other_users_requests_show_titles_only_and_own_ones_in_full(client, bearer, world):
    items = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window="60").json()["items"]
    by_name = {world.names_by_id[e["record"]["id"]]: e["record"] for e in items}
    for other in ("at_alert_time", "middle_pre_command", "at_window_start"):
        assert by_name[other]["access"] == "mp141"
        assert not {"payload", "execution_at", "subject_device_id"} & set(by_name[other])
    assert by_name["middle_pre_command"]["command_variant"] == 4
    assert by_name["ws_linked_req"]["access"] == "own"
    assert by_name["ws_linked_req"]["payload"] == "<secret 7>"


def test_the_default_window_is_a_day(client, bearer, world):
    # SOUTHENERGY's alert of 2025-03-06T07:00: its own tariff change 19 hours earlier
    body = triggers(client, bearer(P.SOUTHENERGY), world.ids["se_device_alert"]).json()
    assert names(world, body) == [("se_req", "same_device")]
    assert body["items"][0]["seconds_before"] == 19 * 3600
    assert (
        triggers(client, bearer(P.SOUTHENERGY), world.ids["se_device_alert"], window="1140").json()
        == body
    )
    assert triggers(
        client, bearer(P.SOUTHENERGY), world.ids["se_device_alert"], window="1139"
    ).json() == {"items": []}


def test_the_request_id_link_comes_first_and_the_record_itself_is_never_listed(
    client, bearer, world
):
    headers = bearer(P.NORTHPOWER)
    body = triggers(client, headers, world.ids["np_resp"]).json()
    assert names(world, body) == [("np_req", "request_id")]
    assert body["items"][0]["seconds_before"] == 5
    assert triggers(client, headers, world.ids["np_req"]).json() == {"items": []}


def test_a_linked_request_logged_after_the_record_counts_negative_seconds(
    client, bearer, engine, world
):
    late = _req(
        ALERT_AT + timedelta(seconds=2, microseconds=500_000), P.WS_ED, 8, request_id=LINKED
    )
    with engine.begin() as conn:
        append_records(conn, [late])
    items = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window="60").json()["items"]
    assert [(e["link"], e["seconds_before"]) for e in items[:2]] == [
        ("request_id", -3),  # 2.5 s after, rounded down
        ("request_id", 2 * 86400),
    ]


def test_a_record_without_a_device_lists_only_its_request(client, bearer, world):
    body = triggers(client, bearer(P.NORTHPOWER), world.ids["np_non_device_resp"]).json()
    assert names(world, body) == [("np_non_device_req", "request_id")]
    assert body["items"][0]["seconds_before"] == 2
    assert triggers(client, bearer(P.WIRESCO), world.ids["ws_dcc_alert"]).json() == {"items": []}


def test_another_partys_record_is_the_same_404_as_a_missing_one(client, bearer, world):
    headers = bearer(P.LOOKER)
    hidden = triggers(client, headers, world.ids["se_device_alert"])
    missing = triggers(client, headers, 987654321)
    too_big = triggers(client, headers, "99999999999999999999")
    assert hidden.status_code == missing.status_code == too_big.status_code == 404
    assert hidden.json() == missing.json() == too_big.json()


@pytest.mark.parametrize("window", ["0", "10081", "abc", "١٠", "-5", "1.5", " 60"])
@ON_SQLITE_ALONE
def test_a_bad_window_is_422_naming_it(client, bearer, world, window):
    response = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window=window)
    assert response.status_code == 422
    assert response.json()["parameter"] == "window"


def test_the_widest_window_is_accepted_and_no_token_is_401(client, bearer, world):
    assert (
        triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window="10080").status_code
        == 200
    )
    assert triggers(client, {}, world.ids["ws_alert"]).status_code == 401


# the records search of the 60-minute window before the alert (both ends included)
WINDOW_SEARCH = {
    "device_id": P.ESME_1,
    "kind": "request",
    "from": "2025-04-01T11:00:00Z",
    "to": "2025-04-01T12:00:00.000001Z",
}


def _flood(engine, count: int) -> list[SatRecord]:
    """`count` requests by another User to ESME-1, a second apart, 40 minutes before the
    alert: inside its 60-minute window."""
    return P.looker_flood(engine, ALERT_AT - timedelta(minutes=40), count)


def every_item(client, headers, path: str, params: dict[str, str]) -> list[dict]:
    """Every item of a records search, page by page from the cursor it starts at."""
    found: list[dict] = []
    params = dict(params, limit="1000")
    while True:
        page = client.get(path, headers=headers, params=params)
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        if page.json()["next_cursor"] is None:
            return found
        params["cursor"] = page.json()["next_cursor"]


def test_a_list_the_cap_cuts_keeps_the_linked_request_and_links_to_the_rest(
    client, bearer, engine, world
):
    """Another User flooding a Device with requests cannot push the one that mattered out of
    sight: the cut list says so, with a Link to the records search that goes on with the
    older requests of the window, and that search and the list together hold every one."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    _flood(engine, MAX_TRIGGERS + 5)
    headers = bearer(P.WIRESCO)
    response = triggers(client, headers, world.ids["ws_alert"], window="60")
    items = response.json()["items"]
    assert len(items) == MAX_TRIGGERS
    assert items[0]["link"] == "request_id"
    times = [e["record"]["logged_at"] for e in items[1:]]
    assert times == sorted(times, reverse=True)
    assert items[1]["record"]["id"] == world.ids["at_alert_time"]  # the newest kept, the oldest cut

    link = response.headers["link"]
    assert link.startswith("</api/v1/records?") and link.endswith('>; rel="next"')
    target = urlsplit(link[1 : link.index(">")])
    rest = every_item(client, headers, target.path, dict(parse_qsl(target.query)))
    everything = [r["id"] for r in every_item(client, headers, "/api/v1/records", WINDOW_SEARCH)]
    listed = {e["record"]["id"] for e in items}
    assert len(everything) == MAX_TRIGGERS + 5 + 3  # the flood, at_alert_time, the CV 4, the start
    assert [r["id"] for r in rest] == [i for i in everything if i not in listed]


def test_a_list_within_the_cap_has_no_link(client, bearer, engine, world):
    from servicetrail.domain.triggers import MAX_TRIGGERS

    _flood(engine, MAX_TRIGGERS - 4)  # with the linked request and three in the window: the cap
    response = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window="60")
    assert len(response.json()["items"]) == MAX_TRIGGERS
    assert "link" not in response.headers


def _naming_esme_1(engine, count: int, newest) -> None:
    """WIRESCO's own `count` 12.2 requests (non-device) whose body names ESME-1, a second
    apart back from `newest`: on no Device, found by a search of its own traffic by ESME-1."""
    naming = [
        SatRecord(
            newest - timedelta(seconds=i),
            "request",
            P._rid(P.WS_ED, P.ESME_S1, 7000 + i),
            "12.2",
            P.WS_ED,
            "",
            "",
            "<pre-notification>",
            subject_device_id=P.ESME_1,
        )
        for i in range(count)
    ]
    with engine.begin() as conn:
        append_records(conn, naming)


def test_a_request_whose_body_names_the_device_is_not_listed_as_on_it(
    client, bearer, engine, world
):
    """SPEC 6 lists "the requests P may see on that Device", and 4.1's subject_device_id
    never widens rule 3 (its `device_id` stays empty): such a request of P's own was listed
    as `same_device` (audit 42a), though a watch on the Device never matches it."""
    _naming_esme_1(engine, 1, ALERT_AT - timedelta(minutes=20))
    headers = bearer(P.WIRESCO)
    found = client.get("/api/v1/records", headers=headers, params=WINDOW_SEARCH).json()["items"]
    assert any(r["srv"] == "12.2" for r in found)  # its own search by the Device finds it
    body = triggers(client, headers, world.ids["ws_alert"], window=str(WINDOW)).json()
    assert all(e["record"]["device_id"] == P.ESME_1 for e in body["items"])
    assert {n for n, _ in names(world, body)} == {
        "ws_linked_req",
        "at_alert_time",
        "middle_pre_command",
        "at_window_start",
    }


def test_a_window_full_of_requests_naming_the_device_still_lists_every_request_on_it(
    client, bearer, engine, world
):
    """Past the cap, the requests naming the Device filled the window's read, which then
    listed two requests and a link to the rest (s42): the read is of the requests on the
    Device alone, so the list is whole and has no link."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    _naming_esme_1(engine, MAX_TRIGGERS + 5, ALERT_AT)
    response = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window=str(WINDOW))
    assert names(world, response.json()) == [
        ("ws_linked_req", "request_id"),
        ("at_alert_time", "same_device"),
        ("middle_pre_command", "same_device"),
        ("at_window_start", "same_device"),
    ]
    assert "link" not in response.headers


@ON_SQLITE_ALONE
def test_the_openapi_document_describes_the_route(client):
    from servicetrail.domain.triggers import MAX_TRIGGERS

    operation = client.get("/openapi.json").json()["paths"]["/api/v1/records/{record_id}/triggers"][
        "get"
    ]
    window = next(p for p in operation["parameters"] if p["name"] == "window")
    whole = window["schema"]["anyOf"][0]  # or "", not given
    assert whole["maximum"] == 10080 and "default 1440" in window["description"]
    assert f"At most {MAX_TRIGGERS}" in operation["description"]
    assert set(operation["responses"]) >= {"200", "401", "404", "422"}


def test_a_cut_among_the_requests_sharing_the_request_id_links_to_both_rests(
    client, bearer, engine, world
):
    """Past the cap on the Request ID's own requests (all outside the window): a Link to the
    rest of those, then one to the window's requests, none of which could be listed; the
    list and the two searches hold every request of both, none lost."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    linked = [
        _req(ALERT_AT - timedelta(days=3, seconds=i), P.WS_ED, 7, request_id=LINKED)
        for i in range(MAX_TRIGGERS + 1)
    ]
    with engine.begin() as conn:
        append_records(conn, linked)
    headers = bearer(P.WIRESCO)
    response = triggers(client, headers, world.ids["ws_alert"], window="60")
    items = response.json()["items"]
    assert len(items) == MAX_TRIGGERS and {i["link"] for i in items} == {"request_id"}
    links = [part.split(">")[0].lstrip(" <") for part in response.headers["link"].split(",")]
    assert len(links) == 2 and "request_id=" in links[0] and "device_id=" in links[1]
    # one link a relation, as clients keep them (httpx's .links, requests' .links)
    assert response.links["next"]["url"] == links[0]
    assert response.links["related"]["url"] == links[1]
    rest = [
        every_item(client, headers, urlsplit(link).path, dict(parse_qsl(urlsplit(link).query)))
        for link in links
    ]
    listed = {i["record"]["id"] for i in items}
    assert len(listed | {r["id"] for r in rest[0]}) == MAX_TRIGGERS + 2  # with ws_linked_req
    assert not listed & {r["id"] for r in rest[0]}
    window = {world.ids[n] for n in ("at_window_start", "middle_pre_command", "at_alert_time")}
    assert {r["id"] for r in rest[1]} == window


def test_a_list_whose_own_payloads_pass_a_pages_budget_ends_there_with_a_link_to_the_rest(
    client, bearer, engine, world
):
    """A User's own requests carry their payloads whole: a day of firmware images (10 MB each)
    took a list of up to 1,000 of them to as many gigabytes in the server. The list stops
    once its payloads pass a page's budget (PAGE_PAYLOAD_BYTES, at most a page past it),
    with the Link to the search that goes on from there; the list and that search hold
    every request of the window, each payload whole."""
    from servicetrail.store.items import PAGE_PAYLOAD_BYTES

    big = PAGE_PAYLOAD_BYTES * 3 // 10  # three to a page

    def payload(n: int) -> str:
        return f"{n:02}" + "f" * (big - 2)

    own = [
        _req(
            ALERT_AT - timedelta(minutes=20, seconds=n),
            P.WS_ED,
            700 + n,
            srv="11.1",
            payload=payload(n),
        )
        for n in range(12)
    ]
    with engine.begin() as conn:
        append_records(conn, own)
    headers = bearer(P.WIRESCO)
    response = triggers(client, headers, world.ids["ws_alert"], window="60")
    assert response.status_code == 200
    items = response.json()["items"]
    listed_own = [i["record"]["payload"] for i in items if i["record"]["srv"] == "11.1"]
    assert 0 < len(listed_own) < 12
    assert listed_own == [payload(n) for n in range(len(listed_own))]  # newest first, whole
    assert sum(len(p) for p in listed_own) <= 2 * PAGE_PAYLOAD_BYTES

    assert response.links["next"]["url"].startswith("/api/v1/records?")
    target = urlsplit(response.links["next"]["url"])
    rest = every_item(client, headers, target.path, dict(parse_qsl(target.query)))
    everything = every_item(client, headers, "/api/v1/records", WINDOW_SEARCH)
    listed = {i["record"]["id"] for i in items}
    assert [r["id"] for r in rest] == [r["id"] for r in everything if r["id"] not in listed]
    assert [r["payload"] for r in rest if r["srv"] == "11.1"] == [
        payload(n) for n in range(len(listed_own), 12)
    ]


def test_a_budget_spent_on_the_request_ids_own_reads_none_of_the_window(
    client, bearer, engine, world
):
    """Review 31b: the budget ran out on the last page of the requests sharing the Request ID,
    and the window's were read all the same, a page more (45 MB for a budget of 16 MiB). The
    list now ends with the Request ID's own, whole, and the Link goes on with the window."""
    from servicetrail.store.items import PAGE_PAYLOAD_BYTES

    big = PAGE_PAYLOAD_BYTES * 3 // 10

    def sent(at, counter: int, request_id: str | None = None) -> SatRecord:
        body = f"{counter:03}" + "f" * (big - 3)
        return _req(at, P.WS_ED, counter, request_id=request_id, srv="11.1", payload=body)

    linked = [sent(ALERT_AT - timedelta(days=3, seconds=n), 800 + n, LINKED) for n in range(6)]
    window = [sent(ALERT_AT - timedelta(minutes=20, seconds=n), 900 + n) for n in range(3)]
    with engine.begin() as conn:
        append_records(conn, linked + window)
    response = triggers(client, bearer(P.WIRESCO), world.ids["ws_alert"], window="60")
    items = response.json()["items"]
    assert {i["link"] for i in items} == {"request_id"}
    assert len(items) == 7  # ws_linked_req and the six, each whole
    assert all(
        len(i["record"]["payload"]) == big for i in items[:6] if i["record"]["srv"] == "11.1"
    )
    target = urlsplit(response.links["next"]["url"])
    assert dict(parse_qsl(target.query))["device_id"] == P.ESME_1 and "cursor" not in target.query


def test_a_request_whose_own_payload_passes_the_budget_still_lists_its_window(
    client, bearer, engine, world
):
    """Session 31's finding: the budget counted the record itself, which is never listed, so
    a request of more than a page's payload (a firmware image) read its Request ID's page,
    spent the budget on itself and listed none of the window's requests, only a Link."""
    from servicetrail.store.items import PAGE_PAYLOAD_BYTES

    image = _req(
        ALERT_AT - timedelta(minutes=1),
        P.WS_ED,
        950,
        srv="11.1",
        payload="f" * (PAGE_PAYLOAD_BYTES + 1),
    )
    with engine.begin() as conn:
        append_records(conn, [image])
        record_id = P.record_ids(conn)[image.key]
    response = triggers(client, bearer(P.WIRESCO), record_id, window="60")
    assert response.status_code == 200
    listed = {i["record"]["id"] for i in response.json()["items"]}
    window = {world.ids[n] for n in ("at_window_start", "middle_pre_command", "at_alert_time")}
    assert window - {world.ids["at_alert_time"]} <= listed  # the two in the image's window
    assert "link" not in response.headers


@pytest.mark.parametrize("path", ["/why", "/triggers"])
def test_why_and_triggers_of_a_record_read_no_more_of_its_payload_than_a_head(
    client, bearer, engine, world, path
):
    """`why` answers the rule and `triggers` the requests before the record: neither shows
    the record's payload, yet each read it whole (a response of 24 MiB, every time)."""
    import tracemalloc

    from servicetrail.store.items import PAYLOAD_HEAD_CHARS

    response = SatRecord(
        ALERT_AT - timedelta(minutes=1),
        "response",
        P._rid(P.WS_ED, P.ESME_1, 990),
        "4.8.1",
        P.WS_ED,
        P.ESME_1,
        "I0",
        "f" * (24 << 20),
        response_id=f"{P.ESME_1}:{P.WS_ED}:990",
    )
    with engine.begin() as conn:
        append_records(conn, [response])
        record_id = P.record_ids(conn)[response.key]
    headers = bearer(P.WIRESCO)
    client.get(f"/api/v1/records/{record_id}{path}", headers=headers)  # the first is warm-up
    tracemalloc.start()
    try:
        answer = client.get(f"/api/v1/records/{record_id}{path}", headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200
    assert peak < 8 * PAYLOAD_HEAD_CHARS + (4 << 20), peak >> 20
