"""Loading a registry CSV file (users, devices, responsibilities): read, validate, store in
batches, reject with reasons, summarise.

Every batch is its own transaction: a loader killed at any point leaves whole batches,
and the same command run again skips them (natural keys) and loads the rest.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Connection, Engine

from .. import settings
from ..domain.ids import InvalidValue
from ..domain.intervals import Conflict, IntervalKey, Outcome, Overlap, interval_key
from ..interruption import interruption_in
from ..store.engine import refuse_if_changed_under_us
from ..store.parties import party_ids
from ..store.registry import load_devices, load_interval_rows, load_users
from ..store.watch_matcher import catch_up
from . import csv_records, registry_csv
from .registry_stored import batch_stored, changes_a_row
from .rejects import RejectFile, RejectsUnwritable, default_rejects_path
from .sources import CannotRead, Span, regular_file
from .summary import Progress, StagedProgress, Summary, count_rejects, stage
from .waiting_lines import CannotWait, WaitingLines
from .workers import produced


def load_registry(
    engine: Engine,
    what: registry_csv.RegistryFile,
    path: Path,
    rejects_path: Path | None,
    progress: Progress | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Every record of a registry CSV loaded or rejected with its line and reason; a header
    that is not one raises BadHeader before anything is written. Records are validated here
    and stored SERVICETRAIL_REGISTRY_BATCH at a time, each batch one transaction
    (store.registry). `summary` counts as batches commit, so that a caller can say what a
    run that stopped part way had kept."""
    summary = summary or Summary()
    regular_file(path)
    later = WaitingLines()
    words: _LastWords | None = None
    rejects = RejectFile(
        rejects_path or default_rejects_path(path),
        sources=[path],
        inputs=[path],
        named=rejects_path is not None,
    )
    try:
        with open(path, "rb") as raw_file:
            header, records = registry_csv.read_header(raw_file, what, str(path))
            store, words = _writer_for(what, engine, path, raw_file, progress)
            parsed_here = _parsed_batches(records, what.parser(header), header)
            # overlapping intervals, tried again once the rest of the file is in: a change of
            # supplier's two lines may fall in two batches, the new supplier's first. Only in
            # a file of several batches (one batch sets them aside and judges them together
            # itself, as the file's end does: store.registry), so a small file's rejects stay
            # in the order of its lines.
            several = settings.current().registry_batch
            with _collected_per_batch() as batch_done:
                worker = what is registry_csv.RESPONSIBILITIES and _registry_worker(path)
                batches = produced(lambda: parsed_here) if worker else parsed_here
                for parsed, origins, refused, read in batches:
                    several -= len(origins) + len(refused)
                    defer = what is registry_csv.RESPONSIBILITIES and several <= 0
                    _store_batch(
                        parsed,
                        origins,
                        refused,
                        engine,
                        store,
                        rejects,
                        path,
                        summary,
                        changes_visibility=what is not registry_csv.DEVICES,
                        later=later if defer else None,
                        words=words,
                    )
                    del parsed, origins, refused  # before the collector runs: it would walk them
                    batch_done()
                    if progress:
                        progress(read)
                if later:
                    _store_waiting(later, engine, store, rejects, path, summary, words, progress)
            if words is not None:
                words.settle(path, rejects, summary)
    except BaseException as e:
        summary.waiting = later.count - later.judged
        if words is not None:
            # judged in the batches kept: left to the file's end, a stopped load said the
            # lines lost with a refused word skipped duplicates, and rejected none of them. A
            # failure here leaves the stop's own error the one said
            with suppress(Exception):
                words.settle(path, rejects, summary)
        with suppress(RejectsUnwritable):  # what was rejected before the stop stays written
            count_rejects(summary, rejects)  # and counted: a stop said "rejected 0" (audit 28a)
        if isinstance(e, OSError) and e.filename is None and not isinstance(e, _NOT_READING):
            # an error reading the file (EIO) names no file of its own
            raise CannotRead(f"{path}: cannot be read ({e.strerror or e})") from None
        raise
    finally:
        later.close()
    return count_rejects(summary, rejects)


