"""Opening inputs (plain or gzip) and telling SAT JSONL, DUIS JSONL and DUIS XML apart."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, cast

import orjson


class Format(StrEnum):
    SAT_JSONL = "SAT JSON Lines"
    DUIS_JSONL = "DUIS JSON Lines capture"
    DUIS_XML = "DUIS XML file"


class UnreadableInput(ValueError):
    """An input that is not a file servicetrail knows how to read."""


def open_binary(path: Path) -> IO[bytes]:
    # both are buffered binary streams, which typeshed does not declare IO[bytes]
    return cast(IO[bytes], gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb"))


def _plain_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect(path: Path) -> Format:
    suffix = _plain_suffix(path)
    if suffix == ".xml":
        return Format.DUIS_XML
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise UnreadableInput(f"{path}: not .xml, .jsonl or .ndjson (optionally .gz)")
    with open_binary(path) as f:
        for line in f:
            if line.strip():
                try:
                    first = orjson.loads(line)
                except orjson.JSONDecodeError:
                    # a damaged line (the loader rejects it with its number): judge by the next
                    continue
                return (
                    Format.DUIS_JSONL
                    if isinstance(first, dict) and "duis" in first
                    else Format.SAT_JSONL
                )
    return Format.SAT_JSONL


def expand(paths: list[Path]) -> Iterator[Path]:
    """Files named, and the readable files inside folders named, skipping our own reject files."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if ".rejects." in child.name or child.name.startswith("."):
                    continue
                try:
                    detect(child)
                except UnreadableInput:
                    continue
                yield child
        elif path.exists():
            yield path
        else:
            raise UnreadableInput(f"{path}: no such file or folder")


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line
