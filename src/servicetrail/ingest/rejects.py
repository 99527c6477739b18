"""The reject file: every refused record, as it came, with its line and a one-line reason."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import orjson


def default_rejects_path(source: Path) -> Path:
    """`records.jsonl` -> `records.rejects.jsonl` beside it, or in the working folder if that is read-only."""
    name = (source.name.split(".")[0] or source.name) + ".rejects.jsonl"
    beside = source.resolve().parent / name
    return beside if os.access(beside.parent, os.W_OK) else Path.cwd() / name


class RejectFile:
    """Opened on the first reject, so a clean load leaves no empty file behind."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self.count = 0
        self._out: IO[bytes] | None = None
        if not append:  # `append`: another input of the same run already wrote to this file
            path.unlink(missing_ok=True)  # a stale file from an earlier run would mislead

    def add(self, line: int, reason: str, raw: str | bytes, source: str | None = None) -> None:
        if self._out is None:
            self._out = open(self.path, "ab")
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        entry = {"line": line, "reason": reason, "raw": text.rstrip("\r\n")}
        if source:
            entry["file"] = source
        self._out.write(orjson.dumps(entry) + b"\n")
        self.count += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
