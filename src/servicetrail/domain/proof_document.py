"""Checking proofs offline: a proof document as GET /api/v1/records/{id}/proof gives it
(`servicetrail log verify-proof`), and that a later checkpoint extends an earlier one
(`servicetrail log verify-consistency`). Nothing from the server is trusted but the
verifier keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import merkle
from .ids import keys_once, shown
from .checkpoint import (
    Checkpoint,
    NoteError,
    Verifier,
    canonical_json,
    unb64,
    verify_by_any,
    verify_checkpoint,
)


def parse_proof_document(raw: bytes) -> Any:
    """The document's JSON; ValueError for one whose object names a key twice (json keeps
    the last, and only that was proven: a reader of the first saw a kind and a Device that
    were not; audit 21c)."""

    try:  # UTF-8, as the API serves it: json.loads took FF FE for UTF-16 and said "Expecting
        # value" (audit 37e)
        text = raw.decode("utf-8-sig")  # a BOM (a Windows editor's) as json.loads took it
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 JSON (byte {e.start} is not UTF-8)") from None
    try:
        document = json.loads(text, object_pairs_hook=keys_once, parse_int=_whole_number)
    except json.JSONDecodeError as e:
        # a payload or a checkpoint given in its place said only "Expecting value: line 1
        # column 1 (char 0)" (audit 42c)
        raise ValueError(f"not JSON, as a proof the API gave is ({e})") from None
    try:  # an escape such as \ud800 alone is no character: checking met it later, and said
        # so in Python's words ("'utf-8' codec can't encode character", audit 60f)
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("its JSON escapes half a UTF-16 pair (\\ud800-\\udfff) alone") from None
    return document


# no index or size of a log exceeds 2^64 - 1, of 20 digits: a longer number was read whole,
# echoed whole in the answer, and from 4,300 digits met Python's own limit, in its words
_MOST_DIGITS = 20


def _whole_number(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MOST_DIGITS:
        raise ValueError(f"a number of {digits} digits: no index or size has over {_MOST_DIGITS}")
    return int(text)


SALT_BYTES = 16  # a payload_salt's length (SPEC section 7: 16 random bytes)


@dataclass(frozen=True)
class Verified:
    origin: str
    leaf_index: int
    tree_size: int
    payload_checked: bool


def verify_proof_document(
    document: Any,
    verifier: Verifier,
    check: Callable[[bytes, bytes, bytes], bool],
    payload: str | None = None,
) -> Verified:
    """Raises NoteError or merkle.ProofError saying what does not hold. With `payload` (and
    the document's `payload_salt`), the leaf's payload commitment is checked too."""
    if not isinstance(document, dict):
        raise NoteError("a proof document is a JSON object")
    leaf, index, path, note = (
        document.get(k) for k in ("leaf", "leaf_index", "inclusion", "checkpoint")
    )
    if not isinstance(leaf, dict) or not isinstance(note, str) or not isinstance(path, list):
        raise NoteError("a proof document has leaf (object), inclusion (list) and checkpoint")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise NoteError("leaf_index is not a whole number")
    checkpoint = verify_checkpoint(note, verifier, check)
    if document.get("log") != checkpoint.origin:
        raise NoteError(
            f"the proof's log {shown(document.get('log'))} is not the checkpoint's origin"
        )
    # SPEC section 7: a record's log is its logged_at month's, named under the key's name
    logged_at = leaf.get("logged_at")
    month = logged_at[:7] if isinstance(logged_at, str) else None
    if checkpoint.origin != f"{verifier.name}/{month}":
        raise NoteError(
            f"the checkpoint's origin {shown(checkpoint.origin)} is not the log of the leaf's "
            f"month under {verifier.name!r}"
        )
    hashes = [unb64(h, "an inclusion hash") if isinstance(h, str) else b"" for h in path]
    if any(len(h) != 32 for h in hashes):
        raise NoteError("an inclusion hash is not 32 bytes of base64")
    leaf_hash = merkle.leaf_hash(canonical_json(leaf))
    merkle.verify_inclusion(index, checkpoint.size, leaf_hash, hashes, checkpoint.root)
    payload_checked = False
    salt = _salt_of(document)
    if payload is not None:
        if salt is None:
            raise NoteError("the document has no payload_salt (only your own records have one)")
        if hashlib.sha256(salt + payload.encode()).hexdigest() != leaf.get("payload_commitment"):
            raise NoteError("the payload does not match the leaf's payload_commitment")
        payload_checked = True
    return Verified(checkpoint.origin, index, checkpoint.size, payload_checked)


def _salt_of(document: dict[str, Any]) -> bytes | None:
    """The document's payload_salt (SPEC section 7: 16 bytes, in hex), checked whether or not a
    payload is given: a salt that is not one was accepted with the rest of the document
    (audit 38b)."""
    salt_hex = document.get("payload_salt")
    if salt_hex is None:  # absent, or null as the API's schema allows for a title-only record
        return None
    try:
        salt = bytes.fromhex(salt_hex) if isinstance(salt_hex, str) else b""
    except ValueError:
        salt = b""
    if len(salt) != SALT_BYTES:
        raise NoteError(f"payload_salt is not {SALT_BYTES} bytes in hex")
    return salt


@dataclass(frozen=True)
class Extended:
    origin: str
    old_size: int
    new_size: int


def signed_by_any(
    note: str, verifiers: Sequence[Verifier], check: Callable[[bytes, bytes, bytes], bool]
) -> Checkpoint:
    """The checkpoint, if one of the keys signed it (a log signed with an earlier key before a
    rotation and the current one after), and of a log named under that key; NoteError naming
    why not."""
    checkpoint, signer = verify_by_any(note, list(verifiers), check)
    if not checkpoint.origin.startswith(f"{signer.name}/"):
        raise NoteError(
            f"the checkpoint's origin {shown(checkpoint.origin)} is not a log of {signer.name!r}"
        )
    return checkpoint


def verify_consistency_document(
    old_note: str,
    new_note: str,
    document: Any,
    verifiers: Sequence[Verifier],
    check: Callable[[bytes, bytes, bytes], bool],
) -> Extended:
    """That the log of `new_note` extends the log of `old_note` (RFC 9162 section 2.1.4.2),
    by the consistency proof `document` (as GET /api/v1/logs/consistency gives it), both
    checkpoints signed by a given key. Raises NoteError or merkle.ProofError saying what does
    not hold: a log rewritten between the two checkpoints has no such proof."""
    old = signed_by_any(old_note, verifiers, check)
    new = signed_by_any(new_note, verifiers, check)
    if old.origin != new.origin:
        raise NoteError(
            f"the checkpoints are of two logs: {shown(old.origin)} and {shown(new.origin)}"
        )
    if old.size > new.size:
        raise NoteError(
            f"the new checkpoint has {new.size} leaves, fewer than the old one's {old.size}"
        )
    path = document.get("proof") if isinstance(document, dict) else None
    if not isinstance(path, list):
        raise NoteError('a consistency proof document is {"proof": [base64 hashes]}')
    hashes = [unb64(h, "a consistency hash") if isinstance(h, str) else b"" for h in path]
    if any(len(h) != 32 for h in hashes):
        raise NoteError("a consistency hash is not 32 bytes of base64")
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, hashes)
    except merkle.ProofError as e:
        # a proof asked between other sizes fails as "too short" or "does not lead to the
        # new root", which reads as a log rewritten (audit 42c): say which sizes it must be
        raise merkle.ProofError(
            f"{e} (a proof from the old checkpoint's {old.size} leaves to the new one's "
            f"{new.size}: asked with from={old.size}&to={new.size}?)"
        ) from None
    return Extended(old.origin, old.size, new.size)