# errors with no file's name that are no error reading the input
_NOT_READING = (BrokenPipeError, CannotWait)


def _writer_for(
    what: registry_csv.RegistryFile,
    engine: Engine,
    path: Path,
    raw_file: BinaryIO,
    progress: Progress | None,
) -> tuple[RegistryWriter, _LastWords | None]:
    """What writes the file's batches, and for intervals the look-ahead's word on each (the
    same writer): it reads the whole file once before its first batch, as a line's word may
    be any later line. `raw_file` is the file being loaded, read past its header."""
    if what is not registry_csv.RESPONSIBILITIES:
        return (_PartyNames() if what is registry_csv.USERS else _REGISTRY_WRITERS[what]), None
    stage(progress, "reading ahead", None, "")
    with open(path, "rb") as ahead:  # each interval's last word in the file
        last_lines = registry_csv.repeated_intervals(ahead, str(path), party_ids(engine))
    words = _LastWords(last_lines)
    # the bytes after the header, which are the ones counted
    after_header = os.fstat(raw_file.fileno()).st_size - raw_file.tell()
    stage(progress, "loading", after_header, "bytes")
    return words, words


def _store_waiting(
    later: WaitingLines,
    engine: Engine,
    store: RegistryWriter,
    rejects: RejectFile,
    path: Path,
    summary: Summary,
    words: _LastWords | None,
    progress: Progress | None,
) -> None:
    """The lines that waited for the file's end, judged there in batches of whole groups (a
    Device and relation; a group of more than MOST_IN_A_GROUP lines in parts of that many),
    up to a batch's size unless one group is larger: each group's lines together, as in one
    batch. A staged progress display counts them (a plain callable counts bytes read)."""
    size = settings.current().registry_batch
    waiting = later.count - later.judged
    stage(progress, "judging lines that waited", waiting, "lines")
    advance = progress if isinstance(progress, StagedProgress) else None
    rows: list[Any] = []
    origins: list[tuple[int, bytes]] = []

    def store_them() -> None:
        _store_batch(
            rows,
            origins,
            [],
            engine,
            store,
            rejects,
            path,
            summary,
            changes_visibility=True,
            words=words,
            waited=later,
        )
        if advance:
            advance(len(rows))
        rows.clear()
        origins.clear()

    for group in later.groups():
        if rows and len(rows) + len(group) > size:
            store_them()
        rows.extend(row for row, _ in group)
        origins.extend(origin for _, origin in group)
    if rows:
        store_them()


