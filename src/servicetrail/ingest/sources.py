"""Opening inputs (plain or gzip) and telling SAT JSONL, DUIS JSONL and DUIS XML apart."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, NamedTuple, cast

import orjson

from .. import settings
from ..domain.records import MAX_PAYLOAD_CHARS


class Format(StrEnum):
    SAT_JSONL = "SAT JSON Lines"
    DUIS_JSONL = "DUIS JSON Lines capture"
    DUIS_XML = "DUIS XML file"


class UnreadableInput(ValueError):
    """An input that is not a file servicetrail knows how to read."""


class CannotRead(UnreadableInput):
    """An input file that the system will not let us read (permission, an I/O error)."""


class NotUtf8Lines(UnreadableInput):
    """JSON Lines in UTF-16: refused whole, and a folder's stops the run as a file that cannot
    be read does (skipped as a file of neither form, its records went unsaid, exit 0:
    review 35f)."""


# What reading a damaged or cut-short gzip input raises, at the point of the damage (BadGzipFile
# at once for a file that is not gzip at all)
DAMAGED = (EOFError, zlib.error, gzip.BadGzipFile)


def damage_reason(error: BaseException) -> str:
    return (
        f"the compressed input cannot be read from this line on ({_said(error)}); "
        "the lines before it were read"
    )


def _said(error: BaseException) -> str:
    """The error's words, or its kind when it has none (an EOFError said `()`: review 44e)."""
    return str(error) or type(error).__name__


def damaged_document_reason(error: BaseException) -> str:
    """A compressed file that holds one document: none of it is read (not the lines before)."""
    return f"the compressed document cannot be read ({_said(error)}); nothing of it was stored"


def open_binary(path: Path) -> IO[bytes]:
    # both are buffered binary streams, which typeshed does not declare IO[bytes]
    compressed = path.suffix.lower() == ".gz"
    return cast(IO[bytes], gzip.open(path, "rb") if compressed else open(path, "rb"))


READ_PIECE = 1 << 20


