"""Running a load: read, validate, append in batches, reject with reasons, summarise.

Every batch is its own transaction: a loader killed at any point leaves whole batches,
and the same command run again skips them (natural keys) and loads the rest.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from datetime import datetime, timezone
from pathlib import Path

import orjson
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from ..domain.ids import InvalidValue
from ..domain.model import SatRecord
from ..domain.times import parse_time
from ..store.writer import Conflict, Outcome, append_records, load_device, load_responsibility, load_user
from . import duis, registry_csv, satjsonl
from .rejects import RejectFile, default_rejects_path
from .sources import Format, detect, expand, numbered_lines, open_binary

BATCH = int(os.environ.get("SERVICETRAIL_BATCH", "5000"))
REGISTRY_BATCH = 1000
Progress = Callable[[int], None]  # called with bytes read since the last call


@dataclass
class Summary:
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    corrected: int = 0
    reject_files: list[Path] = field(default_factory=list)

    def line(self) -> str:
        return f"loaded {self.loaded}, rejected {self.rejected}, skipped {self.duplicates} duplicates"


class BadHeader(ValueError):
    """A registry file whose header lacks the columns SPEC section 4 gives it."""


# ------------------------------------------------------------------ registry CSV files

def load_registry(engine: Engine, what: registry_csv.RegistryFile, path: Path, rejects_path: Path | None,
                  progress: Progress | None = None) -> Summary:
    rejects = RejectFile(rejects_path or default_rejects_path(path))
    summary = Summary()
    store = {registry_csv.USERS: lambda c, v: load_user(c, *v), registry_csv.DEVICES: load_device,
             registry_csv.RESPONSIBILITIES: load_responsibility}[what]
    with open(path, "rb") as raw_file:
        lines = numbered_lines(raw_file)
        header_line = next(lines, None)
        header = next(csv.reader([header_line[1].decode("utf-8-sig")])) if header_line else []
        header = [h.strip().lower() for h in header]
        missing = [c for c in what.columns if c not in header and c not in ("party_name", "valid_to")]
        if missing:
            rejects.close()
            raise BadHeader(f"{path}: header must name the columns {','.join(what.columns)}; missing {missing}")
        while chunk := list(islice(lines, REGISTRY_BATCH)):
            with engine.begin() as conn:
                for number, raw in chunk:
                    try:
                        values = next(csv.reader([raw.decode("utf-8")]))
                        outcome = store(conn, what.parse(dict(zip(header, values))))
                    except (InvalidValue, Conflict, UnicodeDecodeError, StopIteration) as e:
                        rejects.add(number, str(e) or "empty row", raw)
                        continue
                    if outcome is Outcome.DUPLICATE:
                        summary.duplicates += 1
                    else:
                        summary.loaded += 1
                        summary.corrected += outcome is Outcome.CORRECTED
            if progress:
                progress(sum(len(raw) for _, raw in chunk))
    return _finish(summary, rejects)


def _finish(summary: Summary, rejects: RejectFile) -> Summary:
    rejects.close()
    summary.rejected += rejects.count
    if rejects.count and rejects.path not in summary.reject_files:
        summary.reject_files.append(rejects.path)
    return summary


# ------------------------------------------------------------------ SAT records

def ingest(engine: Engine, paths: list[Path], rejects_path: Path | None = None,
           logged_at: datetime | None = None, progress: Progress | None = None) -> Summary:
    """Ingest files or folders of SAT JSONL, DUIS JSONL captures or DUIS XML files."""
    files = list(expand(paths))
    summary = Summary()
    xml_files = [f for f in files if detect(f) is Format.DUIS_XML]
    targets = {path: rejects_path or default_rejects_path(path) for path in files if path not in xml_files}
    xml_target = rejects_path or default_rejects_path(
        xml_files[0].parent if len(xml_files) > 1 else xml_files[0]) if xml_files else None
    # Inputs that share a reject file (--rejects, or names like sat.2025-01.jsonl and sat.2025-02.jsonl)
    # append to it, each reject naming its file; none may wipe another's rejects.
    sharing = Counter(t.resolve() for t in [*targets.values(), *([xml_target] if xml_target else [])])
    started: set[Path] = set()

    def rejects_for(target: Path) -> RejectFile:
        rejects = RejectFile(target, append=target.resolve() in started)
        started.add(target.resolve())
        return rejects

    for path, target in targets.items():
        rejects = rejects_for(target)
        source = str(path) if sharing[target.resolve()] > 1 else None
        reader = _sat_lines if detect(path) is Format.SAT_JSONL else _duis_lines
        with open_binary(path) as stream:
            _append_all(engine, reader(numbered_lines(stream), rejects, source), summary, progress)
        _finish(summary, rejects)
    if xml_files:
        rejects = rejects_for(xml_target)
        _append_all(engine, _xml_files(xml_files, rejects, logged_at), summary, progress)
        _finish(summary, rejects)
    return summary


Parsed = tuple[SatRecord, int]  # a record and the bytes it took


def _sat_lines(lines: Iterator[tuple[int, bytes]], rejects: RejectFile, source: str | None
               ) -> Iterator[Parsed]:
    for number, raw in lines:
        try:
            yield satjsonl.parse_line(raw), len(raw)
        except InvalidValue as e:
            rejects.add(number, str(e), raw, source)


def _duis_lines(lines: Iterator[tuple[int, bytes]], rejects: RejectFile, source: str | None
                ) -> Iterator[Parsed]:
    for number, raw in lines:
        try:
            entry = orjson.loads(raw)
            if not isinstance(entry, dict) or not isinstance(entry.get("duis"), str):
                raise InvalidValue('a capture line is {"logged_at": ISO-8601, "duis": "<xml ...>"}')
            when = parse_time(entry["logged_at"]) if entry.get("logged_at") else None
            yield duis.parse_document(entry["duis"].encode("utf-8"), when), len(raw)
        except orjson.JSONDecodeError as e:
            rejects.add(number, f"not JSON: {e}", raw, source)
        except InvalidValue as e:
            rejects.add(number, str(e), raw, source)


def _xml_files(files: list[Path], rejects: RejectFile, logged_at: datetime | None) -> Iterator[Parsed]:
    for path in files:
        size = path.stat().st_size
        with open_binary(path) as f:
            document = f.read(duis.MAX_DOCUMENT_BYTES + 1)
        when = logged_at or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        try:
            yield duis.parse_document(document, when), size
        except InvalidValue as e:
            rejects.add(1, str(e), document, source=str(path))


def _append_all(engine: Engine, parsed: Iterator[Parsed], summary: Summary, progress: Progress | None) -> None:
    batch: list[SatRecord] = []
    consumed = 0
    for record, size in parsed:
        batch.append(record)
        consumed += size
        if len(batch) >= BATCH:
            _append_batch(engine, batch, summary)
            batch = []
            if progress:
                progress(consumed)
                consumed = 0
    if batch:
        _append_batch(engine, batch, summary)
    if progress and consumed:
        progress(consumed)


def _append_batch(engine: Engine, batch: list[SatRecord], summary: Summary) -> None:
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                loaded, duplicates = append_records(conn, batch)
            break
        except (IntegrityError, OperationalError) as e:
            # another loader won the race for the same keys or ids, or held the write lock
            if attempt == 2 or (isinstance(e, OperationalError) and "locked" not in str(e.orig)):
                raise
    summary.loaded += loaded
    summary.duplicates += duplicates
