"""Ingest with parsing in forked worker processes gives exactly what parsing in-process gives:
the same rows, the same rejects with the same line numbers, the same summary; and a failure
inside a worker reaches the caller as it would have without one."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from servicetrail.ingest import satjsonl, sources, workers
from servicetrail.ingest import trail_load as load
from servicetrail.ingest.trail_load import CHUNK_LINES, ingest
from servicetrail.store.engine import open_store
from servicetrail.store.schema import sqlite_time
from servicetrail.store.record_rows import _postgres_row
from servicetrail.store.writer import _pg_time
from tests.conftest import ON_SQLITE_ALONE
from tests.ingest.sat_line import METER, UTC, line


def write_file(path: Path) -> tuple[int, int, dict[int, str]]:
    """Over two chunks' worth of lines with bad, blank and repeated lines spread through them;
    returns (new records, duplicates, {line number: reject reason prefix})."""
    lines, bad, seen = [], {}, set()
    duplicates = 0
    for n in range(2 * CHUNK_LINES + 500):
        number = len(lines) + 1
        if n % 997 == 5:
            lines.append("{not json")
            bad[number] = "not JSON"
        elif n % 1009 == 7:
            lines.append(line(n).replace('"request"', '"requests"'))
            bad[number] = "kind must be one of"
        elif n % 1013 == 9:
            lines.append("   ")
        else:
            key = n - 1 if n % 1019 == 11 else n  # now and then the line before again
            duplicates += key in seen
            seen.add(key)
            lines.append(line(key))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(seen), duplicates, bad


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT r.request_id, r.kind, r.logged_at, r.srv, r.user_id, r.device_id, "
                    "p.payload FROM sat_record r LEFT JOIN sat_payload p ON p.record_id = r.id "
                    "ORDER BY r.request_id"
                )
            )
        ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_workers_load_and_reject_exactly_as_in_process(engine, tmp_path, use_settings, workers):
    path = tmp_path / "sat.jsonl"
    good, duplicates, bad = write_file(path)
    assert duplicates and len(bad) > 10

    # batches end inside chunks too
    use_settings(
        SERVICETRAIL_WORKER_MIN_BYTES=0, SERVICETRAIL_PARSE_WORKERS=workers, SERVICETRAIL_BATCH=1000
    )
    summary = ingest(engine, [path])
    assert summary.line() == f"loaded {good}, rejected {len(bad)}, skipped {duplicates} duplicates"
    rejects = [json.loads(x) for x in (tmp_path / "sat.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == sorted(bad)
    assert all(r["reason"].startswith(bad[r["line"]]) for r in rejects)
    with_workers = stored(engine)
    assert len(with_workers) == good

    # the same file again, parsed in this process: nothing new, the same rejects
    use_settings(SERVICETRAIL_PARSE_WORKERS=0)
    again = ingest(engine, [path])
    assert again.line() == f"loaded 0, rejected {len(bad)}, skipped {good + duplicates} duplicates"
    assert [
        json.loads(x) for x in (tmp_path / "sat.rejects.jsonl").read_text().splitlines()
    ] == rejects
    assert stored(engine) == with_workers


@ON_SQLITE_ALONE
def test_a_failure_in_a_worker_reaches_the_caller(engine, tmp_path, use_settings, monkeypatch):
    """A bug, not bad input (which is a reject): the worker's exception is raised here.
    (A truncated gzip, this test's failure once, is now a reject at its line.)"""
    path = tmp_path / "many.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(line(n) for n in range(3000)) + "\n").encode()))
    parse_values = satjsonl.parse_values

    def broken(raw: bytes):
        if b":2500" in raw:
            raise RuntimeError("a bug in the parser")
        return parse_values(raw)

    monkeypatch.setattr(satjsonl, "parse_values", broken)  # the forked worker has it too
    for count in (0, 1):
        use_settings(SERVICETRAIL_WORKER_MIN_BYTES=0, SERVICETRAIL_PARSE_WORKERS=count)
        with pytest.raises(RuntimeError, match="a bug in the parser"):
            ingest(engine, [path])


def test_row_times_are_the_stores_own_forms():
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
    samples = [
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 30, tzinfo=UTC),
        datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    ]
    for _ in range(5000):
        when = datetime(1, 1, 2, tzinfo=UTC) + timedelta(microseconds=rng.randrange(3 * 10**17))
        samples.append(when.replace(microsecond=0) if rng.random() < 0.3 else when)
    for when in samples:
        local = when.astimezone(rng.choice(zones)) if when.year > 1 and when.year < 9999 else when
        utc = when.astimezone(UTC)  # SQLite's stored form, written out the long way
        stored = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}"
        stored += f":{utc.second:02d}.{utc.microsecond:06d}Z"
        assert sqlite_time(local) == stored
        micros = _postgres_row(local, "request", "r", "", "u", "", "", "")[0]
        assert _pg_time(micros) == when
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(datetime(2025, 1, 1))