def read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of the stream, a piece at a time: one read(limit) allocates the
    limit first, and a limit of 64 GB, which SERVICETRAIL_MAX_DUIS_BYTES takes, ended the
    ingest of a 6 KB file in a MemoryError (audit 29c)."""
    pieces = []
    while limit > 0:
        piece = stream.read(min(limit, READ_PIECE))
        if not piece:
            break
        pieces.append(piece)
        limit -= len(piece)
    return b"".join(pieces)


def _plain_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect(path: Path) -> Format:
    """The input's form: by its name (.xml, .jsonl, .ndjson, .json, each optionally .gz), else
    by its first bytes (an XML document starts with `<`, JSON Lines with `{`)."""
    suffix = _plain_suffix(path)
    try:
        if suffix == ".xml" or (
            suffix not in (".jsonl", ".ndjson", ".json") and _starts_like_xml(path)
        ):
            return Format.DUIS_XML
        return _form_of_lines(path)
    except OSError as e:  # no permission, an I/O error: named, before anything is loaded
        raise CannotRead(f"{path}: cannot be read ({e.strerror or e})") from None


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFFED_BYTES = 4096


def _starts_like_xml(path: Path) -> bool:
    """Whether a file named otherwise holds an XML document (True) or JSON Lines (False);
    UnreadableInput if it holds neither."""
    try:
        with open_binary(path) as f:
            head = f.read(_SNIFFED_BYTES)
    except DAMAGED:
        head = b""
    if head.startswith(_UTF16_BOMS):
        return True
    first = without_bom(head).lstrip()[:1]
    if first == b"<":
        return True
    if first == b"{":
        return False
    raise UnreadableInput(
        f"{path}: neither DUIS XML nor JSON Lines (not named .xml, .jsonl or .ndjson, and its "
        "first bytes are not an XML document's or a JSON object's)"
    )


# lines looked at to tell a file's form, at most: a damaged line is the loader's to reject
FORM_LINES = 1000


def _form_of_lines(path: Path) -> Format:
    """A DUIS capture's records carry `duis`, SAT JSON Lines' `kind`: the first line that is
    an object with one of them tells. A line that is no JSON, not an object or an object with
    neither (a damaged first record) tells nothing: judged by it, one `null` or `{"dius": ..}`
    at the top made every good capture line a reject (audit 23c). UTF-16 text is refused
    whole: split on its line ends, every line was a reject of its own, none saying why
    (audit 35c)."""
    try:
        with open_binary(path) as f:
            head = f.read(2)
    except DAMAGED:  # the loader's to reject, line by line
        head = b""
    if head in _UTF16_BOMS:
        raise NotUtf8Lines(
            f"{path}: is UTF-16 text; JSON Lines are read as UTF-8 (save it as UTF-8)"
        )
    with open_binary(path) as f:
        for number, line in enumerate(readable_lines(f)):
            if number >= FORM_LINES:
                break
            # (a line too long to be a record is no bytes: the next is tried)
            if isinstance(line, bytes) and line.strip(BLANK):
                try:
                    record = orjson.loads(without_bom(line))
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "duis" in record:
                    return Format.DUIS_JSONL
                if isinstance(record, dict) and "kind" in record:
                    return Format.SAT_JSONL
    return Format.SAT_JSONL


def max_line_bytes() -> int:
    """The longest line a record can take: a payload at the limit with every byte \\u-escaped
    (six bytes), and 1 MiB for the rest. A longer line is no record: it is rejected unread
    (workers.Span), where held whole it took five times its size (a 190 MB line of garbage
    took 1 GB; audit, session 17)."""
    return 6 * max(MAX_PAYLOAD_CHARS, settings.current().max_duis_bytes) + (1 << 20)


# A stretch of the input a reject's raw input is copied from, not held: ("span", offset in the
# decompressed input, length, or None to the end). A tuple: it crosses the workers' pipe.
Span = tuple[str, int, int | None]

PIECE = 1 << 20  # a line is read this much at a time (most are one piece), a long one copied
BLANK_RUN_BYTES = 8 << 20
# A line of only these is blank, read past and counted as nothing: JSON's white space (a
# CSV's blank line is the same). Not bytes.strip()'s, which also takes a vertical tab and a
# form feed: a line of those was dropped in silence (audit 42b).
BLANK = b" \t\n\r"
SPACE = frozenset(BLANK)


class Blanks(NamedTuple):
    """A run of blank lines, read past together: how many, and their bytes."""

    lines: int
    size: int


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | tuple[int, int] | Blanks]:
    """The stream's lines; in place of one over `limit` bytes, (its length without its line
    end, the bytes read), the line read past a piece at a time, never held whole; in place of a
    run of blank lines, Blanks (a gigabyte of newlines gzips to a megabyte, and one line at a
    time it took half an hour)."""
    while line := stream.readline(PIECE):
        if len(line) > limit or (len(line) == PIECE and not line.endswith(b"\n")):
            yield gathered_line(stream, line, limit)
        elif line[0] in SPACE and not line.strip(BLANK):
            run, damage = blanks_from(stream, line)
            yield run
            if damage is not None:  # at the line after the run, as a plain read would have
                raise damage
        else:
            yield line


def blanks_from(stream: IO[bytes], first: bytes) -> tuple[Blanks, BaseException | None]:
    """The run of blank lines that starts with the blank line `first`, read past a buffer at a
    time (the stream's peek; a stream without one gives the line alone), up to about
    BLANK_RUN_BYTES: a loader commits between chunks, and a run is no longer than one. With
    the damage to a compressed stream that ended it, if any: the lines counted before it
    stand, and the damage is the caller's to raise after them (a read after a failed one may
    meet a clean end, or other words: review, session 21)."""
    lines, size = 1, len(first)
    peek = getattr(stream, "peek", None)
    while peek is not None and size < BLANK_RUN_BYTES:
        try:
            ahead = peek(PIECE)
        except DAMAGED as damage:
            return Blanks(lines, size), damage
        blank = len(ahead) - len(ahead.lstrip(BLANK))
        whole = ahead.rfind(b"\n", 0, blank) + 1  # a blank line's end: it ends the run's bytes
        if not whole:
            break
        lines += ahead.count(b"\n", 0, whole)
        size += whole
        stream.read(whole)
        if whole < len(ahead):
            break
    return Blanks(lines, size), None


def too_long(limit: int) -> str:
    """The reason a line over `limit` bytes is rejected unread."""
    return f"a line of over {limit} bytes, longer than any record's (not read)"


def gathered_line(stream: IO[bytes], start: bytes, limit: int) -> bytes | tuple[int, int]:
    """The whole of a line that begins `start`, read a piece at a time: the line, or once it
    passes `limit`, (its length without its line end, the bytes read), the rest read past
    unheld. (One read of `limit` bytes held twice that while it ran.)"""
    pieces, read, tail = [start], len(start), start[-2:]
    held = read <= limit
    piece = start
    while not piece.endswith(b"\n"):
        piece = stream.readline(PIECE)
        if not piece:
            break
        read += len(piece)
        tail = (tail + piece)[-2:]
        if held and read > limit:
            held, pieces = False, []  # no record: the rest is only counted
        elif held:
            pieces.append(piece)
    if held:
        return b"".join(pieces)
    end = 2 if tail == b"\r\n" else 1 if tail.endswith(b"\n") else 0
    return read - end, read


def readable_lines(stream: IO[bytes]) -> Iterator[bytes | tuple[int, int]]:
    """The stream's lines (`bounded_lines`) up to any damage to its compression (the loader
    reports the damage itself, as a reject at its line)."""
    try:
        yield from bounded_lines(stream, max_line_bytes())
    except DAMAGED:
        return


_BOM = b"\xef\xbb\xbf"


def without_bom(first_line: bytes) -> bytes:
    """A file's first line without the UTF-8 byte order mark some Windows tools write: it is
    no part of the first record."""
    return first_line[3:] if first_line.startswith(_BOM) else first_line


def expand(paths: list[Path], skipped: list[Path] | None = None) -> Iterator[Path]:
    """Files named, and the input files inside folders named, skipping our own reject files
    (and their temporary copies), and hidden files (a transfer under way), files that hold
    neither form and those that are not regular files: those go to `skipped`, so the run
    can say so. An input file that cannot be read stops the run, named."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if not p.is_dir()):
                if _our_reject_file(child.name):
                    continue
                # hidden, or not a regular file (a pipe, a device, a link to nothing): named,
                # not read (`x.rejects.fixed.jsonl` and `.x.jsonl` went unsaid; audit 28a)
                if child.name.startswith(".") or not child.is_file():
                    if skipped is not None:
                        skipped.append(child)
                    continue
                try:
                    detect(child)
                except (CannotRead, NotUtf8Lines):
                    raise
                except UnreadableInput:
                    if skipped is not None:
                        skipped.append(child)
                    continue
                yield child
        else:
            yield regular_file(path)


