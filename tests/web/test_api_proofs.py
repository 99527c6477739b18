"""SPEC section 7 over HTTP, on both engines: proofs a viewer checks with the independent
verifier (tests/rfc9162.py) and the keys /api/v1/logs publishes, never with our code."""

from __future__ import annotations

import base64
import hashlib

import pytest
from fastapi.testclient import TestClient

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.merkle_log import seal_store
from servicetrail.web.app import create_app
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests import rfc9162
from tests.intruder import intrude, re_sign_a_checkpoint
from tests.store.log_fixtures import append, records
from tests.personas import starts_with_personas


@pytest.fixture
@starts_with_personas
def world(engine):
    built = P.load_personas(engine)
    seal_store(engine)
    return built


@pytest.fixture
def client(engine, world):
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def token(engine, world):
    def make(party: str) -> dict[str, str]:
        with engine.begin() as conn:
            create_account(conn, f"user_{party.lower()}", party, "correct horse battery staple")
            return {"Authorization": f"Bearer {create_token(conn, f'user_{party.lower()}')}"}

    return make


def checked(document: dict, verifier_keys: list[str]) -> None:
    """What a Party does offline: leaf -> leaf hash -> root through the inclusion proof ->
    the root of a checkpoint signed by a published key."""
    for key in verifier_keys:
        try:
            origin, size, root = rfc9162.check_checkpoint(document["checkpoint"], key)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("no published key signed the checkpoint")
    assert origin == document["log"]
    leaf_hash = rfc9162.sha256(b"\x00" + rfc9162.canonical(document["leaf"]))
    proof = [base64.b64decode(h, validate=True) for h in document["inclusion"]]
    assert rfc9162.rfc_inclusion_ok(document["leaf_index"], size, leaf_hash, proof, root)


def test_an_own_record_proves_and_its_salt_opens_the_payload_commitment(client, token, world):
    headers = token(P.SOUTHENERGY)
    keys = client.get("/api/v1/logs", headers=headers).json()["verifier_keys"]
    record_id = world.ids["se_req"]
    document = client.get(f"/api/v1/records/{record_id}/proof", headers=headers).json()
    checked(document, keys)
    payload = client.get(f"/api/v1/records/{record_id}", headers=headers).json()["payload"]
    salt = bytes.fromhex(document["payload_salt"])
    commitment = hashlib.sha256(salt + payload.encode()).hexdigest()
    assert document["leaf"]["payload_commitment"] == commitment
    assert document["log"] == "servicetrail/sat/2025-03"
    assert document["leaf"]["logged_at"].endswith("Z") and "." in document["leaf"]["logged_at"]


def test_a_titles_only_record_proves_without_salt_or_payload(client, token, world):
    headers = token(P.SOUTHENERGY)
    keys = client.get("/api/v1/logs", headers=headers).json()["verifier_keys"]
    response = client.get(f"/api/v1/records/{world.ids['sx_req']}/proof", headers=headers)
    document = response.json()
    checked(document, keys)
    assert "payload_salt" not in document
    assert world.records["sx_req"].payload not in response.text


