"""A responsibilities file makes the same registry whatever its batch size (Hypothesis).

Random correction files over the persona world (two Devices, each with its held supplier
and network-operator intervals, records in them): changes of supplier in either order,
re-dates, a Party's interval given twice, overlaps, reversed intervals, lines repeated. Each
file is loaded into a fresh copy of the world in one batch and in batches of one, two and
three lines; the intervals, the visibility index, the summary and the rejected lines with
their reasons must be the same. Small batches are the hard case: there a line that overlaps
waits for the file's end with the later lines of its Device and relation
(ingest.waiting_lines), those before it in its batch too, and is judged with them there
(store.registry). And between two batches, no time that a Device's relation was held
before the load and is held after it is held by no one (a change of supplier's two lines in
two batches, the old supplier's end first, left one: session 40). Every Device's intervals
are bisected here (domain.held_intervals), not only those of a Device with more than a few:
the rest of the suite, whose Devices have a few, has them scanned.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail import settings as servicetrail_settings
from servicetrail.domain.times import parse_time
from servicetrail.ingest import registry_csv
from servicetrail.ingest.registry_load import load_registry
from servicetrail.domain import held_intervals
from devsupport.pg_server import PgServer
from tests.conftest import PER_EXAMPLE, StorePerExample
from tests.personas import ESME_1, GSME_1, NORTHPOWER, SOUTHENERGY, SUNEXPORT, WIRESCO


@pytest.fixture(autouse=True, scope="module")
def every_device_bisected() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(held_intervals, "_FEW", 0)
        yield


# the persona world's intervals start and change on the first of January and of March 2025
GRID = [parse_time(f"2025-{month:02d}-01T00:00:00Z") for month in range(1, 7)]
GRID.insert(0, parse_time("2024-12-01T00:00:00Z"))
HEADER = "device_id,party_id,relation,valid_from,valid_to\n"


def _time(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def lines(draw, devices=(ESME_1, GSME_1), relations=("supplier",) * 3 + ("network_operator",)):
    device = draw(st.sampled_from(devices))
    party = draw(st.sampled_from([NORTHPOWER, SOUTHENERGY, SUNEXPORT, WIRESCO]))
    relation = draw(st.sampled_from(relations))
    start = draw(st.sampled_from(GRID))
    end = draw(st.one_of(st.none(), st.sampled_from(GRID)))
    if end is not None and draw(st.booleans()):
        end = max(end, start + timedelta(days=1))  # mostly valid; sometimes reversed or empty
    return f"{device},{party},{relation},{_time(start)},{_time(end)}\n"


@st.composite
def files(draw) -> str:
    body = draw(st.lists(lines(), min_size=1, max_size=8))
    # a line given again later (a re-sent extract) is common in real files
    if draw(st.booleans()):
        body.append(draw(st.sampled_from(body)))
    # and one re-dated further down: its Device, relation and Party, another start. A line
    # of a group that waits for the file's end and a later one of that group in another batch
    # (ingest.waiting_lines.holds), which eight lines drawn at random seldom made (60c)
    if draw(st.booleans()):
        at = draw(st.integers(min_value=0, max_value=len(body) - 1))
        device, party, relation, _, end = body[at].split(",")
        start = _time(draw(st.sampled_from(GRID)))
        body.insert(
            draw(st.integers(at + 1, len(body))), f"{device},{party},{relation},{start},{end}"
        )
    return HEADER + "".join(body)


# GSME_1 is SOUTHENERGY's since START: NORTHPOWER's from a month before overlaps it and
# waits for the file's end; NORTHPOWER's from START then corrects its Party, the file's last
# word. In batches of one the second line must wait with the first (ingest.waiting_lines.holds):
# judged at once, it loaded, and the first, judged after it, moved NORTHPOWER's start a month
# earlier than one batch did (60c's break of `holds`, which eight random lines seldom reach).
SUPPLIER_MOVED_THEN_CORRECTED = (
    HEADER
    + f"{GSME_1},{NORTHPOWER},supplier,2024-12-01T00:00:00Z,\n"
    + f"{GSME_1},{NORTHPOWER},supplier,2025-01-01T00:00:00Z,\n"
)


@contextmanager
def batches_of(size: int) -> Iterator[None]:
    saved = {
        name: os.environ.get(name)
        for name in ("SERVICETRAIL_REGISTRY_BATCH", "SERVICETRAIL_PARSE_WORKERS")
    }
    os.environ["SERVICETRAIL_REGISTRY_BATCH"] = str(size)
    os.environ["SERVICETRAIL_PARSE_WORKERS"] = "0"
    servicetrail_settings.reload()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        servicetrail_settings.reload()


Held = dict[tuple[str, str], list[tuple[str, str | None]]]


def held(engine: Engine) -> Held:
    """Each Device and relation's intervals (their times as the store writes them, one form
    per engine, so that they sort as times)."""
    spans: Held = {}
    with engine.connect() as conn:
        for device, relation, start, end in conn.execute(
            text("SELECT device_id, relation, valid_from, valid_to FROM responsibility")
        ):
            spans.setdefault((device, relation), []).append(
                (str(start), None if end is None else str(end))
            )
    return spans


def gaps_while_loading(before: Held, between: list[Held], after: Held) -> list[tuple]:
    """A time of a Device and relation that someone held before the load and after it, and
    no one between two batches: neither supplier saw the Device's traffic then (audit 38e)."""

    def covered(spans: list[tuple[str, str | None]], moment: str) -> bool:
        return any(start <= moment and (end is None or moment < end) for start, end in spans)

    found = []
    for key in set(before) & set(after):
        moments = {t for state in (before, after, *between) for s in state.get(key, []) for t in s}
        for moment in sorted(m for m in moments if m is not None):
            if covered(before[key], moment) and covered(after[key], moment):
                found += [(key, moment) for s in between if not covered(s.get(key, []), moment)]
    return found


