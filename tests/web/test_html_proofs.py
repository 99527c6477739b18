"""The verifiable logs on the screen (SPEC section 7): the record page's mark, the proof as a
download (checked here with the RFC 9162 verifier of tests/rfc9162.py, not our own code),
and the page explaining how to check it. Both engines."""

from __future__ import annotations

import base64
import re
import json

import pytest

from servicetrail.domain.search import Search
from servicetrail.store.access_log import EntryFilter, iter_entries
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.queries import iter_search, viewer_for
from tests import personas as P, rfc9162
from tests.conftest import ON_SQLITE_ALONE
from tests.intruder import intrude
from tests.web.screen import personas_with, signed_in
from tests.web.screen_sign_in import sign_in
from tests.store.log_fixtures import append, records


@pytest.fixture
@P.starts_with_personas
def world(engine):
    return personas_with(engine, {}, (P.SOUTHENERGY, P.LOOKER))


def seen_by(engine, party: str) -> dict[int, str]:
    """The ids the Party may see, with their access (own or mp141)."""
    with engine.connect() as conn:
        return {i["id"]: i["access"] for i in iter_search(conn, viewer_for(conn, party), Search())}


@pytest.fixture
def shared_id(engine, world) -> int:
    """A record SOUTHENERGY sees as titles only (MP141)."""
    return next(i for i, access in seen_by(engine, P.SOUTHENERGY).items() if access == "mp141")


def test_a_sealed_record_is_marked_verified_and_its_proof_downloads(engine, shared_id):
    seal_store(engine)
    client = signed_in(engine, P.SOUTHENERGY)
    record_id = shared_id
    page = client.get(f"/records/{record_id}")
    assert page.status_code == 200
    assert "Verified" in page.text and f"/records/{record_id}/proof.json" in page.text
    download = client.get(f"/records/{record_id}/proof.json")
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    document = download.json()
    assert document["leaf"]["request_id"] and "payload_salt" not in document
    key = client.get("/verify").text.split("servicetrail/sat+", 1)[1].split("<", 1)[0]
    _, size, root = rfc9162.check_checkpoint(document["checkpoint"], "servicetrail/sat+" + key)
    leaf_hash = rfc9162.sha256(b"\x00" + rfc9162.canonical(document["leaf"]))
    path = [base64.b64decode(h) for h in document["inclusion"]]
    assert rfc9162.rfc_inclusion_ok(document["leaf_index"], size, leaf_hash, path, root)
    assert "payload" not in json.dumps(document["leaf"]).replace("payload_commitment", "")


def test_an_own_payload_downloads_as_the_bytes_its_proof_commits_to(engine, shared_id):
    """The page lays a payload out for reading; the download is the stored bytes, which the
    proof's payload_commitment (SHA-256 of salt and payload, SPEC section 7) is over."""
    import hashlib

    seal_store(engine)
    client = signed_in(engine, P.SOUTHENERGY)
    own = next(i for i, access in seen_by(engine, P.SOUTHENERGY).items() if access == "own")
    page = client.get(f"/records/{own}")
    assert f"/records/{own}/payload" in page.text
    download = client.get(f"/records/{own}/payload")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert download.content  # a persona's own request has a payload
    proof = client.get(f"/records/{own}/proof.json").json()
    salt = bytes.fromhex(proof["payload_salt"])
    commitment = hashlib.sha256(salt + download.content).hexdigest()
    assert commitment == proof["leaf"]["payload_commitment"]
    with engine.connect() as conn:  # the log tells the payload taken from the page looked at
        taken, looked_at = [e for e in iter_entries(conn, EntryFilter()) if e.action == "record"][
            :2
        ]
    assert taken.filters == {"record_id": own, "download": "payload"}
    assert looked_at.filters == {"record_id": own} and taken.records_returned == 1
    # titles only, or not there at all: the same 404, and its access-log entry (SPEC
    # section 8: records returned) counts nothing, as nothing was handed over
    refusal = client.get(f"/records/{shared_id}/payload")
    assert refusal.status_code == 404
    # said of a payload, not "no record ... that you can see" of a record it sees (55e)
    assert "A payload is downloaded only from your own records" in refusal.text
    assert f'href="/records/{shared_id}"' in refusal.text
    with engine.connect() as conn:
        refused = next(iter_entries(conn, EntryFilter()))
    assert refused.filters == {"record_id": shared_id, "download": "payload"}
    assert (refused.records_returned, refused.mp141_records_returned) == (0, 0)
    assert client.get("/records/999999999/payload").status_code == 404
    # the mark is the download's own: a record page asked with it is a look at the record
    # (review of the screen, 56: it read as a payload download in Who looked)
    assert client.get(f"/records/{own}", params={"download": "payload"}).status_code == 200
    with engine.connect() as conn:
        assert next(iter_entries(conn, EntryFilter())).filters == {"record_id": own}