def test_a_hidden_records_proof_is_the_same_404_as_a_missing_one(client, token, world):
    headers = token(P.SOUTHENERGY)
    hidden = client.get(f"/api/v1/records/{world.ids['np_device_alert']}/proof", headers=headers)
    missing = client.get("/api/v1/records/987654321/proof", headers=headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.content == missing.content
    assert client.get("/api/v1/records/abc/proof", headers=headers).status_code == 404
    assert client.get(f"/api/v1/records/{world.ids['se_req']}/proof").status_code == 401


def test_logs_list_each_months_newest_checkpoint_signed_by_the_current_key(client, token):
    headers = token(P.SOUTHENERGY)
    listing = client.get("/api/v1/logs", headers=headers).json()
    assert listing["verifier_key"] in listing["verifier_keys"]
    origins = [log["origin"] for log in listing["logs"]]
    assert "servicetrail/sat/2025-02" in origins and origins == sorted(origins)
    for log in listing["logs"]:
        origin, _, _ = rfc9162.check_checkpoint(log["checkpoint"], listing["verifier_key"])
        assert origin == log["origin"]


def test_a_consistency_proof_between_two_checkpoints_verifies(client, token, engine):
    headers = token(P.SOUTHENERGY)
    key = client.get("/api/v1/logs", headers=headers).json()["verifier_key"]
    before = logs_by_origin(client, headers)["servicetrail/sat/2025-02"]
    _, old_size, old_root = rfc9162.check_checkpoint(before, key)
    append(engine, records(40))
    seal_store(engine)
    after = logs_by_origin(client, headers)["servicetrail/sat/2025-02"]
    _, new_size, new_root = rfc9162.check_checkpoint(after, key)
    assert new_size > old_size
    answer = client.get(
        "/api/v1/logs/consistency",
        params={"origin": "servicetrail/sat/2025-02", "from": old_size, "to": new_size},
        headers=headers,
    )
    proof = [base64.b64decode(h) for h in answer.json()["proof"]]
    assert rfc9162.rfc_consistency_ok(old_size, new_size, old_root, new_root, proof)


def logs_by_origin(client, headers) -> dict[str, str]:
    listing = client.get("/api/v1/logs", headers=headers).json()
    return {log["origin"]: log["checkpoint"] for log in listing["logs"]}


@pytest.mark.parametrize(
    "params, name",
    [
        ({"from": "1", "to": "1"}, "origin"),
        ({"origin": "", "from": "1", "to": "1"}, "origin"),
        ({"origin": "servicetrail/sat/2025-02", "from": "1"}, "to"),
        ({"origin": "servicetrail/sat/2025-02", "to": "1"}, "from"),
        ({"origin": "servicetrail/sat/2025-02", "from": "0", "to": "1"}, "from"),
        ({"origin": "servicetrail/sat/2025-02", "from": "3", "to": "2"}, "from"),
        ({"origin": "servicetrail/sat/2025-02", "from": "1", "to": "999"}, "to"),
        ({"origin": "servicetrail/sat/1999-01", "from": "1", "to": "1"}, "origin"),  # no log
        ({"origin": "bogus", "from": "1", "to": "1"}, "origin"),
        ({"origin": "servicetrail/sat/2025-02", "from": "one", "to": "2"}, "from"),
        ({"origin": "servicetrail/sat/2025-02", "from": "1", "to": "-2"}, "to"),
        ({"origin": "servicetrail/sat/2025-02", "from": "1", "to": "9" * 30}, "to"),
    ],
)
@ON_SQLITE_ALONE
def test_bad_consistency_parameters_are_422_naming_the_parameter(client, token, params, name):
    response = client.get("/api/v1/logs/consistency", params=params, headers=token(P.LOOKER))
    assert response.status_code == 422, response.text
    assert response.json()["parameter"] == name


@pytest.mark.parametrize("size", ["9" * 20, str(2**63), "00000000000000000188"])
@ON_SQLITE_ALONE
def test_a_size_too_large_for_any_log_is_said_to_be_so(client, token, size):
    """A tree size of 20 digits and more was "must be a whole number" (audit 37e)."""
    params = {"origin": "servicetrail/sat/2025-02", "from": "1", "to": size}
    response = client.get("/api/v1/logs/consistency", params=params, headers=token(P.LOOKER))
    assert response.status_code == 422
    assert response.json()["parameter"] == "to" and "too large" in response.json()["message"]


def test_a_new_key_signs_new_checkpoints_and_the_old_one_still_verifies_old_ones(
    client, token, engine, tmp_path, use_settings
):
    headers = token(P.SOUTHENERGY)
    first = client.get("/api/v1/logs", headers=headers).json()
    old_key = first["verifier_key"]
    old_note = logs_by_origin(client, headers)["servicetrail/sat/2025-02"]
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "rotated.key")
    append(engine, records(5, first=100))  # in February
    seal_store(engine)
    second = client.get("/api/v1/logs", headers=headers).json()
    assert second["verifier_key"] != old_key
    assert second["verifier_keys"] == [old_key, second["verifier_key"]]
    new_note = logs_by_origin(client, headers)["servicetrail/sat/2025-02"]
    rfc9162.check_checkpoint(new_note, second["verifier_key"])
    rfc9162.check_checkpoint(old_note, old_key)
    with pytest.raises(AssertionError):
        rfc9162.check_checkpoint(new_note, old_key)


