"""`log verify-proof`'s reading of a proof document (domain.proof_document): a one-leaf log
signed with a key of the test's own, so that each rule is met alone."""

from __future__ import annotations

import json

import pytest

from servicetrail.domain import checkpoint as cp
from servicetrail.domain import merkle
from servicetrail.domain.proof_document import parse_proof_document, verify_proof_document
from servicetrail.signing import ed25519_check, load_signer

LEAF = {
    "v": 1,
    "logged_at": "2030-01-31T23:59:59.999999Z",
    "kind": "request",
    "request_id": "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1",
    "srv": "4.1.1",
    "user_id": "90-B3-D5-1F-30-01-00-00",
    "device_id": "00-DB-12-34-56-78-90-A1",
    "response_code": "",
    "command_variant": None,
    "payload_commitment": "00" * 32,
}


def document(tmp_path, origin: str) -> tuple[dict, cp.Verifier]:
    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    root = merkle.leaf_hash(cp.canonical_json(LEAF))  # a tree of one leaf: its root
    proof = {
        "log": origin,
        "leaf_index": 0,
        "leaf": LEAF,
        "inclusion": [],
        "checkpoint": signer.checkpoint(origin, 1, root),
    }
    return proof, cp.parse_verifier_key(signer.verifier_key)


def test_a_leaf_in_its_months_log_verifies(tmp_path):
    proof, verifier = document(tmp_path, "servicetrail/sat/2030-01")
    verified = verify_proof_document(proof, verifier, ed25519_check)
    assert (verified.origin, verified.leaf_index, verified.tree_size) == (proof["log"], 0, 1)


@pytest.mark.parametrize("origin", ["servicetrail/sat/2031-07", "elsewhere/2030-01"])
def test_a_leaf_under_another_months_or_names_origin_is_refused(tmp_path, origin):
    """SPEC section 7: a record's log is its logged_at month's, `<key name>/<YYYY-MM>`; a leaf
    of 2030-01 passed under `.../2031-07`, signed by the trusted key (audit 21c)."""
    proof, verifier = document(tmp_path, origin)
    with pytest.raises(cp.NoteError, match="not the log of the leaf's month"):
        verify_proof_document(proof, verifier, ed25519_check)


def test_a_document_naming_a_key_twice_is_refused(tmp_path):
    """json keeps the last of two: a reader of the first saw a kind and a Device that were
    never proven, and the document verified (audit 21c)."""
    proof, verifier = document(tmp_path, "servicetrail/sat/2030-01")
    raw = json.dumps(proof).replace('"leaf": {', '"leaf": {"kind": "response", ', 1).encode()
    assert json.loads(raw)["leaf"]["kind"] == "request"  # what was hashed and proven
    with pytest.raises(ValueError, match="'kind' twice"):
        parse_proof_document(raw)
    assert parse_proof_document(json.dumps(proof).encode()) == proof


def test_a_repeated_key_among_very_many_is_found_in_linear_time():
    """A count per key took 30 s for an object of 60,000 keys, one of them twice (review).
    The bound is a complexity check, not a speed figure: linear takes about 0.2 s here."""
    import time

    keys = ", ".join(f'"k{n}": {n}' for n in range(200_000))
    raw = ("{" + keys + ', "k7": 0}').encode()
    started = time.process_time()
    with pytest.raises(ValueError, match="'k7' twice"):
        parse_proof_document(raw)
    assert time.process_time() - started < 5  # quadratic: about five minutes


# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_a_document_whose_log_is_not_its_checkpoints_origin_is_refused(tmp_path):
    """The document's `log` is what a reader takes the proof to be of: naming another log
    than the checkpoint it carries (another month's, another store's), it verified as if
    it were of that log."""
    proof, verifier = document(tmp_path, "servicetrail/sat/2030-01")
    for other in ("servicetrail/sat/2030-02", "elsewhere/2030-01", None):
        with pytest.raises(cp.NoteError, match="is not the checkpoint's origin"):
            verify_proof_document({**proof, "log": other}, verifier, ed25519_check)


def test_a_number_of_twenty_digits_is_read_and_one_of_twenty_one_refused():
    """No index or size exceeds 2^64 - 1, which has 20 digits: that many are read, more are
    refused before Python reads them whole."""
    largest = 2**64 - 1
    assert parse_proof_document(b'{"leaf_index": %d}' % largest) == {"leaf_index": largest}
    with pytest.raises(ValueError, match="21 digits"):
        parse_proof_document(b'{"leaf_index": %d}' % (10 * largest))