def test_an_unsealed_record_says_so_and_a_hidden_one_is_not_found(engine, world, shared_id):
    client = signed_in(engine, P.SOUTHENERGY)
    page = client.get(f"/records/{shared_id}")
    assert "Not yet sealed" in page.text and "Verified" not in page.text
    seal_store(engine)
    hidden_id = next(i for i in world.ids.values() if i not in seen_by(engine, P.LOOKER))
    hidden = signed_in(engine, P.LOOKER).get(f"/records/{hidden_id}/proof.json")
    missing = signed_in(engine, P.LOOKER).get("/records/987654321/proof.json")
    assert hidden.status_code == missing.status_code == 404


def test_a_tampered_log_is_shown_as_a_proof_that_does_not_hold(engine, shared_id):
    seal_store(engine)
    intrude(engine, ("UPDATE log_checkpoint SET note = replace(note, '\n', '\n ')", {}))
    page = signed_in(engine, P.SOUTHENERGY).get(f"/records/{shared_id}")
    assert page.status_code == 200 and "Proof does not hold" in page.text


def test_a_record_that_is_no_leaf_of_its_log_does_not_pass_for_one_not_yet_sealed(
    engine, shared_id
):
    """Every writer appends a record's leaf (or queues it) in the record's transaction: a
    record with neither was stored, or its leaf removed, outside servicetrail."""
    seal_store(engine)
    intrude(
        engine, ("DELETE FROM log_leaf WHERE family = 'sat' AND entry_id = :i", {"i": shared_id})
    )
    client = signed_in(engine, P.SOUTHENERGY)
    page = client.get(f"/records/{shared_id}")
    assert "Proof does not hold" in page.text and "Not yet sealed" not in page.text
    assert "not in its log" in page.text
    download = client.get(f"/records/{shared_id}/proof.json")
    assert download.status_code == 409 and "not in its log" in download.text
    # the screen's page, signed in, not the API's JSON (audit 23b)
    assert download.headers["content-type"].startswith("text/html")
    assert "<h1>" in download.text and "Sign out" in download.text
    with engine.connect() as conn:
        refused = next(iter_entries(conn, EntryFilter()))
    assert (refused.action, refused.records_returned) == ("proof", 0)  # logged, as a 404 is


def test_a_log_signed_before_the_key_was_rotated_still_verifies_naming_that_key(
    engine, shared_id, tmp_path, use_settings
):
    seal_store(engine)
    client = signed_in(engine, P.SOUTHENERGY)
    old_key = client.get("/verify").text.split("servicetrail/sat+", 1)[1].split("<", 1)[0]
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "rotated.key")
    page = client.get(f"/records/{shared_id}")
    assert "Verified" in page.text and "Proof does not hold" not in page.text
    assert (
        f"another key this store has used, <span class=\"mono\">servicetrail/sat+{old_key}</span>"
        in page.text
    )
    seal_store(engine)  # nothing new to sign: the month keeps its checkpoint by the old key
    assert "another key this store has used" in client.get(f"/records/{shared_id}").text


TAGS = re.compile(r"<[^>]+>")


def test_the_how_to_verify_page_shows_the_verifier_key(engine, world):
    seal_store(engine)
    page = signed_in(engine, P.SOUTHENERGY).get("/verify")
    assert page.status_code == 200
    assert "Check it yourself" in page.text and "servicetrail/sat+" in page.text


