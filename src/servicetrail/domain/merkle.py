"""RFC 9162 section 2.1 Merkle trees: hashes, roots, inclusion and consistency proofs.

Proofs are built from a *perfect subtree source*: a function giving the hash of the complete,
aligned subtree of 2**level leaves starting at leaf `index * 2**level`. Every hash a proof
needs is the root of a range that starts on a boundary of its own size's next power of two,
so it folds from such perfect subtrees; the store keeps some of them (tiles) and computes the
rest, and nothing here knows how.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

# (level, index) -> the hash of leaves [index * 2**level, (index + 1) * 2**level)
PerfectSource = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof that does not verify, or a request for one that cannot exist."""


def leaf_hash(leaf_data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf_data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_levels(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) whose fold from the right is MTH(D[lo:hi]), largest
    first; `lo` must be a multiple of the power of two at or above hi - lo (as every range
    of an RFC 9162 tree and proof is)."""
    parts = []
    start, remaining = lo, hi - lo
    while remaining:
        level = remaining.bit_length() - 1
        parts.append((level, start >> level))
        start += 1 << level
        remaining -= 1 << level
    return parts


def range_hash(lo: int, hi: int, perfect: PerfectSource) -> bytes:
    """MTH(D[lo:hi]) for an aligned range (see perfect_levels)."""
    if hi <= lo:
        return EMPTY_ROOT
    hashes = [perfect(level, index) for level, index in perfect_levels(lo, hi)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of leaves given by their leaf hashes, computed level by level."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return range_hash(0, len(leaf_hashes), subtree_hasher(leaf_hashes))


def level_up(hashes: Sequence[bytes]) -> list[bytes]:
    """The parents of consecutive pairs (an odd last hash is left out)."""
    return [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes) - 1, 2)]


def perfect_roots(hashes: Sequence[bytes], levels: int) -> list[bytes]:
    """The roots of consecutive perfect subtrees of 2**levels hashes each (len(hashes) a
    multiple of it): the same as perfect_from on each group, a whole level at a time with
    node_hash written in line (the ingest stores a tile for every 16 leaves; a call per node
    cost half again as much)."""
    sha256, prefix = hashlib.sha256, NODE_PREFIX
    level = list(hashes)
    for _ in range(levels):
        level = [
            sha256(prefix + left + right).digest() for left, right in zip(level[::2], level[1::2])
        ]
    return level


def perfect_from(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree given its 2**k hashes of one level."""
    level = list(hashes)
    while len(level) > 1:
        level = level_up(level)
    return level[0]


def subtree_hasher(leaf_hashes: Sequence[bytes]) -> PerfectSource:
    """A perfect subtree source over leaf hashes held in memory."""

    def perfect(level: int, index: int) -> bytes:
        start = index << level
        return perfect_from(leaf_hashes[start : start + (1 << level)])

    return perfect


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make the inclusion proof of leaf `index` in a tree of `size`
    leaves (RFC 9162 section 2.1.3.1), in proof order (nearest the leaf first)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make the consistency proof from `old_size` to `new_size`
    (RFC 9162 section 2.1.4.1, SUBPROOF), in proof order."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                ranges.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    return ranges[::-1]


def inclusion_proof(index: int, size: int, perfect: PerfectSource) -> list[bytes]:
    return [range_hash(lo, hi, perfect) for lo, hi in inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, perfect: PerfectSource) -> list[bytes]:
    return [range_hash(lo, hi, perfect) for lo, hi in consistency_ranges(old_size, new_size)]


def needed_perfect(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every perfect subtree (level, index) the roots of these ranges are folded from."""
    return [part for lo, hi in ranges for part in perfect_levels(lo, hi)]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root that an inclusion proof of this leaf hash implies."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof does not lead to the checkpoint's root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2; raises ProofError unless the proof shows the tree of
    `new_size` leaves extends the tree of `old_size` leaves."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise ProofError("the consistency proof does not match the two roots")
