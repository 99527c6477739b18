"""Checking a proof document as GET /api/v1/records/{id}/proof gives it, offline
(`servicetrail log verify-proof`): nothing from the server is trusted but the verifier key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import merkle
from .checkpoint import NoteError, Verifier, canonical_json, unb64, verify_checkpoint


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
        raise NoteError(f"the proof's log {document.get('log')!r} is not the checkpoint's origin")
    hashes = [unb64(h, "an inclusion hash") if isinstance(h, str) else b"" for h in path]
    if any(len(h) != 32 for h in hashes):
        raise NoteError("an inclusion hash is not 32 bytes of base64")
    leaf_hash = merkle.leaf_hash(canonical_json(leaf))
    merkle.verify_inclusion(index, checkpoint.size, leaf_hash, hashes, checkpoint.root)
    payload_checked = False
    if payload is not None:
        salt_hex = document.get("payload_salt")
        if not isinstance(salt_hex, str):
            raise NoteError("the document has no payload_salt (only your own records have one)")
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            raise NoteError("payload_salt is not hex") from None
        if hashlib.sha256(salt + payload.encode()).hexdigest() != leaf.get("payload_commitment"):
            raise NoteError("the payload does not match the leaf's payload_commitment")
        payload_checked = True
    return Verified(checkpoint.origin, index, checkpoint.size, payload_checked)