def test_a_checkpoint_of_a_log_under_another_name_that_begins_alike_is_refused(tmp_path):
    """A key signs the logs named under it, `<key name>/...`: a checkpoint of
    `servicetrail/satellite/...` signed by the key `servicetrail/sat` is no log of its."""
    from servicetrail.domain.proof_document import verify_consistency_document
    from servicetrail.signing import load_signer

    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    root = merkle.leaf_hash(cp.canonical_json(LEAF))
    note = signer.checkpoint("servicetrail/satellite/2030-01", 1, root)
    verifier = cp.parse_verifier_key(signer.verifier_key)
    with pytest.raises(cp.NoteError, match="is not a log of 'servicetrail/sat'"):
        verify_consistency_document(note, note, {"proof": []}, [verifier], ed25519_check)
    mine = signer.checkpoint("servicetrail/sat/2030-01", 1, root)
    extended = verify_consistency_document(mine, mine, {"proof": []}, [verifier], ed25519_check)
    assert (extended.old_size, extended.new_size) == (1, 1)


NOT_A_SALT = "payload_salt is not 16 bytes in hex"


@pytest.mark.parametrize(
    "salt, said",
    [
        (None, "has no payload_salt"),
        (12, NOT_A_SALT),
        ("zz", NOT_A_SALT),
        ("00" * 15, NOT_A_SALT),
        ("00" * 17, NOT_A_SALT),
        ("٠٠" * 16, NOT_A_SALT),  # Arabic-Indic digits: bytes.fromhex refuses them too
    ],
)
def test_a_payload_salt_absent_or_not_hex_is_told_apart(tmp_path, salt, said):
    """A salt given as a number was "the document has no payload_salt" (audit 37e)."""
    proof, verifier = document(tmp_path, "servicetrail/sat/2030-01")
    if salt is not None:
        proof["payload_salt"] = salt
    with pytest.raises(cp.NoteError, match=said):
        verify_proof_document(proof, verifier, ed25519_check, "<payload/>")


@pytest.mark.parametrize("salt", [12, "zz", "00" * 15, ""])
def test_a_salt_that_is_not_one_is_refused_without_a_payload_too(tmp_path, salt):
    """Only a payload checks a salt's worth, but a salt that is no salt makes the document
    one the API never gives: it was accepted when no payload was given (audit 38b)."""
    proof, verifier = document(tmp_path, "servicetrail/sat/2030-01")
    proof["payload_salt"] = salt
    with pytest.raises(cp.NoteError, match=NOT_A_SALT):
        verify_proof_document(proof, verifier, ed25519_check)
    proof["payload_salt"] = None  # null, as the API's schema allows: no salt
    assert verify_proof_document(proof, verifier, ed25519_check).payload_checked is False
    del proof["payload_salt"]
    assert verify_proof_document(proof, verifier, ed25519_check).payload_checked is False


def test_a_document_that_is_not_utf8_is_said_to_be_so():
    """Bytes FF FE were read as UTF-16 and refused as "Expecting value" (audit 37e)."""
    with pytest.raises(ValueError, match="not UTF-8 JSON"):
        parse_proof_document(b"\xff\xfe{\x00}\x00")


def test_a_document_saved_with_a_utf8_bom_is_read(tmp_path):
    proof, _ = document(tmp_path, "servicetrail/sat/2030-01")
    assert parse_proof_document(b"\xef\xbb\xbf" + json.dumps(proof).encode()) == proof


@pytest.mark.parametrize("given", [b"<sr:Request/>", b"servicetrail/sat/2030-01\n7\n", b""])
def test_a_file_that_is_not_json_is_said_to_be_no_proof(given):
    """A payload given in the proof's place was refused as "Expecting value: line 1 column 1
    (char 0)", with no word of what was expected (audit 42c)."""
    with pytest.raises(ValueError, match="^not JSON, as a proof the API gave is"):
        parse_proof_document(given)


def test_a_lone_surrogate_escape_is_refused_in_words_of_its_own():
    """`"\\ud800"` alone decodes to no character: checking met it later and said so in
    Python's words, "'utf-8' codec can't encode character" (audit 60f)."""
    with pytest.raises(ValueError, match=r"^its JSON escapes half a UTF-16 pair"):
        parse_proof_document(b'{"leaf": {"device_id": "\\ud800"}}')
    # a whole pair is one character, read as such
    assert parse_proof_document(b'{"name": "\\ud83d\\ude00"}') == {"name": "\U0001f600"}