def test_workers_share_out_chunks_with_the_line_numbers_of_the_file(tmp_path, monkeypatch):
    """Chunks end at CHUNK_LINES lines or at CHUNK_BYTES, whichever comes first; each worker
    takes every other chunk, and together they number every non-blank line as the file does."""
    monkeypatch.setattr(workers, "CHUNK_BYTES", 300)
    lines = [b"x" * (n % 70) + b"\n" if n % 11 else b" \t\n" for n in range(1, 400)]
    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(lines))
    expected = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    with open(path, "rb") as stream:
        alone = list(workers.chunks_of(stream, 7))
    assert [x for chunk, _, _ in alone for x in chunk] == expected
    assert {damage for _, damage, _ in alone} == {None}
    assert len(alone) > len(lines) // 7  # some chunks were cut short by their size
    shared = []
    for index in (0, 1):
        with open(path, "rb") as stream:
            shared.append(list(workers.chunks_of(stream, 7, index, 2)))
    assert [c for pair in zip(*shared) for c in pair] + shared[0][len(shared[1]) :] == alone


@pytest.mark.parametrize("workers", ["0", "2"])
@ON_SQLITE_ALONE
def test_a_gigabyte_of_blank_lines_is_read_past_in_runs_with_lines_numbered(
    engine, tmp_path, use_settings, workers
):
    """A megabyte of gzip holds a gigabyte of newlines: read one line at a time, it took over
    half an hour (audit 20c). Runs of blank lines, mixed line ends and spaces among them, are
    read past a buffer at a time, and the lines after them keep their numbers."""
    blank = [b"\n", b"\r\n", b" \t\r\n", b"\n" * 7]
    run = b"".join(blank[n % 4] for n in range(100_000)) * 3  # 3 x 250,000 lines
    path = tmp_path / "blank.jsonl.gz"
    body = [line(1).encode() + b"\n", run, b"{not json\n", run, line(2).encode() + b"\n", b" "]
    path.write_bytes(gzip.compress(b"".join(body), compresslevel=1))
    with gzip.open(path, "rb") as stream:
        read = list(sources.bounded_lines(stream, sources.max_line_bytes()))
    assert len(read) < 2_000  # runs, not 1.5 million lines
    assert sum(x.lines if isinstance(x, sources.Blanks) else 1 for x in read) == 1_500_004
    use_settings(SERVICETRAIL_WORKER_MIN_BYTES=0, SERVICETRAIL_PARSE_WORKERS=workers)
    summary = ingest(engine, [path])
    assert summary.line() == "loaded 2, rejected 1, skipped 0 duplicates"
    [reject] = [
        json.loads(x) for x in (tmp_path / "blank.jsonl.rejects.jsonl").read_text().splitlines()
    ]
    assert (reject["line"], reject["raw"]) == (750_002, "{not json")
    # a second record's conflict is found by its line number too (conflicts.numbered_lines)
    with gzip.open(path, "rb") as stream:
        assert [n for n, _ in sources.numbered_lines(stream)] == [1, 750_002, 1_500_003]


