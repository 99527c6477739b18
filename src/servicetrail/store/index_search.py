"""Searches without a Device, and look-ups by record id, through the per-Party visibility
index (`sat_visibility`, kept by store.visibility_index): the newest `lim` index rows of the
viewer's Party per rule the scope wants, one ordered index range each, then the records they
point at, with the rule and the search's filters applied again on top. The time depends on
the page, not on the trail: the index is read in order and stops at the page's end.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    select,
    union_all,
)

from ..domain.visibility import Scope
from .filters import FILTERS, Shape, after_cursor, conditions
from .items import RECORD_COLUMNS, page_of_candidates
from .schema import sat_record, sat_visibility
from .visibility_index import MP141, OWN
from .visibility_sql import VIEWER_PARTY, visible_clause

s = sat_record.c
v = sat_visibility.c
SCOPE_ACCESS = {Scope.OWN: (OWN,), Scope.OTHERS: (MP141,), Scope.ALL: (OWN, MP141)}
# How many rows each branch reads, written into the statement rather than bound: PostgreSQL
# plans these statements once (a generic plan: planning them afresh over every monthly
# partition cost more than the search), and with the LIMIT a parameter it cannot tell a page
# from the whole trail, and planned a hash join over every record (BENCHMARKS.md). The page's
# own limit stays a parameter on top.
ROW_BUCKETS = (11, 51, 101, 201, 501, 1001)


def rows_bucket(wanted: int) -> int:
    """The smallest bucket of at least `wanted` rows (the largest page plus one at most)."""
    return next((b for b in ROW_BUCKETS if b >= wanted), ROW_BUCKETS[-1])


def _party() -> BindParameter[str]:
    return bindparam(VIEWER_PARTY, type_=v.party_id.type)


@lru_cache(maxsize=512)
def index_keys_statement(
    scope: Scope, shape: Shape, with_cursor: bool, bucket: int
) -> Select[Any] | CompoundSelect[Any]:
    """Step one: the (record_id, logged_at) of the page's candidates, from the index alone. The
    filters are checked on the index's own copy of the title fields (a search by Device or by
    Request ID takes another form). `bucket`: rows_bucket of the page's limit."""
    lim: ColumnElement[int] = literal_column(str(int(bucket)))
    where = [v.party_id == _party(), *(FILTERS[name][0](v) for name in shape if name in FILTERS)]
    if with_cursor:
        where.append(after_cursor(v.logged_at, v.record_id))
    parts = [
        select(*b.c).select_from(b)
        for b in (
            select(v.record_id, v.logged_at)
            .where(v.access == code, *where)
            .order_by(v.logged_at.desc(), v.record_id.desc())
            .limit(lim)
            .subquery()
            for code in SCOPE_ACCESS[scope]
        )
    ]
    return parts[0] if len(parts) == 1 else union_all(*parts)


@lru_cache(maxsize=256)
def index_records_statement(scope: Scope, shape: Shape, titles_only: bool = False) -> Select[Any]:
    """Step two: those records, by id and time, with the rule and the filters on top.

    Two statements, not one: on PostgreSQL, one statement joining the index to the trail had
    to open every monthly partition of the trail (a plan made before the times are known),
    most of the search's time; given the times as values, the planner opens only the months
    the page falls in.

    The cursor is not applied again: step one's keys are past it already, and its time range
    led SQLite's planner to walk the viewer's own records by User ID and time instead of
    fetching the page's ids (a next page of the biggest supplier's own traffic at 10M took
    82 ms, the first 5 ms)."""
    candidate = (
        select(*RECORD_COLUMNS)
        .where(
            s.id.in_(bindparam("record_ids", expanding=True, type_=s.id.type)),
            s.logged_at.in_(bindparam("record_times", expanding=True, type_=s.logged_at.type)),
        )
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, conditions(shape, with_cursor=False), titles_only)


