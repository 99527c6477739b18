"""SPEC section 7's texts: the leaf encoding, checkpoints as C2SP signed notes, verifier keys
(checked by the independent tests/rfc9162.py), and the signing key file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicetrail.domain import checkpoint as cp
from servicetrail.signing import Signer, SigningKeyError, ed25519_check, load_signer
from tests import rfc9162

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


def test_a_leaf_is_sorted_compact_json_with_empty_strings_and_a_commitment():
    salt = bytes(range(16))
    commitment = cp.payload_commitment(salt, "<body>é</body>")
    assert commitment == hashlib.sha256(salt + "<body>é</body>".encode()).hexdigest()
    leaf = cp.record_leaf(
        cp.leaf_time(datetime(2025, 3, 1, 12, 0, 5, tzinfo=timezone.utc)),
        "response",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1000",
        None,
        "90-B3-D5-1F-30-01-00-00",
        "00-DB-12-34-56-78-90-A1",
        None,
        3,
        commitment,
    )
    data = cp.canonical_json(leaf)
    assert (
        data
        == (
            '{"command_variant":3,"device_id":"00-DB-12-34-56-78-90-A1","kind":"response",'
            '"logged_at":"2025-03-01T12:00:05.000000Z","payload_commitment":"' + commitment + '",'
            '"request_id":"90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1000",'
            '"response_code":"","srv":"","user_id":"90-B3-D5-1F-30-01-00-00","v":1}'
        ).encode()
    )


@given(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.none()), max_size=8))
def test_canonical_json_is_the_spec_encoding(obj):
    expected = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert cp.canonical_json(obj) == expected.encode("utf-8")


def test_a_checkpoint_verifies_with_the_independent_checker(tmp_path):
    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    root = hashlib.sha256(b"root").digest()
    note = signer.checkpoint("servicetrail/sat/2025-03", 12, root)
    body = f"servicetrail/sat/2025-03\n12\n{base64.b64encode(root).decode()}\n"
    assert note.startswith(body + "\n\u2014 servicetrail/sat ")
    assert note.endswith("\n")
    assert rfc9162.check_checkpoint(note, signer.verifier_key) == (
        "servicetrail/sat/2025-03",
        12,
        root,
    )
    verifier = cp.parse_verifier_key(signer.verifier_key)
    assert cp.verify_checkpoint(note, verifier, ed25519_check).size == 12


def test_a_changed_checkpoint_or_another_key_does_not_verify(tmp_path):
    signer = load_signer(tmp_path / "a.key", "servicetrail/sat")
    other = load_signer(tmp_path / "b.key", "servicetrail/sat")
    note = signer.checkpoint("servicetrail/sat/2025-03", 12, bytes(32))
    changed = note.replace("\n12\n", "\n13\n")
    with pytest.raises(cp.NoteError, match="does not verify"):
        cp.verify_checkpoint(changed, cp.parse_verifier_key(signer.verifier_key), ed25519_check)
    with pytest.raises(cp.NoteError, match="no signature") as refused:
        cp.verify_checkpoint(note, cp.parse_verifier_key(other.verifier_key), ed25519_check)
    # both keys are named servicetrail/sat: each is told by its hash, as its verifier key
    # gives it (audit 29e: after a rotation the error named the same name twice)
    hash_of = {k: k.verifier_key.split("+")[1] for k in (signer, other)}
    said = str(refused.value)
    assert f"servicetrail/sat+{hash_of[other]}" in said and f"+{hash_of[signer]}" in said
    with pytest.raises(AssertionError):
        rfc9162.check_checkpoint(changed, signer.verifier_key)


def test_a_retirement_is_a_signed_note_that_no_checkpoint_reads_as(tmp_path):
    """Retention's statement that a log ended at a size and root (audit 46d): a C2SP signed
    note by the checkpoints' key, that verifies by that key alone, as written."""
    signer = load_signer(tmp_path / "a.key", "servicetrail/sat")
    other = load_signer(tmp_path / "b.key", "servicetrail/sat")
    root = hashlib.sha256(b"root").digest()
    note = signer.retirement("servicetrail/sat/2025-03", 12, root)
    body = (
        f"servicetrail retired\nservicetrail/sat/2025-03\n12\n{base64.b64encode(root).decode()}\n"
    )
    assert note.startswith(body + "\n\u2014 servicetrail/sat ")
    keys = [cp.parse_verifier_key(k.verifier_key) for k in (other, signer)]
    said = cp.verify_retirement(note, keys, ed25519_check)
    assert (said.origin, said.size, said.root) == ("servicetrail/sat/2025-03", 12, root)
    mine = [keys[1]]
    for refused in (
        note.replace("\n12\n", "\n13\n"),  # edited
        other.retirement("servicetrail/sat/2025-03", 12, root),  # by another key
        signer.checkpoint("servicetrail/sat/2025-03", 12, root),  # a checkpoint
    ):
        with pytest.raises(cp.NoteError):
            cp.verify_retirement(refused, mine, ed25519_check)
    with pytest.raises(cp.NoteError):  # and a retirement is no checkpoint
        cp.verify_checkpoint(note, keys[1], ed25519_check)


