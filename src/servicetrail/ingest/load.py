"""Running a load: read, validate, append in batches, reject with reasons, summarise.

Every batch is its own transaction: a loader killed at any point leaves whole batches,
and the same command run again skips them (natural keys) and loads the rest.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import islice
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import IntegrityError, OperationalError

from ..domain.ids import InvalidValue
from .. import settings
from ..domain.times import parse_time
from ..store.registry import (
    Conflict,
    Outcome,
    Overlap,
    interval_key,
    load_devices,
    load_interval_rows,
    load_users,
)
from ..signing import signer_for
from ..store.limits import DEADLOCK_DETECTED
from ..store.merkle_log import seal_store
from ..store.parties import party_ids
from ..store.watches import catch_up
from ..store.writer import Row, append_leaves, append_rows, record_row, row_maker
from . import duis, registry_csv, satjsonl
from .conflicts import Conflicts
from .rejects import RejectFile, RejectsUnwritable, default_rejects_path
from .waiting_lines import CannotWait, WaitingLines
from .sources import (
    DAMAGED,
    CannotRead,
    Format,
    Span,
    damaged_document_reason,
    detect,
    expand,
    open_binary,
    read_at_most,
    regular_file,
)
from .workers import Chunk, Lines, Parser, parsed_chunks, produced

CHUNK_LINES = (
    4000  # lines a parsing worker sends at a time: fewer, larger statements cost the server less
)
Progress = Callable[[int], None]  # called with bytes read since the last call


@runtime_checkable
class StagedProgress(Protocol):
    """A progress display that also shows a registry load's passes besides reading the file:
    the look-ahead before it and the judging of the lines that waited after it, which left
    a bar at 0% or at 100% for as long as they took. After `stage`, calls count in the
    stage's `unit` ("bytes" or "lines"); a pass of unknown length has total None and unit
    "" and is not counted."""

    def __call__(self, done: int) -> None: ...

    def stage(self, description: str, total: int | None, unit: str) -> None: ...


def _stage(progress: Progress | None, description: str, total: int | None, unit: str) -> None:
    if isinstance(progress, StagedProgress):
        progress.stage(description, total, unit)


@dataclass
class Summary:
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    corrected: int = 0
    superseded: int = 0  # registry rows skipped (among the duplicates) for a later line's word
    # registry lines that were waiting for the file's end, not yet judged, when the load stopped
    waiting: int = 0
    times_from_mtime: int = 0  # bare request files timed by their modification time
    skipped_files: list[Path] = field(default_factory=list)  # in folders, of neither form
    reject_files: list[Path] = field(default_factory=list)

    def line(self) -> str:
        said = (
            f"loaded {self.loaded}, rejected {self.rejected}, skipped {self.duplicates} duplicates"
        )
        if self.times_from_mtime:
            said += f"; {self.times_from_mtime} times taken from file modification times"
        return said


# ------------------------------------------------------------------ registry CSV files


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
    rejects = RejectFile(
        rejects_path or default_rejects_path(path),
        sources=[path],
        inputs=[path],
        named=rejects_path is not None,
    )
    try:
        with open(path, "rb") as raw_file:
            header, records = registry_csv.read_header(raw_file, what, str(path))
            store: RegistryWriter
            words: _LastWords | None = None
            if what is registry_csv.RESPONSIBILITIES:
                _stage(progress, "reading ahead", None, "")
                with open(path, "rb") as ahead:  # each interval's last word in the file
                    last_lines = registry_csv.repeated_intervals(
                        ahead, str(path), party_ids(engine)
                    )
                store = words = _LastWords(last_lines)
                # the bytes after the header, which are the ones counted
                after_header = os.fstat(raw_file.fileno()).st_size - raw_file.tell()
                _stage(progress, "loading", after_header, "bytes")
            else:
                store = _PartyNames() if what is registry_csv.USERS else _REGISTRY_WRITERS[what]
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
                words.reject_the_lost(path, rejects, summary)
    except BaseException as e:
        summary.waiting = later.count - later.judged
        with suppress(RejectsUnwritable):  # what was rejected before the stop stays written
            _finish(summary, rejects)  # and counted: a stop said "rejected 0" (audit 28a)
        if isinstance(e, OSError) and e.filename is None and not isinstance(e, _NOT_READING):
            # an error reading the file (EIO) names no file of its own
            raise CannotRead(f"{path}: cannot be read ({e.strerror or e})") from None
        raise
    finally:
        later.close()
    return _finish(summary, rejects)


# errors with no file's name that are no error reading the input
_NOT_READING = (BrokenPipeError, CannotWait)


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
    _stage(progress, "judging lines that waited", waiting, "lines")
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
    """The writer of intervals, told which rows a later line of the file gives again (each
    interval's last line in the file, `last_lines`, is its word). It also keeps which lines
    were skipped so, and which of those later lines were refused (an overlap, which no look
    ahead can tell): the lines skipped for one are not loaded, and go to the reject file
    saying so, where they were counted as skipped duplicates in silence (review 28e). Line
    numbers only: the lines are read again from the file, in the rare run that has any."""

    last_lines: dict[registry_csv.IntervalKey, int]
    skipped: dict[registry_csv.IntervalKey, list[int]] = field(default_factory=dict)
    refused: set[registry_csv.IntervalKey] = field(default_factory=set)

    def __call__(
        self, conn: Connection, rows: list[Any], origins: list[tuple[int, bytes]], deferring: bool
    ) -> list[Any]:
        if not self.last_lines:  # a file that gives each interval once: no key to make
            superseded = [False] * len(rows)
        else:
            superseded = [
                self.last_lines.get(interval_key(row), 0) > line
                for row, (line, _) in zip(rows, origins)
            ]
        return load_interval_rows(conn, rows, superseded, redate_now=not deferring)

    def superseded(self, row: Any, line: int) -> None:
        key = interval_key(row)
        if self.last_lines.get(key, 0) > line:  # (not a re-date a later line takes back)
            self.skipped.setdefault(key, []).append(line)

    def conflict(self, row: Any, line: int) -> None:
        key = interval_key(row)
        if self.last_lines.get(key) == line:
            self.refused.add(key)

    def reject_the_lost(self, path: Path, rejects: RejectFile, summary: Summary) -> None:
        lost = {
            line: self.last_lines[key] for key in self.refused for line in self.skipped.get(key, ())
        }
        if not lost:
            return
        with open(path, "rb") as again:
            _, records = registry_csv.read_header(again, registry_csv.RESPONSIBILITIES, str(path))
            for line, raw, _, _ in records:
                if line in lost:
                    rejects.add(
                        line,
                        f"not loaded: line {lost[line]} gives its interval again, and was refused",
                        raw,
                        path,
                    )
        summary.duplicates -= len(lost)
        summary.superseded -= len(lost)


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
    records: Iterator[registry_csv.CsvRecord], size: int
) -> Iterator[list[registry_csv.CsvRecord]]:
    while chunk := list(islice(records, size)):
        yield chunk


# A batch of a registry file, validated: the parsed rows, each one's (line, raw record), the
# records refused as (line, reason, raw record), and the bytes read
ParsedBatch = tuple[list[Any], list[tuple[int, bytes]], list[tuple[int, str, bytes | Span]], int]


def _parsed_batches(
    records: Iterator[registry_csv.CsvRecord],
    parse: registry_csv.RowParser,
    header: list[str],
) -> Iterator[ParsedBatch]:
    """A record with more values than the header has columns is refused, as no column would
    say what the rest are (one with fewer lacks its optional last columns), and so is one
    with a value under a column the header leaves unnamed (a trailing comma, as Excel
    writes, names none): read as absent, a `valid_to` there opened the interval (review
    28d)."""
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
            if len(values) > columns:
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
                refused.append((line, str(e) or "empty row", raw))
                continue
            origins.append((line, raw))
        read = sum(_size(record[1]) for record in chunk)
        del chunk
        yield parsed, origins, refused, read
        del parsed, origins, refused
        if not gc.isenabled():
            gc.collect()  # in a worker process, which has no loop of its own to do it


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
    the registry's lock, which holds every loader back (store.watches): with no server
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
    with engine.begin() as conn:
        decided = store(conn, parsed, origins, later is not None) if parsed else []
        if later is not None:  # kept before the commit: a stop after it loses none of them
            for row, origin, outcome in zip(parsed, origins, decided):
                if isinstance(outcome, Overlap):
                    later.add(row, origin)
    if waited is not None:  # as soon as they are committed, for a stop's summary
        waited.judged += len(parsed)
    for row, (line, raw), outcome in zip(parsed, origins, decided):
        if outcome is Outcome.LOADED:
            summary.loaded += 1
        elif outcome is Outcome.DUPLICATE:
            summary.duplicates += 1
        elif outcome is Outcome.SUPERSEDED:
            summary.duplicates += 1
            summary.superseded += 1
            if words is not None:
                words.superseded(row, line)
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


def _finish(summary: Summary, rejects: RejectFile) -> Summary:
    rejects.close()
    summary.rejected += rejects.count
    if rejects.count and rejects.path not in summary.reject_files:
        summary.reject_files.append(rejects.path)
    return summary


# ------------------------------------------------------------------ SAT records


def ingest(
    engine: Engine,
    paths: list[Path],
    rejects_path: Path | None = None,
    logged_at: datetime | None = None,
    progress: Progress | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Ingest files or folders of SAT JSONL, DUIS JSONL captures or DUIS XML files.

    Each input named (a file, or a folder with all it holds) has its reject file beside
    it, named after it (`--rejects` gives one for all); see ingest.rejects for how inputs
    that share one keep each other's entries. `summary` counts as batches commit (see
    load_registry)."""
    # a key that cannot sign fails the run here, before anything is stored unsealed
    signer_for(engine.url.render_as_string(hide_password=False))
    summary = summary or Summary()
    named = [(path, list(expand([path], summary.skipped_files))) for path in paths]
    # a file named twice (by two names, or in a folder named too) is read once, by its first
    first_names: dict[Path, Path] = {}
    for _, found in named:
        for f in found:
            first_names.setdefault(f.resolve(), f)
    files = list(first_names.values())
    make_row = row_maker(engine.dialect.name)
    forms = {f: detect(f) for f in files}  # each file's form once: telling it reads the file
    xml_files = [f for f in files if forms[f] is Format.DUIS_XML]
    rejects = _Rejects(named, rejects_path)
    try:
        for path in files:
            if forms[path] is Format.DUIS_XML:  # not `in xml_files`: a list, read per file
                continue
            sat = forms[path] is Format.SAT_JSONL
            parse = _sat_chunk(make_row) if sat else _duis_chunk(make_row)
            chunks = parsed_chunks(path, parse, _workers_for(path, sat), CHUNK_LINES)
            _append_all(engine, chunks, rejects, path, summary, progress)
        if xml_files:  # many small documents share each batch, whatever their reject files
            _append_all(
                engine,
                _xml_files(xml_files, make_row, logged_at, summary),
                rejects,
                None,
                summary,
                progress,
            )
        seal_store(engine)  # SPEC section 7: the logs this run touched are signed before it reports
    finally:
        rejects.finish(summary)
    return summary


class _Rejects:
    """The reject files of one run: each file's rejects to the reject file of the input that
    named it."""

    def __init__(self, named: list[tuple[Path, list[Path]]], rejects_path: Path | None) -> None:
        owners: dict[Path, list[Path]] = {}
        folders: dict[Path, list[Path]] = {}
        for path, found in named:
            target = rejects_path or default_rejects_path(path)
            # its folder resolved, not the file: a link is refused, not followed (RejectFile)
            target = target.parent.resolve() / target.name
            owners.setdefault(target, []).extend(found)
            if path.is_dir():
                folders.setdefault(target, []).append(path)
        files = [f for _, found in named for f in found]
        # each held for the run (RejectFile), taken in one order by every run: two runs
        # taking two shared files in opposite orders would wait for each other for ever
        self.files: dict[Path, RejectFile] = {}
        try:
            for target, sources in sorted(owners.items()):
                self.files[target] = RejectFile(
                    target,
                    sources=sources,
                    inputs=files,
                    named=rejects_path is not None,
                    folders=folders.get(target, []),
                )
        except BaseException:
            for taken in self.files.values():
                taken.close()
            raise
        self.target_of = {
            str(path): target for target, sources in owners.items() for path in sources
        }

    def add(
        self,
        source: Path | str,
        line: int,
        reason: str,
        raw: str | bytes | Span,
        whole: bool = False,
    ) -> None:
        self.files[self.target_of[str(source)]].add(line, reason, raw, source, whole)

    def finish(self, summary: Summary) -> None:
        for rejects in self.files.values():
            _finish(summary, rejects)


def _workers_for(path: Path, sat: bool) -> int:
    """Parsing workers for this file: none for a small one (a fork costs more than it saves)."""
    if path.stat().st_size < settings.current().worker_min_bytes:
        return 0
    configured = settings.current().parse_workers
    if configured is not None:
        return configured
    # SAT JSONL validates at about the speed the store writes: one worker balances the two cores.
    # DUIS XML parses several times slower than it is written: every core parses.
    return 1 if sat else max(1, os.cpu_count() or 1)


def _sat_chunk(make_row: Callable[..., Row]) -> Parser:
    def parse(lines: Lines) -> Chunk:
        rows, rejected, size = [], [], 0
        for number, raw in lines:
            size += len(raw)
            try:
                rows.append(make_row(*satjsonl.parse_values(raw), origin=number))
            except InvalidValue as e:
                rejected.append((number, str(e), raw))
        return rows, rejected, size

    return parse


def _duis_chunk(make_row: Callable[..., Row]) -> Parser:
    def parse(lines: Lines) -> Chunk:
        rows, rejected, size = [], [], 0
        for number, raw in lines:
            size += len(raw)
            try:
                entry = satjsonl.json_object(raw)
                if not isinstance(entry, dict) or not isinstance(entry.get("duis"), str):
                    raise InvalidValue(
                        'a capture line is {"logged_at": ISO-8601, "duis": "<xml ...>"}'
                    )
                # absent, null or "": none given (a response has its own); 0 or false was
                # read as none too, where 123 was refused (audit 29c)
                given = entry.get("logged_at")
                when = None if given is None or given == "" else parse_time(given)
                rows.append(
                    record_row(make_row, duis.parse_text(entry["duis"], when), origin=number)
                )
            except orjson.JSONDecodeError as e:
                rejected.append((number, satjsonl.not_json(e, raw), raw))
            except InvalidValue as e:
                rejected.append((number, str(e), raw))
        return rows, rejected, size

    return parse


def _xml_files(
    files: list[Path], make_row: Callable[..., Row], logged_at: datetime | None, summary: Summary
) -> Iterator[Chunk]:
    """Bare DUIS documents, one a file. A request in one carries no time of its own: it is
    timed by --logged-at or the file's modification time, and identified by its content and
    file name (store.writer.identity_key), so touching the file and ingesting it again adds
    nothing."""
    rows: list[Row] = []
    rejected: list[tuple[Any, ...]] = []
    size = held = 0
    # a chunk also ends at a quarter of a batch's bytes: 4,000 documents of up to 16 MiB each
    # were held before any was written (60 large documents, gzipped to 1 MB, took 1 GB; audit,
    # session 17). A quarter: the batch holds its rows until its commit as well (40 documents
    # of 14 MB each peaked at 396 MB with chunks of a whole batch, 297 MB with quarters)
    most_bytes = settings.current().batch_bytes // 4
    for path in files:
        size += path.stat().st_size
        try:
            with open_binary(path) as f:
                document = read_at_most(f, settings.current().max_duis_bytes + 1)
        except DAMAGED as e:
            rejected.append((1, damaged_document_reason(e), b"", str(path)))
            continue
        when = logged_at or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        try:
            record = duis.parse_document(document, when)
            rows.append(
                record_row(make_row, record, bare_file=record.kind == "request", origin=str(path))
            )
            if logged_at is None and record.kind == "request":
                summary.times_from_mtime += 1
        except InvalidValue as e:
            rejected.append((1, str(e), _whole(document), str(path)))
        held += len(document)
        # one statement for many small files
        if len(rows) + len(rejected) >= CHUNK_LINES or held >= most_bytes:
            yield rows, rejected, size
            rows, rejected, size, held = [], [], 0, 0
    if rows or rejected:
        yield rows, rejected, size


def _whole(document: bytes) -> bytes | Span:
    """A rejected document as it came: the parser was handed at most the size limit and a
    byte, so an over-size one is copied from its file into the reject entry, not held (a
    150 MB document took 675 MB; audit, session 17)."""
    if len(document) <= settings.current().max_duis_bytes:
        return document
    return ("span", 0, None)


def _append_all(
    engine: Engine,
    chunks: Iterator[Chunk],
    rejects: _Rejects,
    source: Path | None,
    summary: Summary,
    progress: Progress | None,
) -> None:
    """Every `batch` rows (settings) one transaction, written chunk by chunk as the parser delivers
    them, so that the parser works on the next chunk while this process writes. `source`: the
    file the chunks' lines come from (None: each reject names its own file)."""
    consumed = 0
    conflicts = Conflicts()
    # a batch of very large payloads commits early, so that memory stays bounded for any input
    most_rows, most_bytes = settings.current().batch, settings.current().batch_bytes
    with engine.connect() as conn:
        batch = _Batch(conn)

        def commit() -> None:
            nonlocal consumed
            conflicts.add(batch.commit(summary))
            if progress and consumed:
                progress(consumed)
                consumed = 0

        try:
            for rows, rejected, size in chunks:
                for number, reason, raw, *named in rejected:
                    origin = named[0] if named else source
                    assert origin is not None  # chunks read from no one file name their own
                    rejects.add(origin, number, reason, raw, whole=bool(named))
                consumed += size
                while rows:
                    room = most_rows - len(batch.rows)
                    part, rows = (rows, []) if len(rows) <= room else (rows[:room], rows[room:])
                    batch.add(part)
                    if len(batch.rows) >= most_rows or batch.payload_bytes >= most_bytes:
                        commit()
                if batch.open_for() >= BATCH_SECONDS:
                    commit()
            commit()
        except BaseException:
            conflicts.close()
            raise
        finally:
            batch.abandon()
    conflicts.reject(rejects.add, source)


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE (DEADLOCK_DETECTED: store.limits)
# A batch open this long commits before the next chunk is read: its transaction holds SQLite's
# write lock, which every other writer waits for (the server's access log among them), and
# the input may be slow to give rows (a gigabyte of blank lines, audit 20c).
BATCH_SECONDS = 1.0


class _Batch:
    """One batch's transaction. Its rows are kept until the commit only so that a lost race
    (another loader took the same keys or ids, or held the write lock) can replay it whole."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.rows: list[Row] = []
        self.payload_bytes = 0
        self.loaded = self.duplicates = 0
        self.conflicts: list[tuple[int | str, str]] = []
        self.leaves: list[Any] = []  # appended at the commit, which the logs' lock waits for
        self.transaction: RootTransaction | None = None
        self.began = 0.0  # monotonic, when the transaction began

    def open_for(self) -> float:
        """Seconds since the batch's transaction began (0 while it has none)."""
        return time.monotonic() - self.began if self.transaction is not None else 0.0

    def add(self, part: list[Row]) -> None:
        self.rows += part
        self.payload_bytes += sum(len(row[7]) for row in part)
        self._guarded(lambda: self._append(part), committing=False)

    def commit(self, summary: Summary) -> list[tuple[int | str, str]]:
        """Commit the batch; returns its conflicts (origin, reason), for the reject file."""
        if self.transaction is None and not self.rows:
            return []
        self._guarded(self._commit, committing=True)
        summary.loaded += self.loaded
        summary.duplicates += self.duplicates
        conflicts = self.conflicts
        self.rows, self.payload_bytes, self.loaded, self.duplicates, self.conflicts = (
            [],
            0,
            0,
            0,
            [],
        )
        self.leaves = []
        return conflicts

    def abandon(self) -> None:
        if self.transaction is not None:
            try:
                self.transaction.rollback()
            finally:
                self.transaction = None

    def _append(self, part: list[Row]) -> None:
        if self.transaction is None:
            self._begin()
        done = append_rows(self.conn, part, leaves_later=True)
        self.loaded += done.loaded
        self.duplicates += done.duplicates
        self.conflicts += done.conflicts
        self.leaves += done.leaves

    def _begin(self) -> RootTransaction:
        self.transaction, self.began = self.conn.begin(), time.monotonic()
        return self.transaction

    def _commit(self) -> None:
        transaction = self.transaction or self._begin()
        append_leaves(self.conn, self.leaves)
        transaction.commit()
        self.transaction = None

    def _guarded(self, step: Callable[[], None], committing: bool) -> None:
        try:
            step()
            return
        except Exception as e:
            if not self._retryable(e):
                raise
        for attempt in range(2):
            self._reset()
            try:
                self._begin()
                done = append_rows(self.conn, self.rows, leaves_later=True)
                self.loaded, self.duplicates, self.conflicts, self.leaves = (
                    done.loaded,
                    done.duplicates,
                    done.conflicts,
                    done.leaves,
                )
                if committing:
                    self._commit()
                return
            except Exception as e:
                if attempt == 1 or not self._retryable(e):
                    raise

    def _retryable(self, e: Exception) -> bool:
        """Another loader won the race for the same keys or ids, held SQLite's write lock, or
        (PostgreSQL) met this one in a deadlock, which PostgreSQL broke by failing this one;
        or a new month's partitions could not be attached in time (`ensure_months`' lock
        timeout). The replay starts a new transaction. The writer talks to the driver
        directly, so its errors come unwrapped by SQLAlchemy."""
        dbapi = self.conn.dialect.dbapi
        assert dbapi is not None  # a connected dialect has its driver
        if isinstance(e, (IntegrityError, dbapi.IntegrityError)):
            return True
        if isinstance(e, (OperationalError, dbapi.OperationalError)):
            cause = getattr(e, "orig", None) or e
            if getattr(cause, "sqlstate", None) in (DEADLOCK_DETECTED, LOCK_NOT_AVAILABLE):
                return True
            return self.conn.dialect.name == "sqlite" and "database is locked" in str(cause)
        return False

    def _reset(self) -> None:
        try:
            self.abandon()
        except Exception:
            pass  # a transaction whose commit failed may be gone already
        if self.conn.in_transaction():
            self.conn.rollback()
