"""The Watches page (SPEC section 6), server side on both engines: add by the form (the
secret shown once), events of a watch with unread ones marked, the unread count in the
navigation, delete, CSRF, and another Party's watch never shown."""

from __future__ import annotations

import html
import re

import pytest

from servicetrail import settings
from servicetrail.domain.model import SatRecord
from servicetrail.store.watches import catch_up
from servicetrail.store.writer import append_records
from tests import personas as P
from tests.web.screen import TOKEN, personas_with, signed_in


@pytest.fixture
def world(engine):
    return personas_with(engine, {}, (P.SOUTHENERGY, P.WIRESCO))


def lk_requests(engine, first: int, count: int) -> None:
    at = P.t("2025-04-01T10:00:00Z")
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    at.replace(second=n),
                    "request",
                    f"{P.LK_OU}:{P.ESME_1}:{n + 600}",
                    "11.2",
                    P.LK_OU,
                    P.ESME_1,
                    "",
                    "<secret body>",
                )
                for n in range(first, first + count)
            ],
        )
    catch_up(engine)


def nav_count(page: str) -> str | None:
    found = re.search(r'<span class="nav-count">([^<]+)<', page)
    return found.group(1) if found else None


def add(client, **fields):
    page = client.get("/watches")
    data = {
        "csrf_token": TOKEN.search(page.text).group(1),
        "name": "on my meters",
        "devices": "mine",
        "srvs": "all",
        "kinds": ["request"],
        "senders": "others",
        **fields,
    }
    return client.post("/watches", data=data, follow_redirects=False)


def test_add_see_events_unread_then_read_and_delete(engine, world) -> None:
    client = signed_in(engine, P.SOUTHENERGY)
    answer = add(client)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/watches?watch=")
    lk_requests(engine, 1, 3)
    search = client.get("/")
    assert nav_count(search.text) == "3"
    page = client.get(answer.headers["location"])
    assert page.text.count('class="event-unread"') == 3
    assert "<secret body>" not in html.unescape(page.text)  # nor escaped into the page
    assert "11.2" in page.text and "Looker Analytics" in page.text
    again = client.get(answer.headers["location"])
    assert 'class="event-unread"' not in again.text and nav_count(again.text) is None
    watch_id = answer.headers["location"].split("=")[1]
    deleted = client.post(
        f"/watches/{watch_id}/delete",
        data={"csrf_token": TOKEN.search(again.text).group(1)},
        follow_redirects=False,
    )
    assert deleted.status_code == 303
    assert "on my meters" not in client.get("/watches").text


def test_a_webhook_secret_is_shown_once(engine, world, monkeypatch) -> None:
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    client = signed_in(engine, P.SOUTHENERGY)
    answer = add(client, webhook_url="http://127.0.0.1:9/hook")
    assert answer.status_code == 201
    secret = re.search(r'id="webhook-secret">(whsec_[^<]+)<', answer.text).group(1)
    assert secret not in client.get("/watches").text


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"name": ""}, "name"),
        ({"devices": "list", "device_list": "not-a-device"}, "device_list"),
        ({"srvs": "list", "srv_list": "x"}, "srv_list"),
        ({"kinds": []}, "kinds"),
        ({"webhook_url": "https://10.0.0.1/hook"}, "webhook_url"),
        ({"name": "<script>alert(1)</script>x\u202e"}, "name"),
        # a choice the form does not offer (a hand-made request) was read as "Mine", or its
        # error pointed at nothing on the page (audit 23b)
        ({"devices": "bogus"}, "devices"),
        ({"srvs": "most"}, "srvs"),
        ({"senders": "anyone"}, "senders"),
    ],
)
def test_a_bad_form_is_422_with_the_field_marked(engine, world, fields, field, monkeypatch) -> None:
    monkeypatch.delenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    settings.reload()
    answer = add(signed_in(engine, P.SOUTHENERGY), **fields)
    assert answer.status_code == 422 and f'href="#f-{field}"' in answer.text
    assert f'id="f-{field}"' in answer.text  # the error summary's link leads somewhere
    assert "<script>alert(1)</script>" not in answer.text


def test_every_choice_the_form_does_not_offer_is_named_and_described(engine, world) -> None:
    """All of them at once, not the first alone, each error read with its radios (review
    24d)."""
    answer = add(signed_in(engine, P.SOUTHENERGY), devices="x", srvs="y", senders="z")
    assert answer.status_code == 422
    for field in ("devices", "srvs", "senders"):
        assert f'href="#f-{field}"' in answer.text and f'id="f-{field}-error"' in answer.text
        assert f'name="{field}" value=' in answer.text
        assert answer.text.count(f'aria-describedby="f-{field}-error"') >= 2


@pytest.mark.parametrize(
    "fields, field, said",
    [
        ({"kinds": []}, "kinds", "Tick at least one kind of record."),
        ({"devices": "list", "device_list": " "}, "device_list", "List at least one Device ID"),
        ({"srvs": "list", "srv_list": ""}, "srv_list", "List at least one SRV"),
    ],
)
def test_an_empty_choice_is_said_in_the_forms_words(engine, world, fields, field, said) -> None:
    """Not "must be a non-empty list of strings" (audit of the screen, session 18)."""
    answer = add(signed_in(engine, P.SOUTHENERGY), **fields)
    assert answer.status_code == 422 and f'href="#f-{field}"' in answer.text
    assert said in answer.text and "list of strings" not in answer.text


def test_forms_need_their_csrf_token_and_another_partys_watch_is_untouched(engine, world) -> None:
    south = signed_in(engine, P.SOUTHENERGY)
    made = add(south).headers["location"].split("=")[1]
    wires = signed_in(engine, P.WIRESCO)
    assert wires.post("/watches", data={"csrf_token": "nope", "name": "x"}).status_code == 403
    token = TOKEN.search(wires.get("/watches").text).group(1)
    wires.post(f"/watches/{made}/delete", data={"csrf_token": token})
    assert "on my meters" in south.get("/watches").text
    assert "on my meters" not in wires.get(f"/watches?watch={made}").text


def test_a_watch_form_sent_from_a_sibling_host_changes_nothing(engine, world) -> None:
    """SameSite=Strict lets a same-site post carry the cookies; the browser's Sec-Fetch-Site
    says where the form was."""
    south = signed_in(engine, P.SOUTHENERGY)
    made = add(south).headers["location"].split("=")[1]
    sibling = {"sec-fetch-site": "same-site"}
    token = TOKEN.search(south.get("/watches").text).group(1)
    data = {"csrf_token": token, "name": "planted", "devices": "mine", "srvs": "all",
            "kinds": ["request"], "senders": "all"}  # fmt: skip
    assert south.post("/watches", data=data, headers=sibling).status_code == 403
    deleted = south.post(f"/watches/{made}/delete", data={"csrf_token": token}, headers=sibling)
    assert deleted.status_code == 403
    page = south.get("/watches").text
    assert "on my meters" in page and "planted" not in page
