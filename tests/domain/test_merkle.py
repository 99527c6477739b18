"""RFC 9162 trees and proofs: the certificate-transparency test vectors, and every proof for
trees up to 70 leaves checked by the independent verifier in tests/rfc9162.py."""

from __future__ import annotations

import pytest

from servicetrail.domain import merkle
from tests import rfc9162

# The CT test data (certificate-transparency-go, merkle tests): eight leaves, the root of
# each prefix, and known proofs. Leaf numbers in the CT data count from 1; here from 0.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def leaf_hashes(count: int) -> list[bytes]:
    return [merkle.leaf_hash(b"leaf %d" % i) for i in range(count)]


def test_the_split_and_the_inclusion_ranges_are_the_rfcs():
    """k, the largest power of two below n, splits every tree and proof: a k of n itself at
    a power of two (audit 27c) made a proof for 2, 4 or 8 leaves loop without end, so the
    split is checked first, alone, and the ranges only after it."""
    assert [merkle._split(n) for n in range(2, 71)] == [rfc9162.split(n) for n in range(2, 71)]
    assert [merkle._split(n) for n in (2, 3, 4, 5, 8, 9)] == [1, 2, 2, 4, 4, 8]
    for size in (*range(1, 18), 32, 33):
        for index in range(size):
            assert merkle.inclusion_ranges(index, size) == rfc9162.inclusion_path_ranges(
                index, size
            ), (index, size)


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_an_inclusion_proof_with_a_hash_past_the_root_is_refused_as_too_long(index, size, proof):
    """A hash past the top of the tree makes the proof longer than the tree is deep, and it
    is refused as such (RFC 9162 section 2.1.3.2: "if sn is 0, then stop the iteration and
    fail the proof verification"), not folded in as one more level (audit 27c)."""
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:size]]
    longer = [bytes.fromhex(h) for h in proof] + [hashes[0]]
    assert not rfc9162.rfc_inclusion_ok(index, size, hashes[index], longer, CT_ROOTS[size - 1])
    with pytest.raises(merkle.ProofError, match="longer than the tree is deep"):
        merkle.root_from_inclusion(index, size, hashes[index], longer)
    with pytest.raises(merkle.ProofError, match="longer than the tree is deep"):
        merkle.verify_inclusion(index, size, hashes[index], longer, CT_ROOTS[size - 1])


def test_the_ct_roots():
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES]
    for size in range(1, 9):
        assert merkle.root_of(hashes[:size]) == CT_ROOTS[size - 1]
    assert merkle.root_of([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_the_ct_inclusion_proofs(index, size, proof):
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:size]]
    made = merkle.inclusion_proof(index, size, merkle.subtree_hasher(hashes))
    assert [p.hex() for p in made] == proof
    merkle.verify_inclusion(index, size, hashes[index], made, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_the_ct_consistency_proofs(old, new, proof):
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES[:new]]
    made = merkle.consistency_proof(old, new, merkle.subtree_hasher(hashes))
    assert [p.hex() for p in made] == proof
    merkle.verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new - 1], made)


def test_every_inclusion_proof_up_to_70_leaves_satisfies_the_independent_verifier():
    data = [b"leaf %d" % i for i in range(70)]
    hashes = [merkle.leaf_hash(d) for d in data]
    for size in range(1, 71):
        root = rfc9162.mth(data[:size])
        assert merkle.root_of(hashes[:size]) == root
        source = merkle.subtree_hasher(hashes[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, source)
            assert rfc9162.rfc_inclusion_ok(index, size, hashes[index], proof, root)
            merkle.verify_inclusion(index, size, hashes[index], proof, root)
            if proof:  # a proof for another leaf, or a changed hash, must fail both
                wrong = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not rfc9162.rfc_inclusion_ok(index, size, hashes[index], wrong, root)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(index, size, hashes[index], wrong, root)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(index, size, hashes[index], proof[:-1], root)


def test_every_consistency_proof_up_to_70_leaves_satisfies_the_independent_verifier():
    data = [b"leaf %d" % i for i in range(70)]
    hashes = [merkle.leaf_hash(d) for d in data]
    roots = [rfc9162.mth(data[:n]) for n in range(71)]
    source = merkle.subtree_hasher(hashes)
    for new in range(1, 71):
        for old in range(1, new + 1):
            proof = merkle.consistency_proof(old, new, source)
            assert rfc9162.rfc_consistency_ok(old, new, roots[old], roots[new], proof)
            merkle.verify_consistency(old, new, roots[old], roots[new], proof)
            if old < new:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, new, roots[old], roots[new - 1], proof)
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(old, new, roots[old], roots[new], proof[:-1])


def test_a_leaf_outside_the_tree_has_no_proof():
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(0, 5)
    with pytest.raises(merkle.ProofError):
        merkle.consistency_ranges(6, 5)


def test_perfect_roots_are_each_group_s_perfect_subtree():
    """The ingest's tiles, a level at a time: each group of 2**levels hashes folds to the
    root the independent verifier gives its leaves."""
    data = [b"leaf %d" % i for i in range(64)]
    hashes = [merkle.leaf_hash(d) for d in data]
    for levels in range(4):
        width = 1 << levels
        assert merkle.perfect_roots(hashes, levels) == [
            rfc9162.mth(data[i : i + width]) for i in range(0, len(data), width)
        ]
    assert merkle.perfect_roots([], 4) == []