@dataclass
class _LastWords:
    """The writer of intervals, told by the look-ahead which lines the file's word on an
    interval is not (`last_lines`: registry_csv.LastWord); those are skipped, checked on
    their own. It also keeps which lines were skipped so, and which words were refused (an
    overlap, which no look ahead can tell): the lines skipped for one are not loaded, and go
    to the reject file saying so, where they were counted as skipped duplicates in silence
    (review 28e). Line numbers only: the lines are read again from the file, in the rare run
    that has any."""

    last_lines: dict[IntervalKey, registry_csv.LastWord]
    skipped: dict[IntervalKey, list[int]] = field(default_factory=dict)
    refused: set[IntervalKey] = field(default_factory=set)
    # intervals whose word is the first line giving them: it says what every later one does
    said_first: dict[IntervalKey, int] = field(default_factory=dict)
    # intervals whose word was already stored: the lines skipped for it changed nothing
    stood: set[IntervalKey] = field(default_factory=set)
    settled: bool = False

    def __call__(
        self, conn: Connection, rows: list[Any], origins: list[tuple[int, bytes]], deferring: bool
    ) -> list[Any]:
        if not self.last_lines:  # a file that gives each interval once: no key to make
            superseded = [False] * len(rows)
        else:
            superseded = [
                self._word_line(row, line) not in (None, line)
                for row, (line, _) in zip(rows, origins)
            ]
        return load_interval_rows(conn, rows, superseded, redate_now=not deferring)

    def _word_line(self, row: Any, line: int) -> int | None:
        """The line that is the file's word on the row's interval (None: the look-ahead knows
        no other line giving it). The first line giving it is read here only, in line order."""
        key = interval_key(row)
        word = self.last_lines.get(key)
        if word is None:
            return None
        if line < word.first_known and word.same_throughout and tuple(row) == word.said:
            self.said_first[key] = line
        return self.said_first.get(key, word.line)

    def superseded(self, row: Any, line: int) -> bool:
        """Note a line skipped for the word on its interval; whether that word is a later
        line (not: a copy of an earlier line, which is a plain duplicate of it)."""
        word = self._word_line(row, line)
        if word not in (None, line):  # (not a re-date a later line takes back)
            self.skipped.setdefault(interval_key(row), []).append(line)
        return word is None or word > line

    def duplicate(self, row: Any, line: int) -> None:
        """Note a line found already stored: if it is the word on its interval, the lines
        skipped for it are plain duplicates too (a re-load of the same file said one was
        skipped for a later line "which was taken instead", when nothing was; review 47e)."""
        if self.last_lines and self._word_line(row, line) == line:
            self.stood.add(interval_key(row))

    def conflict(self, row: Any, line: int) -> None:
        if self._word_line(row, line) == line:
            self.refused.add(interval_key(row))

    def settle(self, path: Path, rejects: RejectFile, summary: Summary) -> None:
        """What the batches stored said of the lines skipped, told once: at the file's end,
        or at a stop (which may come while it is told at the end: told again, its lines were
        rejected twice)."""
        if self.settled:
            return
        self.settled = True
        self.reject_the_lost(path, rejects, summary)
        self.count_the_stood(summary)

    def count_the_stood(self, summary: Summary) -> None:
        """The lines skipped for a later line's word that was already stored: counted as
        plain duplicates, not as superseded (the summary's duplicates hold them already)."""
        summary.superseded -= sum(
            1
            for key in self.stood
            for line in self.skipped.get(key, ())
            if self._word_of(key) > line
        )

    def reject_the_lost(self, path: Path, rejects: RejectFile, summary: Summary) -> None:
        lost = {
            line: self._word_of(key) for key in self.refused for line in self.skipped.get(key, ())
        }
        if not lost:
            return
        with open(path, "rb") as again:
            _, records = registry_csv.read_header(again, registry_csv.RESPONSIBILITIES, str(path))
            for line, raw, _, _ in records:
                if line in lost:
                    word = lost[line]
                    said = "gives its interval again" if word > line else "says the same"
                    rejects.add(line, f"not loaded: line {word} {said}, and was refused", raw, path)
                    # as each is rejected: a stop part way counted the rest as duplicates still
                    summary.duplicates -= 1
                    summary.superseded -= word > line

    def _word_of(self, key: IntervalKey) -> int:
        return self.said_first.get(key, self.last_lines[key].line)


def _registry_worker(path: Path) -> bool:
    """Whether a worker process reads and validates the file while this one decides and
    writes (the two halves cost about the same, and the machine has a second core): not for
    a small file, where the fork costs more than it saves, nor with parse workers off. Only
    intervals: the loader spent as long unpickling a worker's Devices as parsing them itself
    (1.44 against 1.28 CPU seconds for 100,000)."""
    config = settings.current()
    return path.stat().st_size >= config.worker_min_bytes and config.parse_workers != 0


@contextmanager
def _collected_per_batch() -> Iterator[Callable[[], int]]:
    """The cyclic garbage collector run once per batch instead of whenever allocations pile
    up: a batch holds tens of thousands of young tuples, and the collector kept walking them
    (and every object the program had made before) for about a third of a registry load's
    CPU time. Objects older than the load are frozen out of its walks; reference counting
    still frees the batch's objects as soon as it is done. A worker forked inside inherits
    this, and collects after each batch it sends."""
    was_enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield gc.collect
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _batches(
    records: Iterator[csv_records.CsvRecord], size: int
) -> Iterator[list[csv_records.CsvRecord]]:
    while chunk := list(islice(records, size)):
        yield chunk