# How the loaders name reject files (ingest.rejects, which reads them here: it imports this
# module): the input's name plus REJECTS_SUFFIX, and a run's fresh copy `.NAME` + FRESH_SUFFIX
REJECTS_SUFFIX = ".rejects.jsonl"
FRESH_SUFFIX = ".partial"


def _our_reject_file(name: str) -> bool:
    """A reject file as the loaders name them, or the fresh copy a run writes beside one."""
    return name.endswith(REJECTS_SUFFIX) or (
        name.startswith(".") and REJECTS_SUFFIX + FRESH_SUFFIX in name
    )


def regular_file(path: Path) -> Path:
    """`path`, if it is a file (or a link to one). A pipe or a device is refused before it is
    read: an input is read twice (to tell its form, then to load it), so a pipe's records went
    to the first read and the second waited for ever; /dev/zero is one endless line."""
    if path.is_file():
        return path
    if path.exists():
        raise UnreadableInput(f"{path}: not a regular file (a pipe or a device cannot be loaded)")
    raise UnreadableInput(f"{path}: no such file or folder")


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The stream's records' lines and their numbers (not the blank, nor the too long)."""
    number = 1
    for line in readable_lines(stream):
        if isinstance(line, Blanks):
            number += line.lines
            continue
        if isinstance(line, bytes) and line.strip(BLANK):
            yield number, line
        number += 1
