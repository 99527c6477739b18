"""Writing the registry (Devices, User IDs, Responsibility intervals) a batch at a time.

Each batch does one read of what the store holds for its keys, decides every row in
Python exactly as a row-at-a-time loader would (rows in order, so a row sees the rows
before it in the same batch; an interval row by the rules of domain.intervals), then
writes the differences in bulk (COPY on PostgreSQL, executemany on SQLite) and re-derives
the visibility index for what changed, all in the caller's transaction. The one-row
writers are the same code with a batch of one.

A row's outcome is an Outcome, or a Conflict (not raised) saying why it was refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import closing
from datetime import datetime, timezone
from typing import Any, cast

import orjson
from sqlalchemy import Table, exists, select
from sqlalchemy.engine import Connection

from ..domain.ids import shown
from ..domain.model import Device, Responsibility, User
from .driver_sql import parameter_mark
from .engine import foreign_keys_planned_once
from ..domain.held_intervals import HeldIntervals
from ..domain.intervals import (
    Conflict,
    Decided,
    IntervalKey,
    IntervalRow,
    Outcome,
    Overlap,
    not_the_word,
)
from .interval_batch import HeldForBatch, IntervalBatch, held_of
from .watch_matcher import match_before_registry_change
from .visibility_index import (
    devices_with_records,
    lock_registry,
    pg_joined,
    refresh,
    refresh_user,
    sqlite_text,
)

UTC = timezone.utc


class _Raw:
    """The caller's transaction at the DBAPI level: SQLAlchemy's per-row parameter handling
    costs more than the statements themselves at registry sizes."""

    def __init__(self, conn: Connection) -> None:
        self.driver = cast(Any, conn.connection.driver_connection)
        self.postgres = conn.dialect.name == "postgresql"
        self.mark = parameter_mark(conn)  # of the driver's statements written here
        if self.postgres:
            # A batch looks up thousands of keys at once (= ANY of an array). With the default
            # random_page_cost PostgreSQL scanned the whole table for that at a million Devices
            # (0.6-1 s a batch, every batch); at the value for cached or solid-state storage it
            # probes the index (0.1-0.3 s). For this transaction only.
            self.driver.execute("SET LOCAL random_page_cost = 1.1")
        elif not self.driver.in_transaction:
            # the write lock before the reads: a concurrent writer waits instead of
            # deciding on what this batch is about to change
            self.driver.execute("BEGIN IMMEDIATE")

    def rows_for(self, select_sql: str, column: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """`select_sql` (a SELECT ... FROM ... without WHERE) for the rows whose `column` is
        one of `keys`: one statement whatever their number."""
        keys = list(keys)
        if not keys:
            return []
        if self.postgres:
            # Probes of the key's index, whatever the planner estimates. As a first load fills
            # the tables from empty their statistics lag behind, and PostgreSQL took a batch's
            # few thousand keys for a large part of the table: it scanned all of it (in
            # parallel for devices), up to 0.3 s a batch and a third of the server's work at
            # a million Devices, where the probes take 10-20 ms. For this statement only.
            seqscan, gather = self.driver.execute(
                "SELECT current_setting('enable_seqscan'), "
                "current_setting('max_parallel_workers_per_gather'), "
                "set_config('enable_seqscan', 'off', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)"
            ).fetchone()[:2]
            found = self.driver.execute(
                f"{select_sql} WHERE {column} = ANY(string_to_array(%s, ','))", (pg_joined(keys),)
            ).fetchall()
            self.driver.execute(
                "SELECT set_config('enable_seqscan', %s, true), "
                "set_config('max_parallel_workers_per_gather', %s, true)",
                (seqscan, gather),
            )
            return cast(list[tuple[Any, ...]], found)
        return self.driver.execute(
            f"{select_sql} WHERE {column} IN (SELECT value FROM json_each(?))",
            (orjson.dumps(keys).decode(),),
        ).fetchall()

    def insert(
        self, table: str, columns: Sequence[str], types: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        if self.postgres:
            # per-row foreign-key plans were most of the server's work at a first load
            with (
                foreign_keys_planned_once(self.driver),
                self.driver.cursor() as cursor,
                cursor.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(list(types))
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(columns))
        self.driver.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
        )

    def time(self, value: datetime | None) -> Any:
        """A time as this engine's driver takes it (SQLite keeps fixed-width UTC text)."""
        if value is None or self.postgres:
            return value
        return sqlite_text(value)

    def read_set_time(self, value: Any) -> datetime:
        """A time the schema declares NOT NULL."""
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value.astimezone(UTC)


