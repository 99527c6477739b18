"""Ingest without the visibility index, for bench/ingest_ab.py only (put on PYTHONPATH of the
`servicetrail ingest` child): a batch writes its records, payloads and leaves but no
`sat_visibility` rows. The product has no such switch; everything else about the ingest is
the one measured with the index."""

from __future__ import annotations

from typing import Any

import servicetrail.store.writer as writer


def _no_index(conn: Any, rows: Any) -> None:
    return None


writer.index_new = _no_index