def test_the_how_to_page_names_the_record_it_was_opened_from(engine, world, shared_id):
    seal_store(engine)
    client = signed_in(engine, P.SOUTHENERGY)
    assert f'href="/verify?record={shared_id}"' in client.get(f"/records/{shared_id}").text
    # the command's words are elements of their own, so that a line breaks between them only
    page = TAGS.sub("", client.get("/verify", params={"record": shared_id}).text)
    assert f"verify-proof record-{shared_id}-proof.json" in page
    for junk in ("<b>1</b>", "0", "99999999999999999999999"):  # no echo, no crash
        page = client.get("/verify", params={"record": junk}).text
        assert "verify-proof record-812-proof.json" in TAGS.sub("", page) and "<b>1" not in page


def test_checkpoints_and_a_consistency_proof_download_from_the_screen(engine, shared_id):
    """The page's last step needed an API token, which only the operator's command line makes
    (audit 43c): the screen gives the same files, checked here with the RFC 9162 verifier."""

    client = signed_in(engine, P.SOUTHENERGY)
    client.get("/")  # a read: an access-log entry, sealed with the rest, which must not show
    seal_store(engine)
    older = client.get("/verify/logs.json")
    assert older.status_code == 200 and "attachment" in older.headers["content-disposition"]
    key = older.json()["verifier_key"]
    origin = "servicetrail/sat/2025-02"
    listed = client.get("/verify").text
    assert f'<option value="{origin}">2025-02 (now ' in listed and "(now 0 leaves)" not in listed
    # named by its month under the origin all share: whole, it was cut off on a phone (54d)
    assert 'its origin is <span class="mono">servicetrail/sat/</span> and the name' in listed
    # a size is a count of leaves: the fields said no unit (review of the screen, 54d)
    assert '<span class="hint" id="f-from-hint">leaves, the older checkpoint’s</span>' in listed
    assert 'name="from" type="text"' in listed and 'aria-describedby="f-from-hint"' in listed
    before = {log["origin"]: log["checkpoint"] for log in older.json()["logs"]}
    assert not any("/access/" in name for name in before)  # every Party's reads: not a Party's
    _, old_size, old_root = rfc9162.check_checkpoint(before[origin], key)
    append(engine, records(40))
    seal_store(engine)
    after = {
        log["origin"]: log["checkpoint"] for log in client.get("/verify/logs.json").json()["logs"]
    }
    _, new_size, new_root = rfc9162.check_checkpoint(after[origin], key)
    answer = client.get(
        "/verify/consistency.json", params={"origin": origin, "from": old_size, "to": new_size}
    )
    assert answer.status_code == 200
    assert f"consistency-{old_size}-{new_size}.json" in answer.headers["content-disposition"]
    proof = [base64.b64decode(h) for h in answer.json()["proof"]]
    assert new_size > old_size
    assert rfc9162.rfc_consistency_ok(old_size, new_size, old_root, new_root, proof)


@pytest.mark.parametrize(
    ("asked", "status", "said"),
    [
        ({"origin": "servicetrail/sat/2025-02", "from": "2", "to": "1"}, 422, "From size:"),
        ({"origin": "servicetrail/sat/2025-02", "from": "x", "to": "1"}, 422, "From size:"),
        ({"origin": "nope", "from": "1", "to": "2"}, 422, "Log:"),
        ({"origin": "o" * 201, "from": "1", "to": "2"}, 422, "is longer than 200"),
        ({"origin": "nope", "from": "1", "to": "2"}, 422, "the list on /verify names them"),
        ({"from": "1", "to": "2"}, 422, "Log:"),
        ({"origin": "servicetrail/access/2025-02", "from": "1", "to": "2"}, 403, "auditors"),
    ],
)
@ON_SQLITE_ALONE
def test_a_consistency_proof_that_cannot_be_given_is_a_page_saying_why(
    engine, world, asked, status, said
):
    seal_store(engine)
    answer = signed_in(engine, P.SOUTHENERGY).get("/verify/consistency.json", params=asked)
    assert answer.status_code == status and said in answer.text
    assert answer.headers["content-type"].startswith("text/html") and "Sign out" in answer.text