# --- Devices ------------------------------------------------------------------------------


def load_devices(conn: Connection, devices: Sequence[Device]) -> list[Decided]:
    """Register Devices; one already registered with another type or generation is a conflict."""
    raw = _Raw(conn)
    lock_registry(conn)  # the batch reads then writes: two loaders must not both insert a key
    held: dict[str, tuple[str, int]] = {
        device_id: (device_type, smets)
        for device_id, device_type, smets in raw.rows_for(
            "SELECT device_id, device_type, smets FROM device",
            "device_id",
            {d.device_id for d in devices},
        )
    }
    decided: list[Decided] = []
    new: list[tuple[Any, ...]] = []
    for dev in devices:
        found = held.get(dev.device_id)
        if found is None:
            held[dev.device_id] = (dev.device_type, dev.smets)
            new.append((dev.device_id, dev.device_type, dev.smets))
            decided.append(Outcome.LOADED)
        elif found == (dev.device_type, dev.smets):
            decided.append(Outcome.DUPLICATE)
        else:
            decided.append(
                Conflict(
                    f"device {dev.device_id} is already registered as {found[0]} SMETS{found[1]}"
                )
            )
    raw.insert("device", ("device_id", "device_type", "smets"), ("varchar", "varchar", "int2"), new)
    return decided


# --- User IDs -----------------------------------------------------------------------------


def load_users(
    conn: Connection,
    users: Sequence[tuple[User, str | None]],
    named: dict[str, tuple[str, int]] | None = None,
    lines: Sequence[int] = (),
) -> list[Decided]:
    """Register User IDs for their Parties, creating a Party or renaming it (the registry's
    latest word is its name; None: no word, a new Party is named by its ID); a User ID held
    by another Party or Role is a conflict. `named`: each Party's name as a stored line of
    the same file gave it, with the line (`lines[i]` is row i's), kept across its batches:
    a row naming the Party otherwise is a conflict. Taken in turn, the last name won, and
    each re-load renamed the Party twice (audit 28a); only a row stored names it (28d, 28e)."""
    raw = _Raw(conn)
    lock_registry(conn)
    match_before_registry_change(conn)  # what is stored is matched as the registry stood
    held = {
        user_id: (party_id, role)
        for user_id, party_id, role in raw.rows_for(
            "SELECT user_id, party_id, role FROM dcc_user", "user_id", {u.user_id for u, _ in users}
        )
    }
    names = dict(
        raw.rows_for("SELECT party_id, name FROM party", "party_id", {u.party_id for u, _ in users})
    )
    stored_names = dict(names)
    decided: list[Decided] = []
    new: list[tuple[Any, ...]] = []
    for row, (user, given) in enumerate(users):
        found = held.get(user.user_id)
        if found is not None and found != (user.party_id, user.role):
            decided.append(
                Conflict(
                    f"user_id {user.user_id} is already registered to {found[0]} as {found[1]}"
                )
            )
            continue
        if given is not None and named is not None:
            first, line = named.setdefault(user.party_id, (given, lines[row]))
            if first != given:
                decided.append(
                    Conflict(
                        f"party {user.party_id} is named {shown(first)} on line {line} of this "
                        f"file: a Party has one name"
                    )
                )
                continue
        # (a file without names renamed every known Party to its ID)
        name = names.get(user.party_id, user.party_id) if given is None else given
        renames = names.get(user.party_id, name) != name
        names[user.party_id] = name
        if found is not None:
            # a known User ID that gives its Party a new name corrects the Party (a rename
            # was counted a duplicate, as if nothing had changed; audit, session 17)
            decided.append(Outcome.CORRECTED if renames else Outcome.DUPLICATE)
            continue
        held[user.user_id] = (user.party_id, user.role)
        new.append((user.user_id, user.party_id, user.role))
        # a new User ID that renames its known Party corrects the Party too: the rename went
        # unsaid (audit 38e)
        decided.append(Outcome.CORRECTED if renames else Outcome.LOADED)
    created = [(p, n) for p, n in names.items() if p not in stored_names]
    raw.insert("party", ("party_id", "name"), ("varchar", "varchar"), created)
    renamed = [(n, p) for p, n in names.items() if p in stored_names and stored_names[p] != n]
    if renamed:
        with closing(raw.driver.cursor()) as cursor:  # (sqlite3's is no context manager)
            cursor.executemany(
                f"UPDATE party SET name = {raw.mark} WHERE party_id = {raw.mark}", renamed
            )
    raw.insert("dcc_user", ("user_id", "party_id", "role"), ("varchar", "varchar", "varchar"), new)
    # records sent before the User ID was known become its Party's own
    for user_id, party_id, _ in new:
        refresh_user(conn, user_id, party_id)
    return decided