# A batch of a registry file, validated: the parsed rows, each one's (line, raw record), the
# records refused as (line, reason, raw record), and the bytes read
ParsedBatch = tuple[list[Any], list[tuple[int, bytes]], list[tuple[int, str, bytes | Span]], int]


def _parsed_batches(
    records: Iterator[csv_records.CsvRecord],
    parse: registry_csv.RowParser,
    header: list[str],
) -> Iterator[ParsedBatch]:
    """A record with a value past the header's last column is refused, as no column would
    say what it is (one with fewer lacks its optional last columns; empty fields past the
    last, a trailing comma, hold nothing), and so is one with a value under a column the
    header leaves unnamed (a trailing comma, as Excel writes, names none): read as absent,
    a `valid_to` there opened the interval (review 28d)."""
    columns = len(header)
    unnamed = not all(header)  # a column the header leaves unnamed: checked only then
    for chunk in _batches(records, settings.current().registry_batch):
        refused: list[tuple[int, str, bytes | Span]] = []
        parsed: list[Any] = []
        origins: list[tuple[int, bytes]] = []
        for line, raw, values, problem in chunk:
            if values is None:
                refused.append((line, problem, raw))
                continue
            assert isinstance(raw, bytes)  # only a record without values is a Span
            if len(values) > columns and registry_csv.field_past_header(header, values):
                refused.append((line, f"{len(values)} fields; the header names {columns}", raw))
                continue
            if unnamed and (field := registry_csv.field_left_unnamed(header, values)):
                refused.append(
                    (line, f"a value in field {field}, which the header leaves unnamed", raw)
                )
                continue
            try:
                parsed.append(parse(values))
            except InvalidValue as e:
                refused.append((line, _header_again(values, header) or str(e) or "empty row", raw))
                continue
            origins.append((line, raw))
        read = sum(_size(record[1]) for record in chunk)
        del chunk
        yield parsed, origins, refused, read
        del parsed, origins, refused
        if not gc.isenabled():
            gc.collect()  # in a worker process, which has no loop of its own to do it


def _header_again(values: list[str], header: list[str]) -> str | None:
    """The reason for a refused record that is the header again, as when two files are
    joined one after the other: refused for its first value ("user_id is not an EUI-64"), it
    sent the operator looking for a bad Device or User ID. Asked of refused records only."""
    cells = [value.strip().lower() for value in values]
    # a file saved as Excel's "CSV UTF-8" begins with a byte order mark: joined after another,
    # its header was refused as a user_id '\ufeffuser_id' (review 47j)
    cells[:1] = [cell.removeprefix("\ufeff").strip() for cell in cells[:1]]
    if cells != header:
        return None
    return "the header line again (two files joined?): a record is expected here"


def _size(raw: bytes | Span) -> int:
    return len(raw) if isinstance(raw, bytes) else raw[2] or 0


def _store_batch(
    parsed: list[Any],
    origins: list[tuple[int, bytes]],
    refused: list[tuple[int, str, bytes | Span]],
    engine: Engine,
    store: RegistryWriter,
    rejects: RejectFile,
    path: Path,
    summary: Summary,
    changes_visibility: bool,
    later: WaitingLines | None = None,
    words: _LastWords | None = None,
    waited: WaitingLines | None = None,
) -> None:
    """One batch of a registry file decided and written in one transaction, its rejects
    written and counted; with `later`, its overlapping intervals kept there instead, with
    every other line of their Device and relation, to be tried again at the file's end.

    A registry change first matches the trail's new records against the watches, holding
    the registry's lock, which holds every loader back (store.watch_matcher): with no server
    matching, a backlog of 300,000 records made a 1-row correction take 12 s and ingests
    wait as long (stress test, session 18). The backlog is matched before, in steps of
    their own, so the change's own matching has only what came in since."""
    if later:
        ahead = [
            (row, origin) for row, origin in zip(parsed, origins) if not later.holds(row, origin)
        ]
        parsed, origins = [row for row, _ in ahead], [origin for _, origin in ahead]
    if parsed and changes_visibility:
        catch_up(engine)
    written: list[Any] | None = None  # the outcomes, once the batch's transaction commits next
    try:
        with engine.begin() as conn:
            decided = store(conn, parsed, origins, later is not None) if parsed else []
            # the checkout looked, but PostgreSQL looks once a second, and an upgrade may come
            # while the batch is written: as an ingest's batch, none commits on a schema this
            # servicetrail does not know (review 49b)
            refuse_if_changed_under_us(conn)
            if later is not None:  # kept before the commit: a stop after it loses none of them
                for row, origin, outcome in zip(parsed, origins, decided):
                    if isinstance(outcome, Overlap):
                        later.add(row, origin)
            written = decided
    except BaseException as e:
        # a stop inside the commit: counted as the store holds the batch, said not known if
        # it cannot tell (counted as not stored, "loaded 1000" was said of 1,500 kept)
        stored = None
        if written is not None and interruption_in(e) is not None:
            stored = batch_stored(engine, parsed, written)
            if stored is None:
                summary.in_doubt = sum(map(changes_a_row, written))
            elif stored:
                _count(
                    parsed, origins, refused, written, rejects, path, summary, later, words, waited
                )
        if not stored:
            # refused on their own, whatever the store did (an ingest writes its as it reads
            # them): a batch rolled back by a stop left them unsaid
            with suppress(RejectsUnwritable):
                _reject(refused, rejects, path)
        raise
    _count(parsed, origins, refused, decided, rejects, path, summary, later, words, waited)