def _damaged(body: bytes, how: str) -> bytes:
    whole = gzip.compress(body)
    if how == "junk after":
        return whole + b"x"  # one byte: the failed read took it, and the next met a clean end
    if how == "bad checksum":
        return whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:]
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("how", ["junk after", "bad checksum", "cut short"])
@pytest.mark.parametrize("ends", ["a record", "blank lines"])
@ON_SQLITE_ALONE
def test_damage_inside_or_after_a_run_of_blank_lines_is_at_its_own_line(
    engine, tmp_path, use_settings, workers, how, ends
):
    """Damage is reported at the line a plain read meets it, in its own words: it was named at
    the run's first line, 100,000 lines early, and then the read after a failed one met a
    clean end (no reject at all) or other damage (reviews, session 21)."""
    body = line(1).encode() + b"\n" + b"\n" * 300_000
    if ends == "a record":
        body += line(2).encode() + b"\n"
    path = tmp_path / "damaged.jsonl.gz"
    path.write_bytes(_damaged(body, how))
    with gzip.open(path, "rb") as stream:  # where the damage is, and its words, line by line
        readable, said = 0, None
        try:
            while stream.readline():
                readable += 1
        except sources.DAMAGED as e:
            said = sources.damage_reason(e)
    assert said is not None
    use_settings(SERVICETRAIL_WORKER_MIN_BYTES=0, SERVICETRAIL_PARSE_WORKERS=workers)
    ingest(engine, [path])
    rejects = (tmp_path / "damaged.jsonl.rejects.jsonl").read_text().splitlines()
    [reject] = [json.loads(x) for x in rejects]
    assert (reject["line"], reject["reason"]) == (readable + 1, said)


def test_a_batch_waiting_on_slow_input_lets_other_writers_in(
    sqlite_url, tmp_path, use_settings, monkeypatch
):
    """SQLite: a batch's transaction holds the write lock that every other writer (the
    server's access log too) waits for. A batch open past BATCH_SECONDS commits before the
    next chunk is read, so input that is slow to give rows does not hold it (audit 20c)."""
    monkeypatch.setattr(load, "BATCH_SECONDS", 0.2)
    path = tmp_path / "slow.jsonl"
    chunks = [[line(n) for n in range(k, k + 3)] + [""] * (CHUNK_LINES - 3) for k in (0, 3, 6)]
    path.write_text("\n".join(sum(chunks, [])) + "\n", encoding="utf-8")
    parse_values, other_writer_got_in = satjsonl.parse_values, []

    def slow(raw: bytes):
        if f'{METER}:3"'.encode() in raw:
            time.sleep(0.3)  # the second chunk is slow to come
        elif f'{METER}:6"'.encode() in raw:  # while the third is read, another writer tries
            other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other_writer_got_in.append(True)
            except sqlite3.OperationalError:
                other_writer_got_in.append(False)
            finally:
                other.close()
        return parse_values(raw)

    monkeypatch.setattr(satjsonl, "parse_values", slow)
    use_settings(SERVICETRAIL_PARSE_WORKERS=0)
    engine = open_store(sqlite_url)
    try:
        summary = ingest(engine, [path])
    finally:
        engine.dispose()
    assert summary.line() == "loaded 9, rejected 0, skipped 0 duplicates"
    assert other_writer_got_in == [True]


def test_two_loaders_of_the_same_file_at_once_load_each_record_once(db_url, tmp_path):
    """SQLite: the second loader waits for the write lock. PostgreSQL: both write; the loser of
    a key meets the natural-key constraint, and its batch is replayed with those rows skipped."""
    path = tmp_path / "sat.jsonl"
    total = 6000
    path.write_text("".join(line(n) + "\n" for n in range(total)), encoding="utf-8")
    binary = Path(sys.executable).with_name("servicetrail")
    env = dict(os.environ, SERVICETRAIL_BATCH="500", SERVICETRAIL_WORKER_MIN_BYTES="0")
    # db_url's store is built already (cloned from the migrations' template): a `db upgrade`
    # first cost a command's start, ~0.7 s of CPU an engine, and changed nothing
    loaders = [
        subprocess.Popen(
            [str(binary), "--db", db_url, "ingest", str(path)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [loader.communicate(timeout=120) for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0], outcomes
    counts = [tuple(map(int, re.findall(r"\d+", out))) for out, _ in outcomes]
    assert sum(c[0] for c in counts) == total and sum(c[2] for c in counts) == total, counts
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            assert conn.execute(
                text("SELECT count(*), count(DISTINCT request_id) FROM sat_record")
            ).one() == (total, total)
            assert conn.execute(text("SELECT count(*) FROM sat_payload")).scalar_one() == total // 2
    finally:
        engine.dispose()