# --- Responsibility intervals -------------------------------------------------------------


def load_responsibilities(conn: Connection, intervals: Sequence[Responsibility]) -> list[Decided]:
    """Add intervals, or correct ones with the same start; never let two of a Device and
    relation overlap (within the batch too: each row is judged after the ones before it, and
    from a Device and relation's first row that overlaps, its rows are judged together, the
    corrections of held intervals first: `corrections_first`).

    A correction (same device, relation and start, another end or Party) is how a registry
    closes an open interval or fixes a mistake; SPEC section 3 says a late correction changes
    what is visible from then on, past records included, so the index is re-derived for the
    records each change can affect."""
    return load_interval_rows(
        conn, [(i.device_id, i.party_id, i.relation, i.valid_from, i.valid_to) for i in intervals]
    )


def load_interval_rows(
    conn: Connection,
    rows: Sequence[IntervalRow],
    superseded: Sequence[bool] | None = None,
    redate_now: bool = True,
) -> list[Decided]:
    """load_responsibilities for IntervalRows, as the CSV loader reads them. `superseded[i]`:
    another row (of the file, as the loader knows it) is the word on row i's interval (Device,
    relation, start): the last to say what it says, or the first of those at the end that say
    it alike (`domain.intervals.not_the_word`); None: judged within `rows`. A superseded row
    is checked on its own and skipped, as its input's word is that row: applied in turn instead,
    an earlier word could overlap what a later row put in the store at the first load, and a
    re-load of the same file rejected it. Without `redate_now` (a batch of a file whose rows
    may wait for its end), a row that would re-date a held interval is an Overlap instead, and
    waits there with the rows after it of its Device and relation, to be judged with them as
    in one batch (so does one that moves an end earlier, if no row of the batch takes the time
    it frees): applied at once, a later line of the file that gave the interval again, or
    took the gap it freed, made the final registry depend on where the batches fell, and a
    re-load re-dated and re-dated back, the index wider in between (review 26f). Such a row
    holds back every row of its Device and relation in the batch, those before it too, so
    that a change of supplier's two lines are applied together: with the old supplier's new
    end applied in its batch and the new supplier's new start at the file's end, neither saw
    the Device's traffic in between, for as long as the load ran (audit 38e).

    The steps: read what the store holds for the batch's keys (_read_held), judge the rows
    in order (IntervalBatch), write the net change (_write_intervals), then re-derive the
    visibility index for what it touched."""
    # the row of the batch that is its word on each interval: one a later row gives is not
    # re-dated by an earlier one (the file's last word stands; across batches too, where a
    # re-date waits for the file's end with the lines after it: `redate_now`)
    if superseded is None:
        superseded = not_the_word(rows)
    raw = _Raw(conn)
    lock_registry(conn)
    match_before_registry_change(conn)  # what is stored is matched as the registry stood
    held = _read_held(conn, raw, rows)
    batch = IntervalBatch(rows, superseded, redate_now, held)
    batch.judge_in_order()
    if redate_now:
        batch.judge_set_aside_together()
    else:  # they wait for the file's end, where they are judged together
        batch.hold_back_for_the_files_end()
    _not_lost_for_a_refused_word(rows, batch.decided, batch.waits_on, batch.word_row)
    _write_intervals(raw, batch.changed, held.stored, batch.removed)
    # from the registry as written above, in this transaction
    refresh(conn, [change for changes in batch.touched.values() for change in changes])
    return batch.decided


