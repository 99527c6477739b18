"""SPEC section 7's texts: a record's leaf, C2SP checkpoints as signed notes, verifier keys.

Pure: the Ed25519 signing and checking itself lives in servicetrail.signing (the
`cryptography` package), handed in here as functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .times import fixed_time

ED25519_ALGORITHM = b"\x01"  # C2SP signed-note's signature type byte for Ed25519
SIGNATURE_DASH = "\u2014"  # the em dash that starts a signed note's signature line
LEAF_VERSION = 1


class NoteError(ValueError):
    """A checkpoint, signed note or verifier key that cannot be read or does not verify."""


def canonical_json(obj: dict[str, Any]) -> bytes:
    """SPEC section 7's encoding: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


leaf_time = fixed_time  # logged_at as a leaf gives it


def payload_commitment(salt: bytes, payload: str) -> str:
    return hashlib.sha256(salt + payload.encode()).hexdigest()


def record_leaf(
    logged_at: str,
    kind: str,
    request_id: str,
    srv: str | None,
    user_id: str,
    device_id: str,
    response_code: str | None,
    command_variant: int | None,
    commitment: str,
) -> dict[str, Any]:
    """A record's leaf object; `logged_at` already in leaf_time's form."""
    return {
        "v": LEAF_VERSION,
        "logged_at": logged_at,
        "kind": kind,
        "request_id": request_id,
        "srv": srv or "",
        "user_id": user_id,
        "device_id": device_id,
        "response_code": response_code or "",
        "command_variant": command_variant,
        "payload_commitment": commitment,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """Standard base64 in its one spelling: Python's decoder took padding past the last
    group ('...A==' + '=='), which another verifier refuses (audit 27a)."""
    try:
        decoded = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        decoded = None
    if decoded is None or base64.b64encode(decoded).decode("ascii") != text:
        raise NoteError(f"{what} is not standard base64: {text[:80]!r}") from None
    return decoded


def key_hash(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note: the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALGORITHM + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    return f"{name}+{key_hash(name, public_key).hex()}+{b64(ED25519_ALGORITHM + public_key)}"


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public_key: bytes


def is_key_name(name: str) -> bool:
    """C2SP signed-note: a key name is non-empty, with no Unicode space and no plus sign (and,
    as the note that carries it, no control character)."""
    return bool(name) and name.isprintable() and not any(c.isspace() or c == "+" for c in name)


def parse_verifier_key(text: str) -> Verifier:
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not is_key_name(parts[0]):
        raise NoteError("a verifier key is <name>+<key hash in hex>+<base64 key>")
    name, hash_hex, encoded = parts
    key = unb64(encoded, "the verifier key")
    if len(key) != 33 or key[:1] != ED25519_ALGORITHM:
        raise NoteError("the verifier key is not an Ed25519 key (0x01 and 32 bytes)")
    public_key = key[1:]
    if hash_hex.lower() != key_hash(name, public_key).hex():
        raise NoteError("the verifier key's key hash does not match its name and key")
    return Verifier(name, bytes.fromhex(hash_hex), public_key)


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{b64(root)}\n"


# The first line of a retirement's body. A checkpoint's body starts with its origin, so
# neither can be read as the other: this line is no origin of this store, and its second
# line (the origin) is no tree size.
RETIRED_LINE = "servicetrail retired"


# How the log's records went, a line past the root (a checkpoint's extension line, C2SP
# tlog-checkpoint): by the retention that retired it, or dropped by hand before it (their
# partitions gone, their leaves left: 61b). Signed with the rest, so that whoever can write
# the store cannot pass a month dropped by hand for one retention removed, nor the reverse
# (an unsigned column could be set either way). A retirement signed before it has no such
# line: how is not recorded (62d).
BY_RETENTION = "records removed by retention"
BY_HAND = "records dropped by hand before retention"
HOW_RETIRED = (BY_RETENTION, BY_HAND)


def retirement_body(origin: str, size: int, root: bytes, how: str | None = None) -> str:
    """What retention signs as it drops a month's log: that the log ended at this size and
    root (its last checkpoint's), and `how` (one of HOW_RETIRED; None: not recorded, as an
    older retention's). `log verify` tells retention from an intruder who dropped the same
    month by it: the intruder has no key to sign one (audit 46d)."""
    if how is not None and how not in HOW_RETIRED:
        raise ValueError(f"a retirement says how in one of {HOW_RETIRED}, not {how!r}")
    return f"{RETIRED_LINE}\n{checkpoint_body(origin, size, root)}" + (f"{how}\n" if how else "")


def signed_note(body: str, name: str, public_key: bytes, sign: Callable[[bytes], bytes]) -> str:
    signature = sign(body.encode())
    stamp = b64(key_hash(name, public_key) + signature)
    return f"{body}\n{SIGNATURE_DASH} {name} {stamp}\n"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str


def parse_checkpoint(note: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """A checkpoint note's body and its signature lines as (name, key hash, signature).
    What C2SP's signed-note and tlog-checkpoint rule out is refused (audit 21c: an origin
    holding an escape sequence verified, and was printed to the terminal as it was)."""
    if any((c < " " and c != "\n") or c == "\x7f" for c in note):
        raise NoteError("a signed note holds no control character but the newline")
    if not note.isascii():
        try:
            note.encode()
        except UnicodeEncodeError:
            # a stored note whose bytes are not UTF-8, read as lone surrogates (SQLite): its
            # signature's check encoded it and raised, `log verify` exiting 2 with "an
            # argument or the standard input holds bytes that are not UTF-8" (63d)
            raise NoteError("a signed note is UTF-8 text") from None
    body, sep, signature_block = note.partition("\n\n")
    if not sep or not signature_block.endswith("\n"):
        raise NoteError("a signed note is a body, a blank line and signature lines")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("a checkpoint body has an origin, a tree size and a root hash")
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise NoteError("the checkpoint's origin is empty")
    if not size_text.isascii() or not size_text.isdigit() or (size_text[0] == "0" != size_text):
        raise NoteError(f"the checkpoint's tree size is not a number: {size_text[:40]!r}")
    # a uint64 (C2SP tlog-checkpoint): past 4,300 digits int() raised a ValueError no caller
    # expected, a traceback from `log verify` and a 500 from a record page (audit 37e)
    if len(size_text) > 20 or int(size_text) >= 2**64:
        cut = "..." if len(size_text) > 40 else ""
        raise NoteError(f"the checkpoint's tree size is past 2^64: {size_text[:40]!r}{cut}")
    root = unb64(root_text, "the checkpoint's root hash")
    if len(root) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    signatures = []
    for line in signature_block[:-1].split("\n"):
        dash, _, rest = line.partition(" ")
        name, _, stamp = rest.partition(" ")
        if dash != SIGNATURE_DASH or not is_key_name(name) or not stamp:
            raise NoteError(f"not a signature line: {line[:80]!r}")
        raw = unb64(stamp, "a signature")
        if len(raw) < 5:
            raise NoteError("a signature is too short")
        signatures.append((name, raw[:4], raw[4:]))
    return Checkpoint(origin, int(size_text), root, body), signatures


def verify_checkpoint(
    note: str, verifier: Verifier, check: Callable[[bytes, bytes, bytes], bool]
) -> Checkpoint:
    """The checkpoint, if a signature by this verifier's key is on it and valid; `check` is
    (public key, signature, message) -> whether the Ed25519 signature holds."""
    checkpoint, signatures = parse_checkpoint(note)
    for name, hash_, signature in signatures:
        if name == verifier.name and hash_ == verifier.key_hash:
            if check(verifier.public_key, signature, checkpoint.body.encode()):
                return checkpoint
            raise NoteError(f"the checkpoint's signature by {name} does not verify")
    # named by the key's hash too: after a rotation both keys bear one name (audit 29e)
    signed_by = ", ".join(f"{name}+{hash_.hex()}" for name, hash_, _ in signatures) or "none"
    raise NoteError(
        f"the checkpoint carries no signature by the key {verifier.name}+"
        f"{verifier.key_hash.hex()} (it is signed by {signed_by}: a key rotated since?)"
    )


@dataclass(frozen=True)
class Retirement:
    """A verified retirement: the log's origin, last size and root, and how its records went
    (one of HOW_RETIRED; None: not recorded, a retirement signed before 62d)."""

    origin: str
    size: int
    root: bytes
    how: str | None


def parse_retirement(note: str) -> tuple[Retirement, list[tuple[str, bytes, bytes]], str]:
    """What a retirement note says, unverified, its signature lines as parse_checkpoint gives
    them, and the body they sign; NoteError if it is no retirement. Its body past the first
    line reads as a checkpoint's. Past the root, one line of HOW_RETIRED or none: any other
    is refused, not passed over (a checkpoint's extension lines were taken unread, so a
    signed statement this verifier does not know would have retired the log as if it said
    nothing more)."""
    head, sep, rest = note.partition("\n")
    if head != RETIRED_LINE or not sep:
        raise NoteError(f"a retirement's body starts with the line {RETIRED_LINE!r}")
    checkpoint, signatures = parse_checkpoint(rest)
    extension = checkpoint.body.split("\n")[3:-1]
    if len(extension) > 1 or (extension and extension[0] not in HOW_RETIRED):
        raise NoteError(f"a retirement's line past the root is one of {HOW_RETIRED}, or none")
    how = extension[0] if extension else None
    said = Retirement(checkpoint.origin, checkpoint.size, checkpoint.root, how)
    return said, signatures, f"{RETIRED_LINE}\n{checkpoint.body}"


def verify_retirement(
    note: str, verifiers: list[Verifier], check: Callable[[bytes, bytes, bytes], bool]
) -> Retirement:
    """The retirement, if one of these keys signed the note validly (its signature is over
    the whole body); NoteError otherwise."""
    said, signatures, body = parse_retirement(note)
    for verifier in verifiers:
        for name, hash_, signature in signatures:
            if name == verifier.name and hash_ == verifier.key_hash:
                if check(verifier.public_key, signature, body.encode()):
                    return said
    raise NoteError("the retirement carries no valid signature by a trusted key")


def verify_by_any(
    note: str, verifiers: list[Verifier], check: Callable[[bytes, bytes, bytes], bool]
) -> tuple[Checkpoint, Verifier]:
    """The checkpoint and the key that signed it validly, if one of these did (a log signed
    with an earlier key before a rotation, the current one after); NoteError saying why not
    for each key."""
    refusals = []
    for verifier in verifiers:
        try:
            return verify_checkpoint(note, verifier, check), verifier
        except NoteError as e:
            refusals.append(str(e))
    raise NoteError("; ".join(refusals) or "no verifier key given")
