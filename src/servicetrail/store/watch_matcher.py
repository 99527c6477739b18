"""The matcher: new records made into the events of the watches they match (SPEC section 6).

It runs apart from ingest (`match_new_records`, called by the server's and `servicetrail
deliver`'s background loop): it reads the trail after a durable cursor of record ids, so a
loader pays nothing for it and a crash of either side loses nothing. A registry change first
matches what is stored (`match_before_registry_change`). Each step is one transaction: the
events, the watches' event counters, the webhook outbox and the cursor move together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from .. import settings
from ..domain.ids import MAX_ID
from ..domain.watches import Candidate, PartyWatches, Watch
from .engine import foreign_keys_planned_once, refuse_if_changed_under_us
from .remembered import remembered_by_url
from .schema import sqlite_time
from .watch_sql import (
    indexed_candidates,
    new_records_span,
    newest_record_id,
    record_ids_between,
)
from .watch_tables import MATCHER_CURSOR, watch, watch_cursor, watch_event
from .watches import spec_of


@dataclass
class _PartyCached:
    # the Party's watches: how many, the highest and lowest id, the newest's time of making
    key: tuple[int, int, int, Any]
    watches: PartyWatches
    after: dict[int, int]
    kinds: frozenset[str]


@dataclass
class _Cached:
    parties: dict[str, _PartyCached]
    index: dict[str, PartyWatches]
    after: dict[int, int]
    kinds: list[str]  # every kind some watch asks for


_watch_cache: dict[str, _Cached] = remembered_by_url({})


def _watch_index(conn: Connection) -> _Cached:
    """Every watch, indexed per Party; a Party's re-read only when its watches were added or
    deleted (a watch's filters never change: the API has no update). Ids only grow, so a
    Party's (count, highest, lowest) changes with any change to its set. Per Party, not for
    all at once: one Party making and deleting a watch again and again had every Party's
    watches re-read and re-indexed on each step of the matcher (200 watches of 1,000 Devices
    each took 0.1 s, so a few such Parties' worth held up everyone's events; audit 55f).

    Remembered by the store's URL, which a store restored from a backup keeps: there, ids the
    matcher knew can hold other watches (the backup's, or ones made since from its id
    sequence), so the key has the newest watch's time of making too (session 59)."""
    c = watch.c
    keys = {
        party: (count, highest, lowest, newest)
        for party, count, highest, lowest, newest in conn.execute(
            select(
                c.party_id, func.count(), func.max(c.id), func.min(c.id), func.max(c.created_at)
            ).group_by(c.party_id)
        )
    }
    url = str(conn.engine.url)
    cached = _watch_cache.get(url)
    parties = dict(cached.parties) if cached is not None else {}
    stale = {p for p in keys if p not in parties or parties[p].key != keys[p]}
    if cached is not None and not stale and len(parties) == len(keys):
        return cached
    for party in set(parties) - set(keys):
        del parties[party]
    if stale:
        rows = conn.execute(select(watch).where(watch.c.party_id.in_(sorted(stale)))).all()
        grouped: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            grouped[r.party_id].append(r)
        for party in stale:
            found = [Watch(r.id, r.party_id, spec_of(r)) for r in grouped[party]]
            parties[party] = _PartyCached(
                keys[party],
                PartyWatches(found),
                {r.id: r.after_record_id for r in grouped[party]},
                frozenset(kind for w in found for kind in w.spec.kinds),
            )
    cached = _Cached(
        parties,
        {party: one.watches for party, one in parties.items()},
        {watch_id: after for one in parties.values() for watch_id, after in one.after.items()},
        sorted({kind for one in parties.values() for kind in one.kinds}),
    )
    _watch_cache[url] = cached
    return cached


def _lock_cursor(conn: Connection, wait: bool = False) -> Any | None:
    """The cursor, locked for this transaction; None when another matcher holds it (unless
    `wait`: then once it is done), or no watch was ever made."""
    c = watch_cursor.c
    query = select(c.record_id, c.seen_id, c.gap_since).where(c.name == MATCHER_CURSOR)
    if conn.dialect.name == "postgresql":
        return conn.execute(query.with_for_update(skip_locked=not wait)).first()
    driver: Any = conn.connection.driver_connection
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")  # the write lock: one matcher (and no loader) at a time
    return conn.execute(query).first()


def _counters(conn: Connection, watch_ids: list[int]) -> list[tuple[int, int, bool]]:
    """(id, last_event_id, whether its webhook delivers) of the watches still there (not one
    kept after a 410, whose webhook waits to be turned off: outbox_gone.disable_gone). One
    array or JSON parameter, through the driver: an IN list of thousands of ids cost
    SQLAlchemy more to render than the query took (profiled).

    On PostgreSQL the rows are locked (FOR KEY SHARE) to the end of the step: a watch deleted
    between this read and the step's events made their foreign key fail, and with it the
    registry correction the step ran in (stress test, session 18). A deletion now waits for
    the step, then deletes the step's events with the watch's others (`delete_watch`)."""
    driver: Any = conn.connection.driver_connection
    columns = (
        "SELECT id, last_event_id, "
        "webhook_url IS NOT NULL AND webhook_disabled_at IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM webhook_gone g WHERE g.watch_id = watch.id) FROM watch WHERE "
    )
    if conn.dialect.name == "postgresql":
        rows = driver.execute(
            columns + "id = ANY(%s) ORDER BY id FOR KEY SHARE", (watch_ids,)
        ).fetchall()
    else:
        rows = driver.execute(
            columns + "id IN (SELECT value FROM json_each(?))", (orjson.dumps(watch_ids).decode(),)
        ).fetchall()
    return [(watch_id, last, bool(hooked)) for watch_id, last, hooked in rows]


def match_new_records(
    conn: Connection,
    batch: int | None = None,
    wait: bool = False,
    gaps_final: bool = False,
) -> int:
    """One step of the matcher, in the caller's transaction (commit it): the records after the
    cursor (at most `batch`) become events of the watches they match. Returns how many
    records it read; 0 when there was nothing new (or another matcher is at work, unless
    `wait`: then this one waits for it). `gaps_final`: no loader can still fill a gap in the
    ids, so none is waited for."""
    # the events' matched_at and a gap's first sight: the clock's, never a caller's (no caller
    # passed one, and a naive time failed deep in binary COPY: review 32c)
    now = datetime.now(timezone.utc)
    batch = settings.current().match_batch if batch is None else batch
    cursor = _lock_cursor(conn, wait)
    if cursor is None:
        return 0
    done, seen, gap_since = cursor
    ids = list(
        conn.execute(record_ids_between().limit(batch), {"after": done, "upto": MAX_ID}).scalars()
    )
    if not ids:
        return 0
    upto = ids[-1]
    whole = next((i for i, record_id in enumerate(ids) if record_id != done + 1 + i), len(ids))
    # On PostgreSQL, ids come from a sequence: a loader's transaction still open leaves a gap
    # below ids already committed. The matcher waits `match_gap_seconds` for a gap to fill (a
    # batch of 20,000 records commits in seconds) before taking it as one that rolled back.
    if whole == len(ids):
        new_done, gap_since = upto, None
    elif gaps_final or (
        gap_since is not None
        and (now - gap_since).total_seconds() >= settings.current().match_gap_seconds
    ):
        new_done, gap_since = upto, None  # the gap's transaction rolled back, or never was
    else:
        # the wait is timed from when this gap was first met: progress means a new gap
        new_done, gap_since = done + whole, (now if whole else gap_since or now)
        if upto <= seen and whole == 0:
            # nothing new since the last step: the same gap, still open
            conn.execute(
                update(watch_cursor)
                .where(watch_cursor.c.name == MATCHER_CURSOR)
                .values(gap_since=gap_since)
            )
            return 0
    _match(conn, done, upto, seen, now)
    conn.execute(
        update(watch_cursor)
        .where(watch_cursor.c.name == MATCHER_CURSOR)
        .values(record_id=new_done, seen_id=max(seen, upto), gap_since=gap_since)
    )
    return len(ids)


def _match(conn: Connection, after: int, upto: int, seen: int, now: datetime) -> None:
    """Events for the records in (after, upto]; those up to `seen` may have been matched
    before (past a gap), and already are events are left alone."""
    cached = _watch_index(conn)
    if not cached.index:
        return
    # watch -> (record id, its time, its Device)
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    index, after_of = cached.index, cached.after
    lo, hi = conn.execute(new_records_span(), {"after": after, "upto": upto}).one()
    if lo is None:
        return
    params = {
        "after": after,
        "upto": upto,
        "lo": lo,
        "hi": hi,
        "kinds": cached.kinds,
        "parties": sorted(index),
    }
    for record_id, logged_at, kind, srv, device_id, party_id, own, held in conn.execute(
        indexed_candidates(), params
    ):
        party_watches = index.get(party_id)
        if party_watches is None:
            continue
        for matched in party_watches.matching(
            Candidate(record_id, kind, srv or "", device_id, bool(own), bool(held))
        ):
            if record_id > after_of.get(matched.watch_id, MAX_ID):
                found[matched.watch_id].append((record_id, logged_at, device_id))
    if not found:
        return
    if after < seen:
        _drop_known(conn, found, after, seen)
    events, outbox, counters = [], [], []
    stamp = sqlite_time(now) if conn.dialect.name == "sqlite" else now
    # a watch deleted meanwhile is not among them
    for watch_id, last, hooked in _counters(conn, sorted(found)):
        records = sorted(found[watch_id])  # event ids follow record ids
        if not records:
            continue
        events += [
            (watch_id, last + n, record_id, logged_at, device_id, stamp)
            for n, (record_id, logged_at, device_id) in enumerate(records, start=1)
        ]
        if hooked:
            outbox += [(watch_id, last + n, stamp) for n in range(1, len(records) + 1)]
        counters.append((last + len(records), watch_id))
    _write_events(conn, events, outbox, counters)


_EVENT_COLUMNS = "watch_id, event_id, record_id, record_logged_at, record_device_id, matched_at"
_EVENT_TYPES = ("int8", "int8", "int8", "timestamptz", "varchar", "timestamptz")
_OUTBOX_TYPES = ("int8", "int8", "timestamptz")


def _write_events(
    conn: Connection,
    events: list[tuple[Any, ...]],
    outbox: list[tuple[Any, ...]],
    counters: list[tuple[Any, ...]],
) -> None:
    """The step's rows, through the driver: SQLAlchemy's per-row parameter processing cost
    several times the inserts themselves (a step can make hundreds of thousands of events).
    Times are already in the engine's form (the candidates read them unconverted)."""
    driver: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        # an outbox row's foreign key names its event (and on SQLite an event's its watch)
        with foreign_keys_planned_once(driver), driver.cursor() as cursor:
            # binary: the text form's per-row formatting cost the client 3.7 us an event
            # (200 watches matching 2,000 records: 1.5 s of CPU, against 0.2 s)
            if events:
                with cursor.copy(
                    f"COPY watch_event ({_EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for row in events:
                        copy.write_row(row)
            if outbox:
                with cursor.copy(
                    "COPY webhook_outbox (watch_id, event_id, next_attempt_at) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_OUTBOX_TYPES)
                    for row in outbox:
                        copy.write_row(row)
            if counters:
                cursor.executemany("UPDATE watch SET last_event_id = %s WHERE id = %s", counters)
        return
    if events:
        driver.executemany(
            f"INSERT INTO watch_event ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", events
        )
    if outbox:
        driver.executemany(
            "INSERT INTO webhook_outbox (watch_id, event_id, next_attempt_at) VALUES (?, ?, ?)",
            outbox,
        )
    if counters:
        driver.executemany("UPDATE watch SET last_event_id = ? WHERE id = ?", counters)


def _drop_known(conn: Connection, found: dict[int, list[Any]], after: int, seen: int) -> None:
    """Leave out the records a step before this one already made events of (read past a gap)."""
    e = watch_event.c
    known = set(
        conn.execute(
            select(e.watch_id, e.record_id).where(e.record_id > after, e.record_id <= seen)
        ).tuples()
    )
    for watch_id, records in found.items():
        found[watch_id] = [r for r in records if (watch_id, r[0]) not in known]


def match_before_registry_change(conn: Connection) -> None:
    """SPEC section 6: a record is matched as the registry stood when it was stored ("a later
    registry correction that grants visibility creates no event"). Matching runs apart from
    ingest, so a correction loaded before the matcher reached a record judged it by the new
    registry, and made an event. A registry change therefore first matches every record
    stored, in the change's own transaction once it holds the registry's lock.

    That lock holds every loader out: on PostgreSQL an ingest batch takes it (shared) before
    it draws its ids, and SQLite has one writer. So no id below the newest can still come,
    and the gaps met here are passed at once. Waited for instead, the records read past a gap
    were read again once it passed, under the corrected registry."""
    while match_new_records(conn, wait=True, gaps_final=True):
        pass


def catch_up(engine: Engine, steps: int = 1000) -> int:
    """Match steps, each its own transaction, until nothing is new (or `steps` were taken);
    returns how many records were read."""
    read = 0
    for _ in range(steps):
        if not _anything_new(engine):  # a plain read: no write lock taken for nothing
            break
        with engine.begin() as conn:
            found = match_new_records(conn)
            # a step (of a server's, a worker's or a registry load's) may outlast an upgrade,
            # which PostgreSQL's look at the checkout sees a second late at most: none commits
            # events on a schema this servicetrail does not know (review 49b)
            refuse_if_changed_under_us(conn)
        if not found:
            break
        read += found
    return read


def _anything_new(engine: Engine) -> bool:
    """Whether a matching step could do anything: a record past the newest one read, or a gap
    still waited for. False before any watch was made."""
    c = watch_cursor.c
    # Ended by COMMIT, not ROLLBACK (the same for a read): psycopg forgets a connection's
    # prepared statements on a ROLLBACK, and `serve` polls this several times a second on
    # the connections its searches use, each of which then planned its next search afresh
    # over every partition (11 ms of PostgreSQL's CPU at 10M records).
    with engine.begin() as conn:
        cursor = conn.execute(
            select(c.seen_id, c.gap_since).where(c.name == MATCHER_CURSOR)
        ).first()
        if cursor is None:
            return False
        return (
            cursor.gap_since is not None
            or conn.execute(newest_record_id()).scalar_one() > cursor.seen_id
        )


def cursor_position(conn: Connection) -> int | None:
    """Every record up to this id is matched (None before the first watch)."""
    return conn.execute(
        select(watch_cursor.c.record_id).where(watch_cursor.c.name == MATCHER_CURSOR)
    ).scalar()


def unmatched_backlog(conn: Connection) -> int:
    """How many records are stored past the matcher's cursor (for the operator and tests)."""
    done = cursor_position(conn)
    if done is None:
        return 0
    return max(0, conn.execute(newest_record_id()).scalar_one() - done)
