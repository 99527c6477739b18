"""What an audit sent that the API answered badly (SPEC section 5: bad parameters are 422 with
a message naming the parameter, never a 500). A NUL's on both engines: PostgreSQL's text
cannot hold one, so one that reached a statement was a 500 there; what is refused or answered
above the store (an address, a method, a form's parsing) on SQLite alone."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from servicetrail.store.accounts import create_account
from servicetrail.web.watches_api import MAX_BODY_BYTES
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.web.screen import signed_in
from tests.web.screen_sign_in import PASSWORD, TOKEN, sign_in


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/api/v1/logs/consistency?origin=%00&from=1&to=2", "origin"),
        ("/api/v1/logs/consistency?origin=servicetrail/sat/2025-03%00&from=1&to=19", "origin"),
        ("/api/v1/records?device_id=00-DB%00", "device_id"),
        ("/api/v1/records?srv=4.1.1&cursor=%00%00", "cursor"),
    ],
)
def test_a_nul_in_a_parameter_is_a_422_naming_it(client, bearer, path, parameter):
    answer = client.get(path, headers=bearer(P.NORTHPOWER))
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == parameter
    assert "NUL" in answer.json()["message"]


@pytest.mark.parametrize(
    "srv",
    [
        "%ED%A0%80",  # a lone surrogate, as UTF-8 would encode one
        "%FF",  # no UTF-8 at all
        "%C0%AF",  # an overlong "/"
        "read%E2%80%AEfirmware",  # a direction override
        "read%E2%80%8Bfirmware",  # a zero-width space
    ],
)
def test_srv_text_that_is_not_readable_utf8_is_a_422_naming_it(client, bearer, srv):
    """It was looked for as title words and found nothing, a 200 with no items, where a NUL
    was already a 422 (audit 42e)."""
    for path in ("/api/v1/records", f"/api/v1/records?device_id={P.ESME_1}"):  # both paths
        answer = client.get(
            f"{path}{'&' if '?' in path else '?'}srv={srv}", headers=bearer(P.NORTHPOWER)
        )
        assert answer.status_code == 422, (path, srv, answer.text)
        assert answer.json()["parameter"] == "srv"
    assert (
        client.get("/api/v1/records?srv=read%20firmware", headers=bearer(P.NORTHPOWER)).status_code
        == 200
    )


def test_a_nul_in_a_screen_query_is_the_screens_page_not_json(analyst):
    """The screen answered JSON for it (audit of the screen, session 18)."""
    answer = analyst.get("/?cursor=%00")
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert "The parameter &#39;cursor&#39; must not contain a NUL character." in answer.text
    assert "<h1>" in answer.text


@pytest.fixture
def analyst(engine, world):
    """A NORTHPOWER analyst signed in to the screen."""
    with engine.begin() as conn:
        create_account(conn, P.NORTHPOWER.lower(), P.NORTHPOWER, PASSWORD)
    return signed_in(engine, P.NORTHPOWER)


@pytest.mark.parametrize(
    ("path", "field", "shown_back"),
    [
        ("/?device_id=00-DB%00&srv=4.1.1", "device_id", "00-DB"),
        ("/?to=%00", "to", ""),
        ("/?srv=%0%000", "srv", "%00"),  # a NUL taken out does not make another
        ("/access-log?actor=a%00b", "actor", "ab"),
        ("/verify/consistency.json?origin=servicetrail/sat/2025-02%00&from=1&to=2", "origin", ""),
    ],
)
def test_a_nul_in_a_forms_field_is_that_fields_error_on_the_page(
    engine, analyst, path, field, shown_back
):
    """It was a bare page with no navigation and no account, the error not beside the field:
    the guard answered before the session was read (review of the screen, 47d). The search
    is not run, and nothing with a NUL in it reaches the store (a 500 on PostgreSQL)."""
    from servicetrail.store.merkle_log import seal_store

    seal_store(engine)
    answer = analyst.get(path)
    assert answer.status_code == 422 and "Sign out" in answer.text
    assert f'href="#f-{field}"' in answer.text and "NUL character" in answer.text
    error = re.search(rf'id="f-{field}-error"[^>]*>(.*?)</p>', answer.text, re.S)
    assert error and "must not contain a NUL character" in error.group(1)
    typed = re.search(rf'<input id="f-{field}"[^>]*>', answer.text)
    assert typed is None or f'value="{shown_back}"' in typed.group(0)
    assert "<tr class=\"row-" not in answer.text


@pytest.mark.parametrize(
    "path",
    [
        f"/devices/{P.ESME_1}?cursor=%00",
        "/records/1?window=6%000",
        "/?cursor=x%00&srv=4.1.1",
        "/verify?record=1%00",
        "/access-log?party=A%00B",
    ],
)
def test_a_nul_where_the_page_has_no_field_for_it_is_refused_with_the_pages_chrome(analyst, path):
    """A Device's page, a record's: "Not a valid search" was no search's (review 47d)."""
    answer = analyst.get(path)
    assert answer.status_code == 422 and "Sign out" in answer.text
    assert "must not contain a NUL character." in answer.text
    assert "<h1>Not a valid address</h1>" in answer.text