def test_a_proof_refused_says_why_and_is_logged_as_a_read_of_nothing(client, token, engine):
    """409 not_sealed while the record's log has no checkpoint that holds it; 409 not_in_log
    for a record that is no leaf at all (its leaf removed behind servicetrail's back). Each
    is an access-log entry of 0 records, as a 404 is."""
    headers = token(P.SOUTHENERGY)
    item = client.get("/api/v1/records?limit=1", headers=headers).json()["items"][0]
    month = item["logged_at"][:7]
    intrude(
        engine, ("DELETE FROM log_checkpoint WHERE family = 'sat' AND month = :m", {"m": month})
    )
    unsealed = client.get(f"/api/v1/records/{item['id']}/proof", headers=headers)
    assert unsealed.status_code == 409 and unsealed.json()["error"] == "not_sealed"
    intrude(
        engine, ("DELETE FROM log_leaf WHERE family = 'sat' AND entry_id = :i", {"i": item["id"]})
    )
    gone = client.get(f"/api/v1/records/{item['id']}/proof", headers=headers)
    assert gone.status_code == 409 and gone.json()["error"] == "not_in_log"
    assert "log verify" in gone.json()["message"]
    logged = client.get("/api/v1/access-log?limit=2", headers=headers).json()["items"]
    assert [(e["action"], e["records_returned"]) for e in logged] == [("proof", 0), ("proof", 0)]


def test_a_key_listed_only_in_the_store_is_not_published(client, token, engine):
    """/api/v1/logs lists the keys trusted beside the signing key, not whatever the store
    lists: an intruder's key, listed first by its `first_used_at`, was (audit, session 19)."""
    headers = token(P.SOUTHENERGY)
    seal_store(engine)
    before = client.get("/api/v1/logs", headers=headers).json()["verifier_keys"]
    rogue = re_sign_a_checkpoint(engine)
    after = client.get("/api/v1/logs", headers=headers).json()["verifier_keys"]
    assert rogue not in after and after == before


def test_a_log_prefix_ending_in_access_still_gives_a_party_its_consistency_proofs(
    engine, use_settings
):
    """An access log is known by its checkpoints before its form: a prefix of one's own
    ending in `/access` made the records' logs look like access logs, a 403 for any Party
    (review, session 21)."""
    use_settings(SERVICETRAIL_LOG_ORIGIN="dcc.example/access")
    P.load_personas(engine)
    seal_store(engine)
    origin = "dcc.example/access/2025-02"
    with TestClient(create_app(engine)) as client:
        with engine.begin() as conn:
            create_account(conn, "se", P.SOUTHENERGY, "correct horse battery")
            headers = {"Authorization": f"Bearer {create_token(conn, 'se')}"}
        key = client.get("/api/v1/logs", headers=headers).json()["verifier_key"]
        _, old_size, old_root = rfc9162.check_checkpoint(
            logs_by_origin(client, headers)[origin], key
        )
        append(engine, records(40))
        seal_store(engine)
        _, new_size, new_root = rfc9162.check_checkpoint(
            logs_by_origin(client, headers)[origin], key
        )
        answer = client.get(
            "/api/v1/logs/consistency",
            params={"origin": origin, "from": old_size, "to": new_size},
            headers=headers,
        )
    assert answer.status_code == 200, answer.text
    proof = [base64.b64decode(h) for h in answer.json()["proof"]]
    assert rfc9162.rfc_consistency_ok(old_size, new_size, old_root, new_root, proof)


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_record_whose_leaf_is_the_first_past_the_newest_checkpoint_is_not_yet_sealed(
    client, token, engine
):
    """Its leaf is appended with the record (index = the checkpoint's size) and waits for the
    next seal: 409 not_sealed, not a proof against a checkpoint that does not hold it (a 500)."""
    headers = token(P.NORTHPOWER)
    append(engine, records(1, first=10))  # February, NORTHPOWER's own
    asked = {"request_id": "90-B3-D5-1F-30-01-00-01:00-DB-12-34-56-78-90-A1:11"}
    [item] = client.get("/api/v1/records", params=asked, headers=headers).json()["items"]
    unsealed = client.get(f"/api/v1/records/{item['id']}/proof", headers=headers)
    assert unsealed.status_code == 409 and unsealed.json()["error"] == "not_sealed"
    seal_store(engine)
    sealed = client.get(f"/api/v1/records/{item['id']}/proof", headers=headers)
    assert sealed.status_code == 200
    checked(sealed.json(), client.get("/api/v1/logs", headers=headers).json()["verifier_keys"])


