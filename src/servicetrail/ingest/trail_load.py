"""Ingesting the trail (SAT JSON Lines, DUIS captures, DUIS XML files): read, validate,
append in batches, reject with reasons, seal, summarise.

Every batch is its own transaction: a loader killed at any point leaves whole batches,
and the same command run again skips them (natural keys) and loads the rest.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import IntegrityError, OperationalError

from .. import settings
from ..domain.ids import InvalidValue
from ..domain.times import parse_time
from ..interruption import interruption_in
from ..signing import signer_for
from ..store.engine import StoreError, refuse_if_changed_under_us
from ..store.limits import DEADLOCK_DETECTED
from ..store.log_partitions import retired_logs
from ..store.log_records import FAMILY as RECORD_FAMILY
from ..store.merkle_log import seal_store
from ..store.record_rows import Row, record_row, row_maker
from ..store.writer import append_leaves, append_rows, leaves_committed
from . import duis, satjsonl
from .conflicts import Conflicts
from .rejects import RejectFile, default_rejects_path
from .sources import (
    DAMAGED,
    Format,
    Span,
    damaged_document_reason,
    detect,
    expand,
    open_binary,
    read_at_most,
)
from .summary import Progress, Summary, count_rejects
from .workers import Chunk, Lines, Parser, parsed_chunks

# lines a parsing worker sends at a time: fewer, larger statements cost the server less
CHUNK_LINES = 4000


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
    own = None if rejects_path is None else rejects_path.parent.resolve() / rejects_path.name
    named = [(path, _inputs_in(path, own, summary.skipped_files)) for path in paths]
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
        _gone_to_retention(engine, summary)
    except BaseException as e:
        if interruption_in(e) is not None:
            _seal_what_was_kept(engine, summary)
        elif isinstance(e, StoreError):
            # our own refusal (a month dropped by hand, say), read from a store that answered
            _gone_when_stopped(engine, summary)
        raise
    finally:
        rejects.finish(summary)
    return summary


def _seal_what_was_kept(engine: Engine, summary: Summary) -> None:
    """A run stopped by Ctrl-C or SIGTERM still reports what it kept, so it signs that first
    (SPEC section 7): left to "the next ingest or the server", it stayed in no checkpoint
    while neither came. A stop that came inside a commit's clean-up comes out as another
    error (`interruption_in`); caught as a KeyboardInterrupt alone, that run reported its
    records unsealed (1 run in 12 of test_crash_safety's Ctrl-C tests, sessions 62-63)."""
    try:
        seal_store(engine)
    except Exception as e:
        # said with what was kept; it came out as "interrupted" alone, the key or the
        # store's fault that left those records unsigned nowhere told
        summary.not_sealed = str(e) or type(e).__name__
    else:
        summary.sealed = True
        _gone_when_stopped(engine, summary)  # the store answered the seal just now


def _gone_to_retention(engine: Engine, summary: Summary) -> None:
    """Note in `summary` the months this run loaded into that retention has removed since,
    records and all: a `retention` run while the ingest went on dropped the month of records
    it had already committed, and the summary said them loaded with nothing more (audit 61d;
    the records that came after were refused, naming retention). Only PostgreSQL has
    retention; its drops take the trail's lock, so a month is removed whole between batches."""
    if engine.dialect.name != "postgresql" or not summary.loaded_months:
        return
    with engine.connect() as conn:
        retired = retired_logs(conn, RECORD_FAMILY, min(summary.loaded_months))
    summary.retired = {m: n for m, n in summary.loaded_months.items() if m in retired}


def _gone_when_stopped(engine: Engine, summary: Summary) -> None:
    """`_gone_to_retention` for a run stopped part way, whose summary is still said (cli's
    kept_if_stopped): it said the records loaded and nothing of retention (63d). Not called
    after the store's own failure (a server away held the stop 10 s on a connect for
    nothing); a failed look leaves the summary as it was, the stop's error said after it."""
    with suppress(Exception):
        _gone_to_retention(engine, summary)


def _inputs_in(path: Path, own_rejects: Path | None, skipped: list[Path]) -> list[Path]:
    """The files `path` names, a folder's without the reject file `--rejects` names in it: the
    first run made it there, and the same command run again took it for an input and refused
    to write over it (audit 49c). One that is no reject file is still refused, by RejectFile."""
    found = list(expand([path], skipped))
    if own_rejects is None or not path.is_dir():
        return found
    return [f for f in found if f.parent.resolve() / f.name != own_rejects]


class _Rejects:
    """The reject files of one run: each file's rejects to the reject file of the input that
    named it."""

    def __init__(self, named: list[tuple[Path, list[Path]]], rejects_path: Path | None) -> None:
        owners: dict[Path, list[Path]] = {}
        folders: dict[Path, list[Path]] = {}
        self.shown: dict[Path, Path] = {}  # each file as the user named it, for what is said
        for path, found in named:
            given = rejects_path or default_rejects_path(path)
            # its folder resolved, not the file: a link is refused, not followed (RejectFile)
            target = given.parent.resolve() / given.name
            self.shown.setdefault(target, given)
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
                    shown=self.shown[target],
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
            count_rejects(summary, rejects)


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
    file name (store.record_rows.bare_file_key), so touching the file and ingesting it again adds
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
        when = logged_at or _modified_at(path)
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


def _modified_at(path: Path) -> datetime:
    """The file's modification time cut to the microsecond, as every time read is: read as a
    float (st_mtime), 23:59:59.9999996 was rounded into the next second, month and log."""
    return _EPOCH + timedelta(microseconds=path.stat().st_mtime_ns // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
            batch.commit(summary, conflicts)
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
            # the committed batches' conflicts are judged for good: dropped, a stopped run's
            # reject file and "rejected N" left them out, seen only by running it again. A
            # failure writing them leaves the stop's own error the one said.
            with suppress(Exception):
                conflicts.reject(rejects.add, source)
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

    def commit(self, summary: Summary, conflicts: Conflicts) -> None:
        """Commit the batch, counted in `summary`, its conflicts kept in `conflicts` for the
        reject file."""
        if self.transaction is None and not self.rows:
            return
        try:
            self._guarded(self._commit, committing=True)
        except BaseException as e:
            if interruption_in(e) is not None and self._counted_if_stored(summary):
                conflicts.add(self.conflicts)
            raise
        self._count(summary)
        conflicts.add(self.conflicts)
        self.rows, self.payload_bytes, self.loaded, self.duplicates, self.conflicts = (
            [],
            0,
            0,
            0,
            [],
        )
        self.leaves = []

    def _count(self, summary: Summary) -> None:
        summary.loaded += self.loaded
        summary.loaded_months.update(leaf[1] for leaf in self.leaves)  # a leaf a stored record
        summary.duplicates += self.duplicates

    def _counted_if_stored(self, summary: Summary) -> bool:
        """A stop inside the commit leaves unknown whether the database's COMMIT happened, so
        the store is asked, on a connection of its own (the stop may have broken this one):
        counted as not stored, a committed batch was said "loaded 1000" of 1,500 records kept
        (session 64). A store that cannot answer (gone with the stop) leaves it said as not
        known (cli.load_report), not guessed either way. Whether it was counted."""
        if not self.leaves:  # nothing it held needed storing
            self._count(summary)
            return True
        summary.in_doubt = self.loaded
        self._reset()  # this connection's COMMIT done or undone before another looks
        try:
            with self.conn.engine.connect() as look:
                stored = leaves_committed(look, self.leaves)
        except Exception:
            return False
        summary.in_doubt = 0
        if stored:
            self._count(summary)
        return stored

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
        refuse_if_changed_under_us(self.conn)  # a load outlasting an upgrade stops here
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
        timeout), or were gone (a store restored from an older backup: the writer forgot its
        months, `partitions.forgot_if_unpartitioned`). The replay starts a new transaction.
        The writer talks to the driver directly, so its errors come unwrapped by SQLAlchemy."""
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
