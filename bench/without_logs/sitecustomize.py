"""Ingest without the verifiable logs, for bench/logs.py's A/B only (put on PYTHONPATH of the
`servicetrail ingest` child): no salt and leaf hash per record, no leaves, no seal. The
product has no such switch; everything else about the ingest is the one measured with logs."""

from __future__ import annotations

from typing import Any

import servicetrail.ingest.trail_load as load
import servicetrail.store.writer as writer


def _no_leaf(*fields: Any) -> tuple[bytes, bytes]:
    return b"", b""


writer.hot_leaf = _no_leaf
writer.add_leaves = lambda conn, family, rows: None
load.seal_store = lambda engine: []