def _read_held(conn: Connection, raw: _Raw, rows: Sequence[IntervalRow]) -> HeldForBatch:
    """One read per table for every key of the batch, whatever its size."""
    parties = {
        p for (p,) in raw.rows_for("SELECT party_id FROM party", "party_id", {r[1] for r in rows})
    }
    devices = {
        d
        for (d,) in raw.rows_for("SELECT device_id FROM device", "device_id", {r[0] for r in rows})
    }
    state: dict[tuple[str, str], HeldIntervals] = {}
    stored: dict[IntervalKey, tuple[str, datetime | None]] = {}
    read_time = raw.read_set_time
    for device_id, party_id, relation, valid_from, valid_to in raw.rows_for(
        "SELECT device_id, party_id, relation, valid_from, valid_to FROM responsibility",
        "device_id",
        devices,
    ):
        start = read_time(valid_from)
        held = (party_id, None if valid_to is None else read_time(valid_to))
        held_of(state, device_id, relation).put(start, held)
        stored[device_id, relation, start] = held
    return HeldForBatch(parties, devices, state, stored, devices_with_records(conn, devices))


def _not_lost_for_a_refused_word(
    rows: Sequence[IntervalRow],
    decided: list[Decided],
    waits_on: dict[int, datetime],
    word_row: dict[IntervalKey, int],
) -> None:
    """A row skipped for a later row's word on its interval, when that row was refused, is
    refused too, saying so: it was counted a duplicate, and neither loaded (audit 29d). An
    Overlap, so that in a batch whose overlaps wait for the file's end it waits with it."""
    for i, start in waits_on.items():
        device_id, party_id, relation, _, _ = rows[i]
        later = word_row.get((device_id, relation, start))
        if later is not None and later > i and isinstance(decided[later], Conflict):
            decided[i] = Overlap(
                f"not loaded: a later line gives the {relation} interval of {party_id} on "
                f"{device_id} from {start.isoformat()} again, and was refused ({decided[later]})"
            )


_INTERVAL_COLUMNS = ("device_id", "party_id", "relation", "valid_from", "valid_to")
_INTERVAL_TYPES = ("varchar", "varchar", "varchar", "timestamptz", "timestamptz")


def _write_intervals(
    raw: _Raw,
    changed: dict[IntervalKey, tuple[str, datetime | None]],
    stored: dict[IntervalKey, tuple[str, datetime | None]],
    removed: set[IntervalKey] = frozenset(),  # type: ignore[assignment]
) -> None:
    """The batch's net effect: re-dated intervals removed, new ones inserted, corrected ones
    updated in place."""
    time = raw.time
    gone = [(d, r, time(start)) for d, r, start in sorted(removed) if (d, r, start) in stored]
    _delete_intervals(raw, gone)
    added, corrected = _added_and_corrected(raw, changed, stored)
    raw.insert("responsibility", _INTERVAL_COLUMNS, _INTERVAL_TYPES, added)
    _update_intervals(raw, corrected)


