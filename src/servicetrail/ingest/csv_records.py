"""A registry file's lines read into CSV records, as hostile files come: a record with a
line over the csv module's field limit, bytes that are not UTF-8, a quote left open or a
carriage return inside a line is one reject with its line and its bytes as they came, and the
records around it are read (issue 10, audits 20c and 35c)."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from typing import IO

from .sources import BLANK, PIECE, Span, gathered_line, too_long

# One record of a registry file: the line it starts on, its bytes as they came (several lines
# when a quoted field holds a line break; a Span when too long to hold), and its fields, or
# None and why it has none. A plain tuple: a registry load makes millions of them.
CsvRecord = tuple[int, bytes | Span, list[str] | None, str]

# The csv module's default limit on a field: a longer line goes to it, so that it is refused
# there as before
_FIELD_LIMIT = csv.field_size_limit()
# A registry record is well under a kilobyte: a line over this is refused unread, and copied
# into its reject entry from the file (a 50 MB line took 317 MB; audit, session 17)
MOST_LINE_BYTES = PIECE


class LongLine(Exception):
    """A line over MOST_LINE_BYTES met inside a record the csv module is reading: where it
    lies, and (its length without its end, the bytes read) to hand it back as it was read."""

    def __init__(self, span: Span, line: tuple[int, int]) -> None:
        self.span = span
        self.line = line


# A quoted field may hold a line break, but no registry record runs on for this many lines:
# a quote left open swallowed every line after it into one reject (audit 20c)
MOST_RECORD_LINES = 16


class RunsOn(Exception):
    """A record the csv module is reading has reached MOST_RECORD_LINES."""


class Lines:
    """The file's lines as text for the csv module, keeping the bytes and the count of the
    lines it has handed out, so that every record can be rejected as it came, with its line.

    Bytes that are not UTF-8 are carried through as surrogates (a record holding any is
    refused), so one bad line never stops the file being read. A line too long for any
    record is handed out as the Span it lies in, never held."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.count = 0
        self.offset = stream.tell()  # where the next line starts (after a byte order mark)
        self.taken: list[bytes] = []
        # lines handed back, the next one last (a long one as its length and bytes read)
        self.pushed: list[bytes | tuple[int, int]] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if len(self.taken) >= MOST_RECORD_LINES:
            raise RunsOn
        raw = self.next_raw()
        if isinstance(raw, tuple):
            _, at, length = raw
            assert length is not None
            raise LongLine(raw, (length, self.offset - at))
        self.taken.append(raw)
        return raw.decode("utf-8", "surrogateescape")

    def next_raw(self) -> bytes | Span:
        """The next line as bytes (counted, not kept): the one handed back, else the file's."""
        raw: bytes | Span
        line: bytes | tuple[int, int]
        if self.pushed:
            line = self.pushed.pop()
        else:
            line = piece = self._stream.readline(PIECE)
            if not piece:
                raise StopIteration  # as the csv module expects at the end
            if len(piece) == PIECE and not piece.endswith(b"\n"):  # one piece: a long line
                line = gathered_line(self._stream, piece, MOST_LINE_BYTES + 2)  # and its end
                if isinstance(line, bytes) and len(body := _without_end(line)) > MOST_LINE_BYTES:
                    line = (len(body), len(line))  # over the limit by its content alone
        if isinstance(line, tuple):
            length, read = line
            raw = ("span", self.offset, length)
            self.offset += read
        else:
            raw = line
            self.offset += len(line)
        self.count += 1
        return raw

    def hand_back(self, raws: Sequence[bytes | tuple[int, int]]) -> None:
        """Lines taken with next_raw, in the file's order, to be read again."""
        self.pushed += reversed(raws)
        self.count -= len(raws)
        self.offset -= sum(raw[1] if isinstance(raw, tuple) else len(raw) for raw in raws)

    def take(self) -> bytes:
        taken = self.take_lines()
        return taken[0] if len(taken) == 1 else b"".join(taken)

    def take_lines(self) -> list[bytes]:
        """The lines handed to the csv module since the last take."""
        taken, self.taken = self.taken, []
        return taken