@pytest.mark.parametrize(
    ("path", "back_to"),
    [
        ("/records/1?x=%00", "/records/1?x="),
        ("/watches?Your%20session%20expired=%00", "/watches?Your+session+expired="),
        ("/?cursor=%00", "/?cursor="),
        ("/login?next=%00", "/login?next="),
    ],
)
def test_a_nul_in_the_address_sends_a_visitor_not_signed_in_to_sign_in(client, path, back_to):
    """Refused before the route asks for a session, a visitor got one of the app's pages,
    "Not a valid address", naming the parameter (review 47g); every other wrong address of a
    page (an unknown parameter, a malformed Device ID) is the sign-in page then, and so is
    this, without the NUL."""
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?{urlencode({'next': back_to})}"
    assert client.get("/watches?x=1", follow_redirects=False).status_code == 303


def test_a_nul_refusal_quotes_the_parameters_name_not_speaks_it(analyst):
    """The name was the page's own words: a link anyone could send put "Your session expired,
    call 0800 123 must not contain ..." on the screen, a bidi override included (audit 23b);
    quoted, it still read there (review 23d). A name unlike ours is not shown at all."""
    answer = analyst.get("/?Your%20session%20expired%2C%20call%200800%E2%80%AE=%00")
    assert answer.status_code == 422
    assert "A parameter of the address must not contain a NUL character." in answer.text
    assert "session expired" not in answer.text and "\u202e" not in answer.text


def test_an_auditors_party_filter_with_a_nul_is_a_422(client, auditor):
    answer = client.get("/api/v1/access-log?party_id=A%00B", headers=auditor)
    assert answer.status_code == 422 and answer.json()["parameter"] == "party_id"


def test_a_nul_in_a_username_is_a_failed_sign_in(client):
    answer = sign_in(client, "a\x00b", "passwordpassword", next_path="/")
    assert answer.status_code == 401 and "Wrong username or password" in answer.text


@pytest.mark.parametrize(
    "path", ["/api/v1/records/", "/api/v1/watches/", "/api/v1/access-log/", "/api/v1/logs/"]
)
@ON_SQLITE_ALONE
def test_a_trailing_slash_is_not_found_not_a_redirect_built_from_the_host(client, path):
    answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers


@ON_SQLITE_ALONE
def test_a_watch_body_declared_too_large_is_refused_before_it_comes(client, bearer):
    answer = client.post(
        "/api/v1/watches",
        content=b'{"name": "x"}',
        headers={
            **bearer(P.NORTHPOWER),
            "Content-Type": "application/json",
            "Content-Length": str(MAX_BODY_BYTES + 1),
        },
    )
    assert answer.status_code == 413 and answer.json()["error"] == "request_body_too_large"


