"""An independent RFC 9162 section 2.1 verifier and C2SP signed-note checker for the tests.

Written from the RFC and C2SP texts, not from servicetrail's code, and it imports none of
servicetrail: a proof servicetrail serves is checked here the way an outside Party would.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) by the RFC's recursive definition, from the leaves' data."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def rfc_inclusion_ok(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """Section 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = sha256(b"\x01" + r + p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def rfc_consistency_ok(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """Section 2.1.4.2, step by step (first < second; equal sizes need no proof)."""
    if first == second:
        return not path and first_hash == second_hash
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            sr = sha256(b"\x01" + sr + c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


def check_checkpoint(note: str, verifier_key: str) -> tuple[str, int, bytes]:
    """C2SP signed-note and tlog-checkpoint: (origin, size, root) if the note carries a valid
    Ed25519 signature by this verifier key; AssertionError otherwise."""
    name, key_hash_hex, key_b64 = verifier_key.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 1 and len(key) == 33
    assert sha256(name.encode() + b"\n" + key)[:4].hex() == key_hash_hex
    body, signatures = note.split("\n\n", 1)
    body += "\n"
    origin, size, root_b64 = body.split("\n")[:3]
    for line in signatures.rstrip("\n").split("\n"):
        dash, signer, stamp = line.split(" ")
        assert dash == "\u2014"
        raw = base64.b64decode(stamp)
        if signer == name and raw[:4].hex() == key_hash_hex:
            try:
                Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], body.encode())
            except InvalidSignature:
                raise AssertionError("bad signature") from None
            return origin, int(size), base64.b64decode(root_b64)
    raise AssertionError("no signature by this key")


def signed_note(private: Ed25519PrivateKey, name: str, body: str) -> tuple[str, str]:
    """A C2SP signed note of `body` and its verifier key, made here from the texts (an
    intruder's own key, which the store never had)."""
    public = private.public_key().public_bytes_raw()
    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    signature = private.sign(body.encode())
    line = f"\u2014 {name} {base64.b64encode(key_hash + signature).decode()}\n"
    encoded = base64.b64encode(b"\x01" + public).decode()
    verifier = f"{name}+{key_hash.hex()}+{encoded}"
    return body + "\n" + line, verifier


def canonical(obj: dict) -> bytes:
    """SPEC section 7's leaf encoding, as the SPEC gives it."""
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc_consistency_proof(first: int, leaves: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of section 2.1.4.1 by its recursive definition, from the leaves' data:
    a prover of our own for trees servicetrail never saw (a forked log, say)."""

    def subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
        n = len(data)
        if m == n:
            return [] if complete else [mth(data)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return subproof(m, data[:k], complete) + [mth(data[k:])]
        return subproof(m - k, data[k:], False) + [mth(data[:k])]

    return subproof(first, leaves, True)


def split(n: int) -> int:
    """Section 2.1.1's k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_path_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """PATH(m, D[n]) of section 2.1.3.1 by its recursive definition, as the leaf ranges
    [lo, hi) whose MTH are its hashes, in proof order."""
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return inclusion_path_ranges(m, k) + [(k, n)]
    return [(lo + k, hi + k) for lo, hi in inclusion_path_ranges(m - k, n - k)] + [(0, k)]