def _without_end(line: bytes) -> bytes:
    return line.removesuffix(b"\n").removesuffix(b"\r")


def has_surrogates(values: list[str]) -> bool:
    joined = "".join(values)  # one C call answers for the common all-ASCII record
    return not joined.isascii() and any("\udc80" <= ch <= "\udcff" for ch in joined)


def records_of(reader: Iterator[list[str]], lines: Lines) -> Iterator[CsvRecord]:
    """The records, as the csv module reads them. A line the csv module would split on its
    commas alone (no quote, no carriage return or NUL inside, within its field limit: nearly
    every line of a registry) is split here instead, at a fraction of the cost; any other
    goes to the csv module, which reads on into the next lines if a quoted field holds a
    line break."""
    next_raw = lines.next_raw
    while True:
        try:
            raw = next_raw()
        except StopIteration:
            return
        if isinstance(raw, tuple):
            yield lines.count, raw, None, _TOO_LONG
            continue
        body = raw[:-1] if raw[-1:] == b"\n" else raw
        if body[-1:] == b"\r":
            body = body[:-1]
        if (
            b'"' not in body
            and b"\r" not in body
            and b"\x00" not in body
            and len(body) < _FIELD_LIMIT
        ):
            if not body.strip(BLANK):
                continue  # a blank line: nothing to load or reject
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                yield lines.count, raw, None, "not UTF-8 text"
                continue
            yield lines.count, raw, text.split(","), ""
            continue
        lines.hand_back([raw])
        yield from _csv_record(reader, lines)


def _csv_record(reader: Iterator[list[str]], lines: Lines) -> Iterator[CsvRecord]:
    """The next record, read by the csv module (nothing at the end of the file)."""
    start = lines.count + 1
    try:
        values = next(reader)
    except StopIteration:
        return
    except (csv.Error, RunsOn) as e:  # e.g. a field over the csv module's 131,072 characters
        taken = lines.take_lines()
        if len(taken) == 1:
            yield start, taken[0], None, _unreadable(e)
            return
        # over several lines: a quote opened on the first that does not close as CSV needs.
        # That line alone is refused; the others are records of their own, most likely
        lines.hand_back(taken[1:])
        why = f"not within {MOST_RECORD_LINES} lines" if isinstance(e, RunsOn) else e
        yield start, taken[0], None, _unclosed(why)
        return
    except LongLine as e:
        taken = lines.take_lines()
        if taken:  # inside a quoted field opened on the first line: refused alone, as above
            lines.hand_back([*taken[1:], e.line])
            yield (
                start,
                taken[0],
                None,
                _unclosed(f"it runs into a line of over {MOST_LINE_BYTES} bytes"),
            )
            return
        yield start, e.span, None, _TOO_LONG
        return
    raw = lines.take()
    if not raw.strip(BLANK):
        return  # a blank line: nothing to load or reject
    if has_surrogates(values):
        yield start, raw, None, "not UTF-8 text"
        return
    yield start, raw, values, ""


_TOO_LONG = too_long(MOST_LINE_BYTES)


def _unreadable(error: csv.Error | RunsOn) -> str:
    return f"not a CSV record: {csv_complaint(error)}"


def csv_complaint(error: csv.Error | RunsOn) -> str:
    """The csv module's complaint, in a loader's words where it speaks of Python: a file
    whose lines end in CR alone was refused with a hint about open() (audit 35c)."""
    if "new-line character seen in unquoted field" in str(error):
        return "a carriage return inside the line (lines end in LF or CRLF)"
    return str(error)


def _unclosed(why: object) -> str:
    return (
        f"not a CSV record: a quote opened on this line is not closed as CSV needs ({why}); "
        "the lines after it were read as records of their own"
    )