@pytest.mark.parametrize(
    ("sizes", "field"),
    [({"from": "-1", "to": "3"}, "from"), ({"from": "1", "to": "x9"}, "to"),
     ({"from": "3", "to": "2"}, "from"), ({"from": "1", "to": "999"}, "to")],
)  # fmt: skip
@ON_SQLITE_ALONE
def test_a_consistency_proofs_error_is_beside_its_field_with_the_form_as_filled(
    engine, world, sizes, field
):
    """It was a page of its own, the sizes typed lost and its one button "Back to the search",
    not to the form (review of the screen, 47d)."""
    seal_store(engine)
    origin = "servicetrail/sat/2025-02"
    answer = signed_in(engine, P.SOUTHENERGY).get(
        "/verify/consistency.json", params={"origin": origin, **sizes}
    )
    assert answer.status_code == 422 and "<h1>Checking a proof</h1>" in answer.text
    assert "<title>Error: " in answer.text and f'href="#f-{field}"' in answer.text
    typed = re.search(rf'<input id="f-{field}"[^>]*>', answer.text).group(0)
    assert (
        f'value="{sizes[field]}"' in typed
        and f'aria-describedby="f-{field}-hint f-{field}-error"' in typed
    )
    assert f'id="f-{field}-error"' in answer.text
    assert f'<option value="{origin}" selected>' in answer.text
    assert "Back to the search" not in answer.text


def test_an_auditor_takes_the_access_logs_checkpoints_too(engine, world):
    from servicetrail.store.accounts import create_account
    from fastapi.testclient import TestClient
    from servicetrail.web.app import create_app

    signed_in(engine, P.SOUTHENERGY).get("/")  # a read: an access-log entry to seal
    seal_store(engine)
    with engine.begin() as conn:
        create_account(conn, "the.auditor", None, "correct horse battery staple")
    client = TestClient(create_app(engine))
    assert sign_in(client, "the.auditor").status_code == 303
    page = client.get("/verify")
    assert page.status_code == 200
    # of no Party: the footer's "your own traffic ... your Devices" is not said (audit 53e)
    footer = page.text.split('<footer class="site-footer">')[1]
    assert "An auditor reads who looked" in footer and "your own traffic" not in footer
    origins = [log["origin"] for log in client.get("/verify/logs.json").json()["logs"]]
    assert any("/access/" in origin for origin in origins)
    # its Who looked page leads here, and this page says which step is its own: it spoke of
    # record pages alone, which an auditor never opens (review of the screen, 56)
    assert '<a href="/verify">' in client.get("/access-log").text
    assert "As an auditor you open no record" in page.text and "Yours is step 4" in page.text
    party = signed_in(engine, P.SOUTHENERGY)
    assert "As an auditor" not in party.get("/verify").text
    assert '<a href="/verify">' not in party.get("/access-log").text


def test_the_consistency_form_offers_the_newest_log_first(engine, world):
    """It selected the oldest month, the list's first: an analyst checks this month's log
    (review of the screen, 47d). The form re-shown keeps the log the analyst chose."""
    seal_store(engine)
    client = signed_in(engine, P.SOUTHENERGY)
    page = client.get("/verify").text
    origins = re.findall(r'<option value="(servicetrail/sat/[-0-9]+)"', page)
    assert len(origins) > 1 and origins == sorted(origins)
    assert re.findall(r'<option value="([^"]+)" selected>', page) == [origins[-1]]
    again = client.get(
        "/verify/consistency.json", params={"origin": origins[0], "from": "x", "to": "1"}
    ).text
    assert re.findall(r'<option value="([^"]+)" selected>', again) == [origins[0]]


@ON_SQLITE_ALONE
def test_every_wrong_field_of_the_consistency_form_is_told_at_once(engine, world):
    """The first alone was: with both sizes wrong, the To size was told only once the From
    size was put right (review 47j)."""
    seal_store(engine)
    answer = signed_in(engine, P.SOUTHENERGY).get(
        "/verify/consistency.json", params={"origin": "", "from": "x", "to": "-2"}
    )
    assert answer.status_code == 422
    for field in ("origin", "from", "to"):
        assert f'href="#f-{field}"' in answer.text and f'id="f-{field}-error"' in answer.text