def loaded(worlds: StorePerExample, content: str, size: int) -> tuple:
    """What loading `content` in batches of `size` leaves and says, in a fresh world."""
    with tempfile.TemporaryDirectory() as folder:
        engine = worlds.fresh()
        path = Path(folder) / "corrections.csv"
        path.write_text(content, encoding="utf-8", newline="")
        before, between = held(engine), []
        with batches_of(size):
            summary = load_registry(
                engine,
                registry_csv.RESPONSIBILITIES,
                path,
                None,
                progress=lambda _: between.append(held(engine)),
            )
        gaps = gaps_while_loading(before, between, held(engine))
        assert not gaps, (size, gaps, content)
        rejects = Path(folder) / "corrections.rejects.jsonl"
        rejected = (
            [
                (entry["line"], entry["reason"])
                for entry in map(json.loads, rejects.read_text().splitlines())
            ]
            if rejects.exists()
            else []
        )
        with engine.connect() as conn:
            intervals, index = (
                sorted(tuple(map(str, row)) for row in conn.execute(text(f"SELECT * FROM {t}")))
                for t in ("responsibility", "sat_visibility")
            )
    said = (summary.loaded, summary.rejected, summary.duplicates, summary.corrected)
    return intervals, index, said, sorted(rejected)


def check(worlds: StorePerExample, content: str) -> None:
    whole = loaded(worlds, content, 20_000)
    for size in (1, 2, 3):
        assert loaded(worlds, content, size) == whole, (size, content)


@pytest.fixture
def sqlite_worlds(tmp_path: Path, sqlite_personas_template: Path) -> Iterator[StorePerExample]:
    with StorePerExample(sqlite_personas_template, folder=tmp_path) as worlds:
        yield worlds


@pytest.fixture
def pg_worlds(pg_server: PgServer, pg_personas_template: str) -> Iterator[StorePerExample]:
    with StorePerExample(pg_personas_template, server=pg_server) as worlds:
        yield worlds


@settings(max_examples=60, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(content=files())
@example(content=SUPPLIER_MOVED_THEN_CORRECTED)
def test_a_file_makes_the_same_registry_in_batches_of_any_size(
    sqlite_worlds: StorePerExample, content: str
) -> None:
    check(sqlite_worlds, content)


@settings(max_examples=12, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(content=files())
@example(content=SUPPLIER_MOVED_THEN_CORRECTED)
def test_a_file_makes_the_same_registry_in_batches_of_any_size_on_postgresql(
    pg_worlds: StorePerExample, content: str
) -> None:
    """COPY, the corrections' temporary table and the index's set-based refresh: PostgreSQL's
    own writing paths."""
    check(pg_worlds, content)


@st.composite
def files_with_copies(draw) -> tuple[str, str]:
    """A file, and the same file with one to three copies, each of an interval's last line
    (the key of a line: its Device, relation and start) given again anywhere after it. One
    Device's supplier lines mostly: they meet and overlap most."""
    devices = draw(st.sampled_from([[ESME_1], [ESME_1], [ESME_1, GSME_1]]))
    body = draw(st.lists(lines(devices, ["supplier"]), min_size=1, max_size=8))
    with_copies = list(body)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        last_of = {
            tuple(line.split(",")[i] for i in (0, 2, 3)): j for j, line in enumerate(with_copies)
        }
        copied = draw(st.sampled_from(sorted(last_of.values())))
        at = draw(st.integers(min_value=copied + 1, max_value=len(with_copies)))
        with_copies.insert(at, with_copies[copied])
    return HEADER + "".join(body), HEADER + "".join(with_copies)


@pytest.mark.parametrize("filter_bytes", [None, 1], ids=["bloom", "every-line-a-meeting"])
@settings(max_examples=60, deadline=None, suppress_health_check=PER_EXAMPLE)
@given(pair=files_with_copies())
def test_a_line_given_again_word_for_word_changes_no_registry(
    sqlite_worlds: StorePerExample, filter_bytes: int | None, pair: tuple[str, str]
) -> None:
    """An interval's last line given again further down is a duplicate: the registry and the
    index are those of the file without the copies, whatever lies between (audit 44a: a line
    between that overlapped it loaded in its place), in batches of any size; also with the
    look-ahead's filter cut to one byte, where every line meets another by chance."""

    plain, copied = pair
    with pytest.MonkeyPatch.context() as patch:
        if filter_bytes is not None:
            patch.setattr(registry_csv, "_FEWEST_SEEN_BYTES", filter_bytes)
            patch.setattr(registry_csv, "_MOST_SEEN_BYTES", filter_bytes)
        want = loaded(sqlite_worlds, plain, 20_000)[:2]
        for size in (20_000, 1, 2, 3):
            assert loaded(sqlite_worlds, copied, size)[:2] == want, (size, copied)