def _delete_intervals(raw: _Raw, gone: list[tuple[str, str, Any]]) -> None:
    """The stored intervals of these (Device, relation, start) deleted."""
    if not gone:
        return
    delete = (
        f"DELETE FROM responsibility WHERE device_id = {raw.mark} AND relation = {raw.mark} "
        f"AND valid_from = {raw.mark}"
    )
    if raw.postgres:
        with raw.driver.cursor() as cursor:
            cursor.executemany(delete, gone)
    else:
        raw.driver.executemany(delete, gone)


def _added_and_corrected(
    raw: _Raw,
    changed: dict[IntervalKey, tuple[str, datetime | None]],
    stored: dict[IntervalKey, tuple[str, datetime | None]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The changed intervals as rows to insert (none stored from their start) and rows to
    update (stored otherwise), each in _INTERVAL_COLUMNS' order; those the batch set back
    to what is stored are neither."""
    added, corrected = [], []
    time = raw.time
    # in primary key order: SQLite's inserts then walk its b-tree's pages in order
    for key in sorted(changed):
        device_id, relation, start = key
        party_id, end = now = changed[key]
        before = stored.get(key)
        if before is None:
            added.append((device_id, party_id, relation, time(start), time(end)))
        elif before != now:
            corrected.append((device_id, party_id, relation, time(start), time(end)))
    return added, corrected


def _update_intervals(raw: _Raw, corrected: list[tuple[Any, ...]]) -> None:
    """Stored intervals given their corrected Party and end, found by Device, relation and
    start."""
    if not corrected:
        return
    if raw.postgres:
        # one UPDATE joined to the corrections COPYed into a temporary table
        with raw.driver.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS responsibility_correction "
                "(LIKE responsibility INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE responsibility_correction")
            with cursor.copy(
                f"COPY responsibility_correction ({', '.join(_INTERVAL_COLUMNS)}) "
                f"FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(list(_INTERVAL_TYPES))
                for row in corrected:
                    copy.write_row(row)
            cursor.execute(
                "UPDATE responsibility r SET party_id = c.party_id, valid_to = c.valid_to "
                "FROM responsibility_correction c WHERE r.device_id = c.device_id "
                "AND r.relation = c.relation AND r.valid_from = c.valid_from"
            )
        return
    raw.driver.executemany(
        "UPDATE responsibility SET party_id = ?, valid_to = ? "
        "WHERE device_id = ? AND relation = ? AND valid_from = ?",
        [
            (party_id, valid_to, device_id, relation, valid_from)
            for device_id, party_id, relation, valid_from, valid_to in corrected
        ],
    )


# --- one row at a time --------------------------------------------------------------------


def _one(decided: list[Decided]) -> Outcome:
    if isinstance(decided[0], Conflict):
        raise decided[0]
    return decided[0]


def load_device(conn: Connection, dev: Device) -> Outcome:
    return _one(load_devices(conn, [dev]))


def load_user(conn: Connection, user: User, party_name: str) -> Outcome:
    return _one(load_users(conn, [(user, party_name)]))


def load_responsibility(conn: Connection, new: Responsibility) -> Outcome:
    """One interval (see load_responsibilities); Conflict is raised, not returned."""
    return _one(load_responsibilities(conn, [new]))


def holds(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Whether `table` holds `row`, column by column (None: NULL), as a batch whose commit a
    stop interrupted would have left it (ingest.registry_stored)."""
    where = [
        table.c[name].is_(None) if value is None else table.c[name] == value
        for name, value in row.items()
    ]
    return bool(conn.execute(select(exists().where(*where))).scalar())


__all__ = [
    "Conflict",
    "Decided",
    "Overlap",
    "IntervalRow",
    "Outcome",
    "load_device",
    "holds",
    "load_devices",
    "load_interval_rows",
    "load_responsibilities",
    "load_responsibility",
    "load_user",
    "load_users",
]