def test_a_retirement_says_how_its_records_went_signed_or_not_at_all(tmp_path):
    """Retired after its partitions were dropped by hand, or by the retention itself: a line
    past the root, signed (62d). One signed before says nothing (how: None), and still
    verifies; a line this verifier does not know is refused, not passed over."""
    signer = load_signer(tmp_path / "a.key", "servicetrail/sat")
    keys = [cp.parse_verifier_key(signer.verifier_key)]
    root, origin = hashlib.sha256(b"root").digest(), "servicetrail/sat/2025-03"
    for how in (cp.BY_HAND, cp.BY_RETENTION, None):
        note = signer.retirement(origin, 12, root, how)
        assert cp.verify_retirement(note, keys, ed25519_check).how == how
    by_hand = signer.retirement(origin, 12, root, cp.BY_HAND)
    for refused in (
        by_hand.replace(cp.BY_HAND, cp.BY_RETENTION),  # edited: the signature fails
        signer.retirement(origin, 12, root).replace("=\n\n", "=\nmore\n\n"),
    ):
        with pytest.raises(cp.NoteError):
            cp.verify_retirement(refused, keys, ed25519_check)
    unknown = cp.signed_note(
        cp.retirement_body(origin, 12, root) + "something else\n",
        signer.name,
        signer.public_key,
        signer._private.sign,
    )
    with pytest.raises(cp.NoteError, match="line past the root"):
        cp.verify_retirement(unknown, keys, ed25519_check)
    with pytest.raises(ValueError):
        cp.retirement_body(origin, 12, root, "by a cosmic ray")


def test_a_note_read_from_bytes_not_utf8_is_refused_not_a_crash(tmp_path):
    """A stored note with a byte not UTF-8 (SQLite reads it as a lone surrogate), its
    signature line the key's own: encoding it for the signature's check raised, and `log
    verify` and `log retirements` exited 2 blaming "an argument or the standard input" (63d)."""
    signer = load_signer(tmp_path / "a.key", "servicetrail/sat")
    key = cp.parse_verifier_key(signer.verifier_key)
    root, origin = hashlib.sha256(b"root").digest(), "servicetrail/sat/2025-03"
    retired = signer.retirement(origin, 12, root).replace("2025-03", "2025-03\udcff")
    with pytest.raises(cp.NoteError, match="UTF-8"):
        cp.verify_retirement(retired, [key], ed25519_check)
    sealed = signer.checkpoint(origin, 12, root).replace("2025-03", "2025-03\udcff")
    with pytest.raises(cp.NoteError, match="UTF-8"):
        cp.verify_checkpoint(sealed, key, ed25519_check)


@pytest.mark.parametrize(
    "bad",
    ["", "name", "a+b+c", "servicetrail/sat+00000000+" + base64.b64encode(b"\x01" * 33).decode()],
)
def test_a_malformed_verifier_key_is_refused_clearly(bad):
    with pytest.raises(cp.NoteError):
        cp.parse_verifier_key(bad)


def test_a_verifier_key_padded_past_its_base64_is_refused(tmp_path):
    """Python's decoder takes '==' more after a base64 key; other verifiers (Go's
    encoding/base64, which C2SP's note package uses) refuse it (audit 27a)."""
    good = load_signer(tmp_path / "k.key", "servicetrail/sat").verifier_key
    assert cp.parse_verifier_key(good)
    with pytest.raises(cp.NoteError, match="not standard base64"):
        cp.parse_verifier_key(good + "==")


def test_the_trust_file_is_made_with_mode_0600(tmp_path):
    """What it lists is what `log verify` trusts: as the key, no one else may write it."""
    from servicetrail.signing import trust, trust_file

    key = tmp_path / "servicetrail.key"
    old_umask = os.umask(0o022)
    try:
        trust(key, ["servicetrail/sat+00000000+AAAA"])
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(trust_file(key)).st_mode) == 0o600


def test_a_key_others_may_read_is_used_and_said_once(tmp_path, caplog):
    """A key copied in with looser rights than the 0600 it is made with was used without a
    word (audit 44d)."""
    path = tmp_path / "copied.key"
    made = load_signer(path, "servicetrail/sat")
    with caplog.at_level("WARNING", logger="servicetrail.signing"):
        load_signer(path, "servicetrail/sat")
        assert caplog.records == []  # made 0600: nothing to say
        path.chmod(0o644)
        for _ in range(2):
            assert load_signer(path, "servicetrail/sat").verifier_key == made.verifier_key
    [said] = [r.getMessage() for r in caplog.records]
    assert f"the signing key {path} may be read by others (mode 0644)" in said