@pytest.mark.parametrize(
    "path, misspelt",
    [
        ("/api/v1/records?devce_id=00-DB-12-34-56-78-90-A4", "devce_id"),
        ("/api/v1/records?device_id=00-DB-12-34-56-78-90-A4&limt=5", "limt"),
        ("/api/v1/records/1/triggers?windw=60", "windw"),
        ("/api/v1/watches?x" + "y" * 100, "x" + "y" * 63 + "..."),
    ],
)
@ON_SQLITE_ALONE
def test_a_parameter_the_request_does_not_take_is_a_422_naming_it(client, bearer, path, misspelt):
    """A misspelt filter used to be ignored, so a search for one Device answered every record
    the Party may see."""
    answer = client.get(path, headers=bearer(P.NORTHPOWER))
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == misspelt
    assert "not a parameter of this request" in answer.json()["message"]
    assert client.get(path).status_code == 401  # no token: still a 401 first


@pytest.mark.parametrize(
    "path, repeated",
    [
        (
            "/api/v1/records?device_id=00-DB-12-34-56-78-90-A4&device_id=00-DB-12-34-56-78-90-A5",
            "device_id",
        ),
        ("/api/v1/records?srv=4.1.1&scope=own&scope=others", "scope"),
        ("/api/v1/records?limit=5&limit=6", "limit"),
        ("/api/v1/records/1/triggers?window=60&window=60", "window"),
    ],
)
@ON_SQLITE_ALONE
def test_a_parameter_given_twice_is_a_422_naming_it(client, bearer, path, repeated):
    """The last value silently won: `?device_id=A&device_id=B` answered B's records alone as if
    that was what was asked (audit of the screen, session 20), on the API and on the screen."""
    answer = client.get(path, headers=bearer(P.NORTHPOWER))
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == repeated
    assert "more than once" in answer.json()["message"]


@ON_SQLITE_ALONE
def test_a_search_field_given_twice_on_the_screen_is_a_422_naming_it(engine, world):
    with engine.begin() as conn:
        create_account(conn, P.NORTHPOWER.lower(), P.NORTHPOWER, PASSWORD)
    answer = signed_in(engine, P.NORTHPOWER).get(
        "/?device_id=00-DB-12-34-56-78-90-A4&device_id=00-DB-12-34-56-78-90-A5"
    )
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert "given more than once" in answer.text


def test_every_parameter_the_spec_names_is_taken(client, bearer, auditor):
    northpower = bearer(P.NORTHPOWER)
    for path in (
        "/api/v1/records?device_id=&request_id=&srv=&kind=&from=&to=&scope=all&limit=5&cursor=",
        "/api/v1/reports/own.csv?from=2025-01-01T00:00:00Z&to=2025-02-01T00:00:00Z",
        "/api/v1/access-log?from=2025-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&limit=5&cursor=",
    ):
        assert client.get(path, headers=northpower).status_code == 200, path
    assert client.get("/api/v1/access-log?party_id=NORTHPOWER", headers=auditor).status_code == 200


@ON_SQLITE_ALONE
def test_head_is_answered_wherever_get_is_with_the_gets_head_and_no_body(client, bearer):
    for path, headers in (
        ("/login", {}),
        ("/api/v1/records?device_id=00-DB-12-34-56-78-90-A4", bearer(P.NORTHPOWER)),
        ("/api/v1/watches", bearer(P.NORTHPOWER)),
    ):
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert int(head.headers["content-length"]) == len(got.content) > 0
    assert client.head("/api/v1/watches").status_code == 401  # the same checks as a GET


@ON_SQLITE_ALONE
def test_a_405_names_every_method_the_address_takes(client, bearer):
    api = client.patch("/api/v1/watches", headers=bearer(P.NORTHPOWER))
    assert api.status_code == 405 and api.headers["allow"] == "GET, HEAD, POST"
    assert api.json() == {"error": "method_not_allowed", "message": "Method Not Allowed"}
    page = client.put("/login")
    assert page.status_code == 405 and page.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/watches/", "/api/v1/records/5/"])
