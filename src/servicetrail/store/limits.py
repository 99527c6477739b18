"""Statement time limits: a search that would run too long stops and says so."""
from __future__ import annotations

import os

DEFAULT_SECONDS = float(os.environ.get("SERVICETRAIL_STATEMENT_TIMEOUT", "10"))
# exports and CLI listings stream a whole answer in one statement
EXPORT_SECONDS = float(os.environ.get("SERVICETRAIL_EXPORT_TIMEOUT", "3600"))


class SearchTooBroad(RuntimeError):
    """A search ran past its time limit."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the search took longer than {seconds:g} s and was stopped: "
            "narrow it (a Device ID, a Request ID or a shorter date range)"
        )