def test_the_key_file_is_made_once_with_mode_0600_and_never_shown(tmp_path):
    path = tmp_path / "sub" / "servicetrail.key"
    path.parent.mkdir()
    with ThreadPoolExecutor(8) as pool:
        signers = list(pool.map(lambda _: load_signer(path, "n"), range(8)))
    assert len({s.verifier_key for s in signers}) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert os.listdir(path.parent) == ["servicetrail.key"]
    assert "PRIVATE" not in repr(signers[0]) and isinstance(signers[0], Signer)


def test_a_key_file_that_is_not_a_key_is_refused(tmp_path):
    path = tmp_path / "servicetrail.key"
    path.write_text("not a key")
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_signer(path, "n")


def test_a_key_that_cannot_be_created_is_named_as_asked(tmp_path):
    """Not by the temporary file or the folder that failed (the key's folder is a file)."""
    (tmp_path / "store.db").write_text("")
    path = tmp_path / "store.db" / "servicetrail.key"
    with pytest.raises(SigningKeyError) as refused:
        load_signer(path, "n")
    assert str(refused.value) == (
        f"the signing key {path} cannot be created: {tmp_path / 'store.db'} is not a folder"
    )


def test_a_key_in_a_folder_that_does_not_exist_is_refused_not_made(tmp_path):
    """A mistyped SERVICETRAIL_SIGNING_KEY made the folders and a key nobody trusts."""
    path = tmp_path / "typo" / "servicetrail.key"
    with pytest.raises(SigningKeyError) as refused:
        load_signer(path, "n")
    assert str(refused.value) == (
        f"the signing key {path} cannot be created: the folder {path.parent} does not exist"
    )
    assert not path.parent.exists()


@pytest.mark.parametrize("origin", ["my/log\t1", "my/log\r", "my/log\x00", "my/\x1b[31mlog", ""])
def test_a_signed_checkpoint_that_signed_note_rules_out_is_refused(tmp_path, origin):
    """C2SP signed-note: no control character but the newline; tlog-checkpoint: a non-empty
    origin. Signed by the trusted key, each verified (audit 21c), and an escape sequence in
    the origin reached the terminal as `verify-proof` printed it."""
    signer = load_signer(tmp_path / "k.key", "my")
    note = signer.checkpoint(origin, 1, bytes(32))
    with pytest.raises(cp.NoteError):
        cp.verify_checkpoint(note, cp.parse_verifier_key(signer.verifier_key), ed25519_check)


@pytest.mark.parametrize("name", ["my log", "my\u00a0log", "my\u2003log", "my\tlog", "my+log"])
def test_a_key_name_with_a_space_or_a_plus_is_refused(tmp_path, name):
    signer = load_signer(tmp_path / "k.key", name)
    with pytest.raises(cp.NoteError):
        cp.parse_verifier_key(signer.verifier_key)
    good = load_signer(tmp_path / "g.key", "my")
    note = good.checkpoint("my/2025-03", 1, bytes(32)).replace("\u2014 my ", f"\u2014 {name} ")
    with pytest.raises(cp.NoteError):  # the line, or the note, is no signed note's
        cp.parse_checkpoint(note)


# --- found missing by mutation testing (audit 30b) ----------------------------------------


@pytest.mark.parametrize(
    "size, refused",
    [
        ("0", None),
        ("12", None),
        (str(2**64 - 1), None),
        # ck1: C2SP tlog-checkpoint writes the size in decimal without leading zeros; `012`,
        # signed by the trusted key, verified here and is refused by other verifiers
        ("012", "tree size is not a number"),
        # a uint64: past 4,300 digits int() raised a plain ValueError, a traceback from `log
        # verify --checkpoints` and `verify-consistency` and a 500 from the record page of a
        # store whose checkpoint was tampered with (audit 37e)
        (str(2**64), "tree size is past 2\\^64"),
        ("9" * 5000, "tree size is past 2\\^64"),
    ],
)
def test_a_tree_size_is_a_uint64_without_leading_zeros_though_validly_signed(
    tmp_path, size, refused
):
    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    verifier = cp.parse_verifier_key(signer.verifier_key)
    root = base64.b64encode(bytes(32)).decode()
    body = f"servicetrail/sat/2025-03\n{size}\n{root}\n"
    note = cp.signed_note(body, signer.name, signer.public_key, signer._private.sign)
    if refused is None:
        assert cp.verify_checkpoint(note, verifier, ed25519_check).size == int(size)
    else:
        with pytest.raises(cp.NoteError, match=refused):
            cp.verify_checkpoint(note, verifier, ed25519_check)


def test_a_signature_line_under_another_name_is_not_the_keys(tmp_path):
    """ck3: signed-note matches a signature to a key by its name and its key hash both."""
    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    note = signer.checkpoint("servicetrail/sat/2025-03", 12, bytes(32))
    renamed = note.replace("\u2014 servicetrail/sat ", "\u2014 someone/else ")
    with pytest.raises(cp.NoteError, match="no signature by the key"):
        cp.verify_checkpoint(renamed, cp.parse_verifier_key(signer.verifier_key), ed25519_check)