def _count(
    parsed: list[Any],
    origins: list[tuple[int, bytes]],
    refused: list[tuple[int, str, bytes | Span]],
    decided: list[Any],
    rejects: RejectFile,
    path: Path,
    summary: Summary,
    later: WaitingLines | None,
    words: _LastWords | None,
    waited: WaitingLines | None,
) -> None:
    """A committed batch's lines counted in `summary`, its rejects written."""
    if waited is not None:  # as soon as they are committed, for a stop's summary
        waited.judged += len(parsed)
    for row, (line, raw), outcome in zip(parsed, origins, decided):
        if outcome is Outcome.LOADED:
            summary.loaded += 1
        elif outcome is Outcome.DUPLICATE:
            summary.duplicates += 1
            if words is not None:
                words.duplicate(row, line)
        elif outcome is Outcome.SUPERSEDED:
            summary.duplicates += 1
            # skipped for a later line's word (a copy of an earlier one is a plain duplicate)
            summary.superseded += words.superseded(row, line) if words is not None else 1
        elif isinstance(outcome, Overlap) and later is not None:
            pass  # kept above, tried again at the file's end
        elif isinstance(outcome, Conflict):
            refused.append((line, str(outcome), raw))
            if words is not None:
                words.conflict(row, line)
        elif outcome is Outcome.CORRECTED:
            summary.loaded += 1
            summary.corrected += 1
        else:  # a new outcome must be counted here, not taken for another
            raise AssertionError(f"an outcome no summary counts: {outcome!r}")
    _reject(refused, rejects, path)


def _reject(refused: list[tuple[int, str, bytes | Span]], rejects: RejectFile, path: Path) -> None:
    for line, reason, refused_raw in sorted(refused, key=lambda entry: entry[0]):
        rejects.add(line, reason, refused_raw, path)


# a batch's parsed rows, their (line, raw record), and whether rows may wait for the file's
# end -> each row's outcome
RegistryWriter = Callable[[Connection, list[Any], list[tuple[int, bytes]], bool], list[Any]]
_REGISTRY_WRITERS: dict[registry_csv.RegistryFile, RegistryWriter] = {
    registry_csv.DEVICES: lambda conn, rows, _, __: load_devices(conn, rows),
}


@dataclass
class _PartyNames:
    """The writer of a users file: each Party's name as the file's first stored line gave
    it, kept across batches (store.registry.load_users refuses a line naming it otherwise)."""

    named: dict[str, tuple[str, int]] = field(default_factory=dict)  # Party -> (name, line)

    def __call__(
        self, conn: Connection, rows: list[Any], origins: list[tuple[int, bytes]], deferring: bool
    ) -> list[Any]:
        return load_users(conn, rows, self.named, [line for line, _ in origins])
