"""Ingest without the visibility index and without the verifiable logs, for bench/ingest_ab.py
only: both stubs at once. Against the without_logs arm it gives the index's cost free of the
seal's, whose server time varied by several seconds from run to run."""

from __future__ import annotations

import runpy
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1]
for _stub in ("without_index", "without_logs"):
    runpy.run_path(str(_BENCH / _stub / "sitecustomize.py"))
