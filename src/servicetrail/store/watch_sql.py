"""The statements of watches (SPEC section 6) over the trail, all through the rule.

The rule is `visibility_sql`'s, unchanged. The matcher reads which watching Parties may see
each new record from the visibility index the ingest wrote (`indexed_candidates`); every
read or delivery of an event applies the rule again (a delivery's: store.outbox_sql).
`tests/store/test_watch_property.py` proves the events equal what `decide()` allows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.sql.dml import Update

from .items import item_columns, with_item_joins
from .schema import sat_record, sat_visibility
from .visibility_sql import (
    held_clause,
    visible_clause,
)
from .visibility_index import MP141, OWN
from .watch_tables import watch, watch_event

s = sat_record.c


def newest_record_id() -> Select[Any]:
    """The newest record's id, 0 if none. Its 0 written in the statement: bound, it was the
    statement's one parameter, and the sessions' force_custom_plan had PostgreSQL plan it
    afresh over every monthly partition each time (`serve` and `deliver` ask several times a
    second: 1.2-1.5 ms of planning against 0.004 ms at 28 partitions); without one, a
    prepared statement keeps its plan whatever the mode (audit 56c)."""
    return select(func.coalesce(func.max(s.id), literal_column("0")))


def record_ids_between() -> Select[Any]:
    """The ids stored in (after, upto]: the matcher learns from them where the ids are whole."""
    return (
        select(s.id)
        .where(
            s.id > bindparam("after", type_=BigInteger), s.id <= bindparam("upto", type_=BigInteger)
        )
        .order_by(s.id)
    )


@lru_cache(maxsize=1)
def indexed_candidates() -> Select[Any]:
    """The matcher's candidates, read from the per-Party visibility index (`sat_visibility`)
    that the ingest batch already wrote: each record in (after, upto] (logged in [lo, hi],
    which prunes PostgreSQL's monthly partitions) of the `kinds` watched, with each of the
    `parties` (those that watch) that may see it, `own` (the row is rule 1's) and `held`
    (rule 3's rows are held by definition; for rule 1's, the Party's interval on the Device
    is looked up). One range of the index by record id instead of the rule per pair.

    The rule is applied again whenever an event is read or delivered (`events_page`,
    `due_deliveries`), so an index row gone stale could only make an event nobody is shown."""
    v = sat_visibility.c
    held = held_clause(s.device_id, v.party_id, v.logged_at)
    return (
        select(
            v.record_id,
            # the time as the engine holds it (SQLite's text; a datetime from psycopg),
            # unconverted: the matcher writes it straight back into the events
            type_coerce(v.logged_at, String),
            v.kind,
            v.srv,
            s.device_id,
            v.party_id,
            (v.access == OWN).label("own"),
            case((v.access == MP141, literal(True)), else_=held).label("held"),
        )
        .select_from(
            sat_visibility.join(sat_record, and_(s.id == v.record_id, s.logged_at == v.logged_at))
        )
        .where(
            # compared as an expression, not a column: the range of new record ids leads on
            # both engines (ix_sat_visibility_record), where SQLite took the key's Party
            # prefix and read every row of each watching Party to find the batch's
            v.party_id.concat(literal_column("''")).in_(
                bindparam("parties", expanding=True, type_=v.party_id.type)
            ),
            v.record_id > bindparam("after", type_=BigInteger),
            v.record_id <= bindparam("upto", type_=BigInteger),
            v.logged_at >= bindparam("lo", type_=v.logged_at.type),
            v.logged_at <= bindparam("hi", type_=v.logged_at.type),
            v.kind.in_(bindparam("kinds", expanding=True, type_=v.kind.type)),
        )
    )


def new_records_span() -> Select[Any]:
    """The first and last `logged_at` of the records in (after, upto]."""
    return select(func.min(s.logged_at), func.max(s.logged_at)).where(
        s.id > bindparam("after", type_=BigInteger), s.id <= bindparam("upto", type_=BigInteger)
    )


def event_record() -> ColumnElement[bool]:
    """An event's record, by its whole key (the columns PostgreSQL's partitions and the
    record's indexes are keyed on), not its id alone."""
    e = watch_event.c
    return and_(
        s.id == e.record_id,
        s.logged_at == e.record_logged_at,
        s.device_id == e.record_device_id,
    )


def _events_of_watches(base_where: list[Any]) -> Select[Any]:
    e = watch_event.c
    joined = watch_event.join(sat_record, event_record())
    return (
        select(e.watch_id, e.event_id, e.matched_at, *item_columns(with_payload=False))
        .select_from(with_item_joins(joined, with_payload=False))
        .where(*base_where)
    )


@lru_cache(maxsize=1)
def events_page() -> Select[Any]:
    """A page of one watch's events that its Party may see now (a registry correction may
    have hidden some), in event order; the viewer comes in as bind parameters."""
    e = watch_event.c
    return (
        _events_of_watches(
            [
                e.watch_id == bindparam("watch_id", type_=BigInteger),
                e.event_id > bindparam("after", type_=BigInteger),
                visible_clause(),
            ]
        )
        .order_by(e.event_id)
        .limit(bindparam("lim", type_=Integer))
    )


@lru_cache(maxsize=1)
def recent_events() -> Select[Any]:
    """One watch's newest events before `before` that its Party may see, newest first (the
    Watches page and its older pages)."""
    e = watch_event.c
    return (
        _events_of_watches(
            [
                e.watch_id == bindparam("watch_id", type_=BigInteger),
                e.event_id < bindparam("before", type_=BigInteger),
                visible_clause(),
            ]
        )
        .order_by(e.event_id.desc())
        .limit(bindparam("lim", type_=Integer))
    )


@lru_cache(maxsize=2)
def _unread_visible(one_watch: bool) -> Select[Any]:
    """The Party's events past what it has read, that it may see, at most `lim` of them (the
    count in the navigation says "99+" rather than counting a backlog whole); `one_watch`:
    of the watch `watch_id` alone."""
    e = watch_event.c
    w = watch.c
    joined = watch_event.join(watch, w.id == e.watch_id).join(sat_record, event_record())
    which = [w.id == bindparam("watch_id", type_=BigInteger)] if one_watch else []
    return (
        select(e.watch_id, e.event_id)
        .select_from(joined)
        .where(
            w.party_id == bindparam("party_id"),
            *which,
            e.event_id > w.read_event_id,
            visible_clause(),
        )
        .limit(bindparam("lim", type_=Integer))
    )


def unread_in_watch() -> Select[Any]:
    """How many of the watch `watch_id`'s unread events the Party may see (at most `lim`)."""
    return select(func.count()).select_from(_unread_visible(True).subquery())


def unread_by_watch() -> Select[Any]:
    """Each of the Party's watches with its newest event and how many of `_unread_visible`'s
    events are its: (watch id, read_event_id, last_event_id, count). The newest event is read
    in the same statement as the events, so it is the newest the count walked past.

    The events are walked once, then joined: as a subquery, PostgreSQL (which row security
    tells one watch is the Party's) ran the whole walk again for each watch, 200 walks a page
    (review 32a)."""
    w = watch.c
    capped = (
        _unread_visible(False)
        .cte("unread_visible")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        select(w.id, w.read_event_id, w.last_event_id, func.count(capped.c.event_id))
        .select_from(watch.outerjoin(capped, capped.c.watch_id == w.id))
        .where(w.party_id == bindparam("party_id"))
        .group_by(w.id, w.read_event_id, w.last_event_id)
    )


def watches_locked_in_id_order(watch_ids: list[int], party_id: str | None = None) -> Select[Any]:
    """Locks these watches' rows (of this Party only, if given) in id order, as a matcher's
    step updates them, for a write about to update them on PostgreSQL. One UPDATE takes them
    in whatever order its plan reads them (the table's, on a scan), and a step holding one
    and waiting for another closed a cycle with it (reviews 34c, 34d). FOR NO KEY UPDATE, as
    an UPDATE of these columns takes them: an event's foreign key still shares them."""
    w = watch.c
    chosen = select(w.id).where(w.id.in_(sorted(watch_ids)))
    if party_id is not None:
        chosen = chosen.where(w.party_id == literal(party_id))
    locked = chosen.order_by(w.id).with_for_update(key_share=True).subquery()
    return select(func.count()).select_from(locked)


def skip_hidden_unread(party_id: str, newest_of: dict[int, int]) -> Update:
    """Move the Party's watches' read positions (watch id -> its newest event) when, as this
    statement finds them, none of a watch's unread events up to its newest is one the Party
    may see: a correction committed since the count that found them hidden (a supply put
    right, a User ID registered) may have shown them again. The viewer's bind parameters
    (`viewer_params`) must be the Party's as the store has them now, not as they were when
    the page began (review 32b). One statement for every watch: one a watch was planned 150
    times over on PostgreSQL (650 ms, review 32b)."""
    e = watch_event.c
    w = watch.c
    newest = case(
        {watch_id: literal(event_id, BigInteger) for watch_id, event_id in newest_of.items()},
        value=w.id,
    )
    visible_unread = (
        select(literal(1))
        .select_from(watch_event.join(sat_record, event_record()))
        .where(
            e.watch_id == w.id,
            e.event_id > w.read_event_id,
            e.event_id <= newest,
            visible_clause(),
        )
    )
    return (
        update(watch)
        .where(
            w.party_id == literal(party_id),
            w.id.in_(list(newest_of)),
            w.read_event_id < newest,
            ~exists(visible_unread),
        )
        .values(read_event_id=newest)
    )