def test_a_key_that_has_signed_nothing_yet_is_published_beside_the_earlier_ones(
    client, token, tmp_path, use_settings
):
    """After a rotation, until the new key's first seal, no checkpoint names it: /api/v1/logs
    publishes it all the same, or a client that takes its keys from there could not check
    the next checkpoints."""
    headers = token(P.SOUTHENERGY)
    old_key = client.get("/api/v1/logs", headers=headers).json()["verifier_key"]
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "rotated.key")
    listing = client.get("/api/v1/logs", headers=headers).json()
    assert listing["verifier_key"] != old_key
    assert listing["verifier_keys"] == [old_key, listing["verifier_key"]]


def test_a_log_whose_stored_hashes_were_deleted_is_said_so_not_a_500(client, token, engine):
    """lt2: the hashes a proof is folded from, deleted behind servicetrail's back (every leaf
    of a month but one): the consistency proof says the log's leaves are no longer stored,
    naming `origin` (a KeyError was a 500)."""
    headers = token(P.NORTHPOWER)
    origin = "servicetrail/sat/2025-02"
    key = client.get("/api/v1/logs", headers=headers).json()["verifier_key"]
    old_size = rfc9162.check_checkpoint(logs_by_origin(client, headers)[origin], key)[1]
    append(engine, records(40))
    seal_store(engine)
    new_size = rfc9162.check_checkpoint(logs_by_origin(client, headers)[origin], key)[1]
    [item] = client.get(
        "/api/v1/records",
        params={"request_id": "90-B3-D5-1F-30-01-00-01:00-DB-12-34-56-78-90-A1:20"},
        headers=headers,
    ).json()["items"]
    intrude(
        engine,
        ("DELETE FROM log_node WHERE family = 'sat' AND month = '2025-02'", {}),
        (
            "DELETE FROM log_leaf WHERE family = 'sat' AND month = '2025-02' AND entry_id <> :i",
            {"i": item["id"]},
        ),
    )
    answer = client.get(
        "/api/v1/logs/consistency",
        params={"origin": origin, "from": old_size, "to": new_size},
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["parameter"] == "origin" and "no longer stored" in answer.json()["message"]
    # and the proof of the one record left: a 409 naming log verify, not a 500 (audit 30b)
    proof = client.get(f"/api/v1/records/{item['id']}/proof", headers=headers)
    assert proof.status_code == 409, proof.text
    assert proof.json()["error"] == "not_in_log"
    assert "no longer whole" in proof.json()["message"] and "log verify" in proof.json()["message"]


def test_the_published_keys_are_oldest_first_whatever_their_text(
    client, token, engine, tmp_path, use_settings
):
    """lt4: verifier_keys lists the keys in the order they first signed; a new key whose text
    sorts before an older one's comes after it all the same. Two keys made here sign in turn,
    the one whose text sorts later first: the test looked among 200 keys for one sorting
    before the store's first key, and found none about one run in 200 (helper 68f)."""
    from servicetrail.signing import load_signer

    headers = token(P.SOUTHENERGY)
    first_key = client.get("/api/v1/logs", headers=headers).json()["verifier_key"]
    made = {
        load_signer(tmp_path / f"k{n}.key", "servicetrail/sat").verifier_key: tmp_path / f"k{n}.key"
        for n in range(2)
    }
    later_text, earlier_text = sorted(made, reverse=True)
    for key_text, first in ((later_text, 100), (earlier_text, 200)):
        use_settings(SERVICETRAIL_SIGNING_KEY=made[key_text])
        append(engine, records(5, first=first))
        seal_store(engine)
    listing = client.get("/api/v1/logs", headers=headers).json()
    assert listing["verifier_key"] == earlier_text < later_text
    assert listing["verifier_keys"] == [first_key, later_text, earlier_text]
