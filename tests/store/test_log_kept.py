"""Checkpoints kept outside the store (`log verify --checkpoints`), placed in the logs they
are of: only a trusted key's, and only of a log this store can have (store.log_kept)."""

from __future__ import annotations

from servicetrail.domain import merkle
from servicetrail.signing import load_signer
from servicetrail.store.log_kept import kept_checkpoints

ROOT = merkle.leaf_hash(b"a leaf")


def test_a_kept_checkpoint_is_placed_in_its_log_and_one_of_no_month_is_said(tmp_path):
    """A month is 01 to 12: `.../2025-13` or `.../access/2025-00` is of no log of this store,
    said so, rather than taken for a log the store lost (whose absence `log verify` then
    reports as a deletion)."""
    signer = load_signer(tmp_path / "k.key", "servicetrail/sat")
    notes = [
        signer.checkpoint(origin, 3, ROOT)
        for origin in (
            "servicetrail/sat/2025-12",
            "servicetrail/sat/access/2025-01",
            "servicetrail/sat/2025-13",
            "servicetrail/sat/access/2025-00",
            "servicetrail/sat/2025-1x",
        )
    ]
    kept = kept_checkpoints(notes, "servicetrail/sat", {signer.verifier_key})
    assert kept.by_log == {("sat", "2025-12"): [(3, ROOT)], ("access", "2025-01"): [(3, ROOT)]}
    assert kept.findings == [
        f"the kept checkpoint of servicetrail/sat/{month} is of no log of this store"
        for month in ("2025-13", "access/2025-00", "2025-1x")
    ]
