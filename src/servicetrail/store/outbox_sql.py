"""The statements of webhook deliveries (SPEC section 6), all through the rule: which
watches have a delivery due, a watch's due page, the deliveries a worker holds, and the
failed ones waiting for a retry (store.outbox runs them; store.watches reads the failed).

Where one statement serves many Parties (the deliverer re-checks the events of a watch's
Party), the viewer's bind parameters are swapped for a column holding the Party
(`for_party`), so the same clauses of `visibility_sql` decide, per row, for that row's
Party: a registry correction that hides a record stops its deliveries, and its failures
are not told to a Party that may no longer see it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal,
    literal_column,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.visitors import ExternallyTraversible, replacement_traverse

from .items import item_columns, with_item_joins
from .schema import UtcDateTime, dcc_user, sat_record
from .visibility_sql import (
    VIEWER_PARTY,
    VIEWER_USER_IDS,
    VIEWER_USER_IDS_NOT,
    visible_clause,
)
from .watch_sql import event_record
from .watch_tables import FAILED_DELIVERY, watch, watch_event, webhook_gone, webhook_outbox


_Clause = TypeVar("_Clause", bound=ExternallyTraversible)


def for_party(clause: _Clause, party: ColumnElement[Any]) -> _Clause:
    """`clause` (anything built from visibility_sql's clauses, a whole statement included)
    with the viewer taken from the column `party` instead of bind parameters: the Party is
    that column, and its User IDs are those the registry gives it."""

    def swap(element: Any, **kw: Any) -> Any:
        if isinstance(element, BindParameter) and element.key == VIEWER_PARTY:
            return party
        if (
            isinstance(element, BinaryExpression)
            and isinstance(element.right, BindParameter)
            and element.right.key in (VIEWER_USER_IDS, VIEWER_USER_IDS_NOT)
        ):
            # an alias: the statement may join dcc_user itself (the item's role), and the
            # subquery must not correlate to that row
            holder = dcc_user.alias("viewer_user")
            held = exists(
                select(literal(1)).where(
                    holder.c.user_id == element.left, holder.c.party_id == party
                )
            )
            return held if element.right.key == VIEWER_USER_IDS else ~held
        return None

    no_options: dict[str, Any] = {}
    return cast(_Clause, replacement_traverse(clause, no_options, swap))


@lru_cache(maxsize=2)
def due_watches(postgresql: bool) -> Select[Any]:
    """The watches with a webhook on and a delivery due now, with their URLs and Parties:
    one descent of the outbox's `(watch_id, next_attempt_at)` index per hooked watch, however
    long the due backlog is. A watch whose receiver answered 410 and that waits to be turned
    off (`outbox_gone.disable_gone`) is not among them.

    On PostgreSQL, as EXISTS, analysed while one watch held the outbox, the planner made the
    semi-join an inner join on the outbox's distinct watches: a Seq Scan of the whole
    backlog, grouped, on every lease round while anything was due (200,000: 65-79 ms; audit
    62g, 62i), and a Party whose receiver fails builds such a backlog at will. A LIMIT keeps
    the probe a probe (a subquery with one is not made a join). The watch is bounded as a
    range, from its id up to the pair (watch, now), ordered by both columns, not as
    `watch_id = id` (as `due_deliveries`' range): the index is then the one plan that reads
    no more than the watch's first entry, where any other reads and sorts the rest and the
    planner sees it (a Seq Scan it expects to stop at its first match it costs at nothing,
    yet for another watch it reads all). The probe is a LATERAL join, a Nested Loop over the
    hooked watches, not a SubPlan in their filter: the same descents and buffers, at 13,000
    watches their medians even (within 5%, 61 looks in turns) and the fastest faster in 5
    states of 6 (audit 63c, bench/due_watches.py). SQLite probes each watch's EXISTS by the
    index whatever its statistics, in half the time of the range (13,000 watches: 23 ms,
    44)."""
    o = webhook_outbox.c
    w = watch.c
    now = bindparam("now", type_=UtcDateTime)
    hooked = select(w.id, w.webhook_url, w.party_id).where(
        w.webhook_url.is_not(None), w.webhook_disabled_at.is_(None), ~kept_gone(w.id)
    )
    if not postgresql:
        due = exists(select(literal(1)).where(o.watch_id == w.id, o.next_attempt_at <= now))
        return hooked.where(due).order_by(w.id)
    pair = tuple_(o.watch_id, o.next_attempt_at)
    first_due = (
        select(o.watch_id)
        .where(o.watch_id >= w.id, pair <= tuple_(w.id, now))
        .order_by(o.watch_id, o.next_attempt_at)
        .limit(1)
        .lateral("first_due")
    )
    return hooked.join_from(watch, first_due, true()).order_by(w.id)


def kept_gone(watch_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether the watch is kept in `webhook_gone`: its receiver answered 410 and its webhook
    waits to be turned off, or its queue to be dropped (outbox_gone.disable_gone). Nothing of it
    is leased, queued or sent meanwhile."""
    return exists(select(literal(1)).where(webhook_gone.c.watch_id == watch_id))


@lru_cache(maxsize=2)
def due_deliveries(locked: bool = False) -> Select[Any]:
    """One watch's webhook deliveries due now, oldest first, each with its event as an item
    if the watch's Party may still see the record (`visible`), else with only the ids, to be
    dropped. The rule per row, for the watch's Party. A statement per watch: its rows come by
    the `(watch_id, next_attempt_at)` index, so a receiver's lease never walks the rows of
    other receivers due before its own.

    `locked` (PostgreSQL): the page of the watch's due rows is chosen first, from the outbox
    alone, and locked (FOR UPDATE SKIP LOCKED, run once), then joined to its events and
    records. Chosen after the joins, the planner, which takes the join to the record by its
    whole key for one row, joined every due row of the watch and sorted them for the page:
    4,626 due, 60,000 buffers and 64-80 ms a lease of 64, the whole backlog read again for
    each page (a worker's round on a backlog of 18,500 took 270-390 ms of leasing). The
    other conditions are the watch's, the same for each of its rows, and every event has
    its record (retention deletes the events of the months it drops first).

    The pick's due time is bounded as a range of (watch, due time) pairs, which only the
    `(watch_id, next_attempt_at)` index can take: on a generic plan (`outbox.lease_due`),
    with `next_attempt_at <= now` the planner, which then does not know the watch's share
    of the backlog, walked `ix_webhook_outbox_next_attempt_at` and filtered the watch (on a
    store of 4 watches its custom plans did too); the range without `watch_id = $1` took the
    primary key and sorted the watch's whole backlog (13,000 watches: 4,626 rows for 64)."""
    o = webhook_outbox.c
    e = watch_event.c
    w = watch.c
    watch_id = bindparam("watch_id", type_=BigInteger)
    now: BindParameter[Any] = bindparam("now")
    lim = bindparam("lim", type_=Integer)
    page = [o.watch_id == watch_id, o.next_attempt_at <= now]
    if locked:
        pair = tuple_(o.watch_id, o.next_attempt_at)
        picked = (
            select(o.watch_id, o.event_id)
            .where(
                o.watch_id == watch_id,
                pair >= tuple_(watch_id, literal_column("'-infinity'::timestamptz")),
                pair <= tuple_(watch_id, now),
            )
            .order_by(o.next_attempt_at)
            .limit(lim)
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED")
        )
        page.append(
            tuple_(o.watch_id, o.event_id).in_(select(picked.c.watch_id, picked.c.event_id))
        )
    joined = (
        webhook_outbox.join(watch_event, and_(e.watch_id == o.watch_id, e.event_id == o.event_id))
        .join(watch, w.id == o.watch_id)
        .join(sat_record, event_record())
    )
    statement = (
        select(
            o.watch_id,
            o.event_id,
            o.attempts,
            e.matched_at,
            w.webhook_url,
            w.webhook_secret,
            visible_clause().label("visible"),
            *item_columns(with_payload=False),
            w.party_id.label("watch_party_id"),  # after the item: callers slice the item's columns
        )
        .select_from(with_item_joins(joined, with_payload=False))
        .where(
            *page,
            w.webhook_disabled_at.is_(None),
            w.webhook_url.is_not(None),
            # kept after a 410 since `due_watches` listed it (review 36c: leased and sent)
            ~kept_gone(o.watch_id),
        )
        # the index's order alone: a tie-break would sort every delivery due at the same
        # instant (a whole matched batch, a backlog behind a receiver that was down) before
        # the LIMIT could stop the walk
        .order_by(o.next_attempt_at)
        .limit(lim)
    )
    return for_party(statement, w.party_id)


def held_keys() -> Any:
    """PostgreSQL: deliveries ((watch id, event id) pairs) a worker holds, as a table of two
    columns from the arrays `watch_ids` and `event_ids`, the same statement for any number
    of them: as an IN list of pairs (two bind parameters a delivery), each round's statement
    was new text, planned again every round (256 held: planning 17.6 ms against running
    7 ms; finding 54e 1), and too new to be prepared."""
    return (
        func.unnest(
            bindparam("watch_ids", type_=ARRAY(BigInteger)),
            bindparam("event_ids", type_=ARRAY(BigInteger)),
        )
        .table_valued(column("watch_id", BigInteger), column("event_id", BigInteger))
        .render_derived(name="held")
    )


def renewed_keys() -> Any:
    """PostgreSQL: `held_keys` with the end each delivery's lease was given (`lease_ends`), as
    a third column: a renewal's deliveries and ends, the same statement for any number."""
    return (
        func.unnest(
            bindparam("watch_ids", type_=ARRAY(BigInteger)),
            bindparam("event_ids", type_=ARRAY(BigInteger)),
            bindparam("lease_ends", type_=ARRAY(UtcDateTime())),
        )
        .table_valued(
            column("watch_id", BigInteger),
            column("event_id", BigInteger),
            column("lease_end", UtcDateTime()),
        )
        .render_derived(name="held")
    )


def held_pairs(keys: list[tuple[int, int]]) -> dict[str, list[int]]:
    """The parameters of `held_keys` for these pairs."""
    return {"watch_ids": [w for w, _ in keys], "event_ids": [e for _, e in keys]}


@lru_cache(maxsize=2)
def visible_deliveries(as_arrays: bool = False) -> Select[Any]:
    """Of the leased deliveries `keys` ((watch id, event id) pairs; `as_arrays`: those of
    `held_keys`), those whose record the watch's Party may still see, its watch still there
    with its webhook on: checked again while they wait to be sent, as a registry correction
    since the lease may have hidden the record, or the receiver answered 410 to another
    worker."""
    e = watch_event.c
    w = watch.c
    joined: Any = watch_event
    which: list[ColumnElement[bool]] = []
    if as_arrays:
        held = held_keys()
        joined = held.join(
            watch_event, and_(e.watch_id == held.c.watch_id, e.event_id == held.c.event_id)
        )
    else:
        which = [tuple_(e.watch_id, e.event_id).in_(bindparam("keys", expanding=True))]
    joined = joined.join(watch, w.id == e.watch_id).join(sat_record, event_record())
    statement = (
        select(e.watch_id, e.event_id)
        .select_from(joined)
        .where(*which, visible_clause(), w.webhook_disabled_at.is_(None), ~kept_gone(w.id))
    )
    return for_party(statement, w.party_id)


@lru_cache(maxsize=4)
def failed_window(newest_first: bool, postgresql: bool) -> Select[Any]:
    """The watch `watch_id`'s deliveries that failed and wait for a retry, at most `window` of
    them in the order of their retries (`newest_first`: the retry scheduled last first, as the
    Watches page's "last error" wants it; else the next due first, as the deliverer meets
    them), each with whether its Party may still see its record (`visible`). Only those are
    counted or shown: one a registry correction hid waits in the outbox until its retry is due
    (hours, late in the schedule) and is then dropped unsent; counted meanwhile, it told the
    Party of a record it may no longer see (audit 59f).

    The window is taken from 0030's index of the failed deliveries alone, then the rule asked
    of each of its rows, for the watch's Party, as `visible_deliveries` has it: a page's read
    is bounded by the window, whatever the backlog behind it. Ruled before the limit, a
    backlog that was all hidden was walked whole on every read (200,000 of them: 5.7 s on
    PostgreSQL, 1.1 s on SQLite; audit 61c). Its OFFSET 0 keeps the EXISTS a test of each
    row: PostgreSQL does not turn a subquery with an OFFSET into a join.

    `postgresql`: the window's order is asked again for its first visible row (below). The
    windows are read with sorts off there (watches._sorts_off): an outbox PostgreSQL has
    never analysed is taken for one row, and the watch's whole backlog was sorted for each
    window (200,000: 0.3-0.5 s, audit 61h); without a sort, the walks left are of an index
    in the window's order. The watch is bounded as a range, ordered by both of the failed
    ones' index's columns (as `watches._failing`'s look), on both engines: as `watch_id = id`
    ordered by the retry time, `ix_webhook_outbox_next_attempt_at` gave that order too, and
    with the outbox analysed while two watches held it PostgreSQL walked that, filtering out
    the other watch's and the healthy deliveries (audit 63i). No other index gives the order
    now, and the outer ORDER BY names both columns, or a Sort comes back."""
    o = webhook_outbox.c
    e = watch_event.c
    w = watch.c
    watch_id = bindparam("watch_id", type_=BigInteger)
    key = [o.watch_id, o.next_attempt_at]
    failed = (
        select(o.watch_id, o.event_id, o.attempts, o.last_error, o.next_attempt_at)
        .where(o.watch_id >= watch_id, o.watch_id <= watch_id, FAILED_DELIVERY)
        .order_by(*(column.desc() for column in key) if newest_first else key)
        .limit(bindparam("window", type_=Integer))
        .subquery("failed")
    )
    f = failed.c
    joined = watch_event.join(watch, w.id == e.watch_id).join(sat_record, event_record())
    visible = for_party(
        select(literal(1))
        .select_from(joined)
        .where(e.watch_id == f.watch_id, e.event_id == f.event_id, visible_clause())
        .offset(0),
        w.party_id,
    )
    if not newest_first:  # each flagged, in no order: the caller counts them
        flag = visible.exists().label("visible")
        return select(f.attempts, f.last_error, f.next_attempt_at, flag)
    # the first visible one alone: the walk stops there. PostgreSQL keeps the window's order
    # and sorts nothing for this ORDER BY; SQLite sorted every row of the window for it, all
    # 1,001 ruled first, so it takes them in the order its co-routine yields them, the window's
    shown = select(f.attempts, f.last_error).where(visible.exists()).limit(1)
    return shown.order_by(f.watch_id.desc(), f.next_attempt_at.desc()) if postgresql else shown