def seen_by_viewer(scope: Scope, probe_each: bool = False) -> ColumnElement[bool]:
    """The record has the viewer's index row for an access the scope wants. EXISTS, not a
    join: a join let SQLite walk all of the viewer's index rows and probe the trail for each;
    this way the trail's index leads, on both engines.

    `probe_each`: an index probe for each record, in any plan. PostgreSQL turns an EXISTS
    into a semi-join, which a generic plan, not knowing how few records a Request ID has,
    ran as a hash of all of the viewer's index rows (112,840 rows, 0.5 s at 1M); OFFSET 0
    keeps it a subplan run per record (BENCHMARKS.md, session 49)."""
    probe: Select[Any] = select(literal_column("1")).where(
        v.party_id == _party(),
        v.access.in_(SCOPE_ACCESS[scope]),
        v.logged_at == s.logged_at,
        v.record_id == s.id,
    )
    return (probe.offset(literal_column("0")) if probe_each else probe).exists()


def rule_before_limit(scope: Scope) -> ColumnElement[bool]:
    """The rule as a term of a Request ID's probe, before its LIMIT, for where the engine has
    no row security to apply it there (SQLite). Applied after the LIMIT alone, it dropped
    the index rows gone stale after the page was counted: the page came back short with no
    next cursor, though more records were the viewer's (audit 48h 5). Its record is read
    already, past the viewer's index row, so a hidden one costs no more than before. Inside a
    function, so that no index serves it: SQLite (no statistics) would walk the viewer's own
    records by User ID instead of the Request ID's."""
    return func.coalesce(visible_clause(scope), false())


@lru_cache(maxsize=256)
def request_statement(
    scope: Scope,
    shape: Shape,
    with_cursor: bool,
    bucket: int,
    titles_only: bool = False,
    without_row_security: bool = False,
) -> Select[Any]:
    """A search by one of the viewer's own Request IDs (another User's: store.request_search):
    the trail's identity index gives the few records that carry it, and each is kept only
    past the viewer's index row for it. The page's LIMIT also keeps the engine from merging
    the rule into the probe. Another Party's records of it cost a probe each (audit 47f 1),
    which is why it serves only Request IDs whose records are the viewer's."""
    candidate = (
        select(*RECORD_COLUMNS)
        .where(
            s.request_id == bindparam("request_id", type_=s.request_id.type),
            seen_by_viewer(scope, probe_each=not without_row_security),
            *([rule_before_limit(scope)] if without_row_security else []),
            *conditions(shape, with_cursor),
        )
        .order_by(s.logged_at.desc(), s.id.desc())
        .limit(literal_column(str(int(bucket))))
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, titles_only=titles_only)


@lru_cache(maxsize=2)
def record_statement(head_only: bool = False) -> Select[Any]:
    """One record, read only past the viewer's index row for it: a record the viewer may not
    see costs what a missing one does (a probe of the viewer's own index rows that finds
    nothing), so the answer's time does not tell one from the other (issue 10 finding 7).

    The probe comes first and alone: when the record's row was read first (for the time
    that keys the index), a hidden record cost a row read and an index probe more than a
    missing one, and on PostgreSQL the row-level-security rule over that row, which reads
    `responsibility` (bench/timing.py, tests/store/test_lookup_work.py). Its LIMIT keeps
    either engine from merging it into the join and starting from the record again.
    `head_only`: an own payload's head (`items.payload_head`), for a read that shows none."""
    found = (
        select(v.record_id, v.logged_at)
        .where(
            v.party_id == _party(),
            v.record_id == bindparam("record_id", type_=v.record_id.type),
            v.access.in_((OWN, MP141)),
        )
        .limit(1)
        .subquery("found")
    )  # a Party has one index row per record it may see
    # the record by id and time (the time selects the month's partition)
    candidate = (
        select(*RECORD_COLUMNS).select_from(
            found.join(
                sat_record, and_(s.id == found.c.record_id, s.logged_at == found.c.logged_at)
            )
        )
    ).subquery("candidate")
    return page_of_candidates(candidate, Scope.ALL, whole_payload=not head_only)
