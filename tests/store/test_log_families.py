"""store.log_families: the kinds of entry with verifiable logs, and each one's leaves
recomputed from the stored entries (what `log verify` compares the stored leaves with)."""

from __future__ import annotations

from servicetrail.domain.access_log import Reader, Tally
from servicetrail.store.access_log import append_entry, entries_after
from servicetrail.store.log_families import access_leaves
from tests.personas import NORTHPOWER

# --- found missing by mutation testing (audit 30b) ----------------------------------------


def test_access_log_leaves_are_read_in_half_open_slices(engine):
    """ml5: `log verify` reads the access log's entries in [low, high) slices, one a worker:
    an entry at a slice's end, read in both, was checked and counted twice."""
    reader = Reader(NORTHPOWER, "np.analyst", "api")
    with engine.connect() as conn:
        for n in range(6):
            append_entry(conn, reader, "search", {"n": str(n)}, Tally())
        ids = [entry.id for entry in entries_after(conn, 0, 100)]
        assert len(ids) == 6
        slices = [(ids[0], ids[3]), (ids[3], ids[5] + 1)]
        read = [entry_id for low, high in slices for entry_id, _ in access_leaves(conn, low, high)]
    assert read == ids