@ON_SQLITE_ALONE
def test_an_address_the_api_does_not_have_is_not_called_a_missing_record(client, bearer, path):
    """A typo answered "no such record" (audit 25d); a record one may not see still is."""
    answer = client.get(path, headers=bearer(P.NORTHPOWER))
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "message": "no such address in this API (/openapi.json)",
    }
    missing = client.get("/api/v1/records/999999", headers=bearer(P.NORTHPOWER))
    assert missing.json() == {"error": "not_found", "message": "no such record"}
    assert client.get("/nope").headers["content-type"].startswith("text/html")


# --- found missing by mutation testing (audit 30b) ----------------------------------------
def test_a_nul_in_a_parameters_name_is_refused_too(client, analyst, bearer):
    """A name is as much of the query as a value: with a NUL in it, it went on to the read,
    whose access-log entry keeps the parameters as sent."""
    page = analyst.get("/?a%00b=1")
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "must not contain a NUL character." in page.text
    api = client.get("/api/v1/records?srv%00=4.1.1", headers=bearer(P.NORTHPOWER))
    assert api.status_code == 422 and "NUL" in api.json()["message"]


def test_a_nul_refusal_quotes_a_name_only_if_all_of_it_is_named_as_ours_are(analyst):
    """A name that merely begins as ours do (lower-case words) is the page's own words all the
    same: "session expired, call 0800 ..." (review 23d)."""
    answer = analyst.get("/?session%20expired%2C%20call%200800%20123=%00")
    assert answer.status_code == 422
    assert "A parameter of the address must not contain a NUL character." in answer.text
    assert "session expired" not in answer.text


def test_a_head_sends_no_body_message_after_the_one_that_ends_its_answer():
    """A HEAD goes on as a GET whose first piece of body ends the answer. What the route
    sends after it (the rest of a report, a stream's next events) is not passed on: the
    server refuses a message after an answer's end with an error, and a stream ran on."""
    import asyncio

    from servicetrail.web.head_requests import HeadAsGet

    seen_method = []

    async def in_pieces(scope, receive, send) -> None:
        seen_method.append(scope["method"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one", b"two", b""):
            await send({"type": "http.response.body", "body": piece, "more_body": bool(piece)})

    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "HEAD", "path": "/", "headers": []}
    asyncio.run(HeadAsGet(in_pieces)(scope, receive, send))
    assert seen_method == ["GET"]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1] == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.parametrize("path", ["/login", "/watches", "/report"])
@ON_SQLITE_ALONE
def test_a_form_post_the_parser_refuses_is_a_page_not_json(engine, world, path):
    """A multipart post with no boundary, or one of more than 1,000 fields, was answered with
    the API's JSON on the screen (audit 36d)."""
    with engine.begin() as conn:
        create_account(conn, P.NORTHPOWER.lower(), P.NORTHPOWER, PASSWORD)
    client = signed_in(engine, P.NORTHPOWER)
    no_boundary = client.post(path, content=b"x", headers={"content-type": "multipart/form-data"})
    too_many = client.post(
        path,
        content=("a=b&" * 1001).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    for answer, said in ((no_boundary, "boundary"), (too_many, "1000")):
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("text/html")
        assert "<h1>" in answer.text and said in answer.text


@ON_SQLITE_ALONE
def test_a_form_field_sent_as_a_file_is_a_page_naming_it(engine, world):
    with engine.begin() as conn:
        create_account(conn, P.NORTHPOWER.lower(), P.NORTHPOWER, PASSWORD)
    client = signed_in(engine, P.NORTHPOWER)
    token = TOKEN.search(client.get("/watches").text).group(1)
    answer = client.post(
        "/watches", files={"csrf_token": (None, token), "name": ("f.txt", b"x", "text/plain")}
    )
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert "name" in answer.text and "<h1>" in answer.text
