"""A search by another User's Request ID, read where the viewer may see it and nowhere else.

A Request ID names its sender and its Device (`originator:target:counter`). As DUIS writes
them, the records carrying it are from or to one of those two Users and, of the kinds rule 3
shares, about that Device. So a viewer holding neither User ID can see such a record only by
rule 3, on the target, in one of its own Responsibility intervals there: the search reads
the trail's identity index in those ranges alone (a seek a shared kind and range: the kind,
the index's second column, keeps alerts out), plus a partial index of the records that do
not follow their Request ID (`schema.APART_FROM_REQUEST_ID_SQL`), so that none is missed.
Other Users' records of the Request ID outside the viewer's intervals are never read, so a
Request ID in use by someone else costs what an unused one does (audit 47f 1: reading every
record of it and keeping those the viewer has an index row for, the search took 83 SQLite
instructions against 50, +20 us). What is left: a hidden record apart from its Request ID (a
SAT JSON Lines record naming another User or Device than its Request ID; DUIS-shaped traffic
has none, a generated million none) still costs its probe. The viewer's own Request IDs (it
is their sender or, for an alert, their addressee) keep that form
(`index_search.request_statement`): their records are its own.

The viewer's ranges go in as values, a row a shared kind and range, any number of them, each
row the outer one of an index seek: on PostgreSQL as arrays into a lateral branch
(`_over_the_ranges`), on SQLite as a JSON array through `json_each` (`_over_the_ranges_sqlite`).

The rule and the viewer's index rows are applied on top, as in every form.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    FromClause,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    union_all,
)

from ..domain.ids import InvalidValue, RequestId
from ..domain.model import Responsibility
from ..domain.search import Search
from ..domain.visibility import Scope, Viewer
from .filters import Shape, conditions, shape_of
from .index_search import rule_before_limit, seen_by_viewer
from .indexed_by import indexed_by
from .items import RECORD_COLUMNS, newest_first, page_of_candidates
from .schema import (
    APART_FROM_REQUEST_ID_SQL,
    SHARED_KINDS,
    SQLITE_OPEN_END,
    sat_record,
    sqlite_time,
)
from .visibility_sql import merged_ranges

s = sat_record.c
ORIGINATOR, TARGET = "request_originator", "request_target"


def others_request(viewer: Viewer, search: Search) -> RequestId | None:
    """The searched Request ID when it is another User's (the viewer is neither its sender nor
    its addressee) and written as the loaders store it, else None: the viewer's own, and an
    odd text, are searched as before."""
    if not search.request_id:
        return None
    try:
        asked = RequestId.parse(search.request_id)
    except InvalidValue:  # matches nothing stored as the loaders write it
        return None
    if asked.originator in viewer.user_ids or asked.target in viewer.user_ids:
        return None
    # The branches tell the records apart by the stored text's parts (the partial index) and
    # by the parsed ones: they agree only when the searched text, which the stored one
    # equals, is the parsed one written out. Another (a record page asks by the Request ID
    # as stored, and the writer keeps lower case) put a record in both, listed twice.
    return asked if str(asked) == search.request_id else None


def request_search(
    search: Search,
    asked: RequestId,
    with_cursor: bool,
    params: dict[str, Any],
    intervals: list[tuple[Any, ...]] | None,
    bucket: int,
    titles_only: bool = False,
    on_sqlite: bool = False,
) -> Select[Any]:
    """The statement for another User's Request ID (adding its parameters). `intervals`: the
    viewer's Responsibility rows on the Request ID's target (`visibility_sql.intervals_query`;
    None for a search of the viewer's own traffic, which rule 3 never serves)."""
    merged = merged_ranges([Responsibility(*row) for row in intervals or ()])
    params[ORIGINATOR], params[TARGET] = asked.originator, asked.target
    if not on_sqlite:
        pairs = [(kind, start, end) for start, end in merged for kind in SHARED_KINDS]
        params[RANGE_KINDS] = [kind for kind, _, _ in pairs]
        params[RANGE_STARTS] = [start for _, start, _ in pairs]
        # as text, an open end 'infinity' (no datetime is past every stored time): coalesce()
        # in the statement kept the end out of the index seek, and row security checked the
        # rule on another's record past the range
        params[RANGE_ENDS] = [end.isoformat() if end else "infinity" for _, _, end in pairs]
        return _over_the_ranges(search.scope, shape_of(search), with_cursor, bucket, titles_only)
    params[RANGES] = json.dumps(
        [
            [kind, sqlite_time(start), sqlite_time(end) if end else SQLITE_OPEN_END]
            for start, end in merged
            for kind in SHARED_KINDS
        ]
    )
    return _over_the_ranges_sqlite(search.scope, shape_of(search), with_cursor, bucket, titles_only)


RANGE_KINDS, RANGE_STARTS, RANGE_ENDS = "range_kinds", "range_starts", "range_ends"


@lru_cache(maxsize=64)
def _over_the_ranges(
    scope: Scope, shape: Shape, with_cursor: bool, bucket: int, titles_only: bool
) -> Select[Any]:
    """PostgreSQL's form: the viewer's ranges on the target as arrays, a row a shared kind and
    range, each the outer row of a lateral index seek with the page's LIMIT; the statement,
    and its generic plan, are the same for one range or a hundred. With a branch a kind and
    range written out, each range cost ~0.45 ms at 1M (three branches over every monthly
    partition to lock and prune), and past 32 the search took one range from the first's
    start to the last's end, where another's record between two ranges cost a row more than
    none (audit 48h; BENCHMARKS.md, session 49)."""
    pairs = (
        func.unnest(
            bindparam(RANGE_KINDS, type_=ARRAY(Text)),
            bindparam(RANGE_STARTS, type_=ARRAY(DateTime(timezone=True))),
            cast(bindparam(RANGE_ENDS, type_=ARRAY(Text)), ARRAY(DateTime(timezone=True))),
        )
        .table_valued(
            column("kind", Text),
            column("start", DateTime(timezone=True)),
            column("end", DateTime(timezone=True)),
        )
        .render_derived(name="kind_range")
    )
    when = [s.kind == pairs.c.kind, s.logged_at >= pairs.c.start, s.logged_at < pairs.c.end]
    seek = _newest(scope, shape, with_cursor, bucket, [*when, *_follows()], ruled=False)
    apart = _newest(
        scope, shape, with_cursor, bucket, [text(APART_FROM_REQUEST_ID_SQL), _apart()], ruled=False
    ).subquery()
    in_range = seek.lateral("in_range")
    parts = [
        select(*apart.c).select_from(apart),
        select(*in_range.c).select_from(pairs).join(in_range, true()),
    ]
    return _page(parts, scope, bucket, titles_only)


RANGES = "ranges"


@lru_cache(maxsize=64)
def _over_the_ranges_sqlite(
    scope: Scope, shape: Shape, with_cursor: bool, bucket: int, titles_only: bool
) -> Select[Any]:
    """SQLite's form: the viewer's ranges on the target as one JSON array, a row a shared kind
    and range (`json_each`), each the outer row of a seek of the identity index; the same
    statement for any number of ranges. SQLite has no LATERAL, so the page's LIMIT is over
    all of the ranges' records, not each range's: all of them follow their Request ID in the
    viewer's ranges, records rule 3 grants; a record of another's outside them is never read
    (tests/store/test_request_search_work.py).

    It wrote a branch a kind and range, up to 32 ranges (97 branches: ~11 ms at 1M against
    ~0.8 now), and past that one range from the first's start to the last's end, where
    another's record between two of the viewer's cost its probe: 302 instructions against
    185 for an unused Request ID (BENCHMARKS.md, session 50).

    The rule before the LIMIT (`rule_before_limit`) only in the branch of the records apart
    from their Request ID, where it can drop one: checked in the ranges too, where rule 3
    grants them, it cost 15-40% more (1M, 1-8 ranges, session 49).

    That branch names its index: after an `ANALYZE` (an operator's; the service runs none)
    SQLite read it by the identity index, as the partial one, empty, gets no statistics:
    every record of the Request ID, so another's hidden one cost its row again (384
    instructions against 292 at 4 ranges, 1M; session 50)."""
    pairs = func.json_each(bindparam(RANGES, type_=Text)).table_valued("value").alias("kind_range")
    kind, start, end = (
        func.json_extract(pairs.c.value, literal_column(f"'$[{i}]'")) for i in range(3)
    )
    when = [s.kind == kind, s.logged_at >= start, s.logged_at < end, *_follows()]
    in_ranges = _newest(scope, shape, with_cursor, bucket, when, ruled=False, outer=pairs)
    apart = _newest(
        scope,
        shape,
        with_cursor,
        bucket,
        [text(APART_FROM_REQUEST_ID_SQL)],
        ruled=True,
        outer=indexed_by(sat_record, "ix_sat_record_apart_request"),
    )
    parts = [select(*b.c).select_from(b) for b in (apart.subquery(), in_ranges.subquery())]
    return _page(parts, scope, bucket, titles_only)


def _follows() -> list[ColumnElement[bool]]:
    """A record that follows its Request ID (not apart from it, the other branch's): about the
    target, from or to one of the two Users."""
    target = bindparam(TARGET, type_=s.device_id.type)
    origin = bindparam(ORIGINATOR, type_=s.user_id.type)
    return [unindexed(s.device_id) == target, unindexed(s.user_id).in_([origin, target])]


def _apart() -> ColumnElement[bool]:
    """`APART_FROM_REQUEST_ID_SQL` of the searched Request ID, said by its parsed parts, in
    comparisons of columns alone, which PostgreSQL knows cannot leak a row: it may check them
    before row security, never the index's own text (`substr` may leak). Where the planner
    reads a partition whole (a few rows, after an ANALYZE) and not by the partial index, a
    record of another's that follows the Request ID then fails them before the rule is
    checked on it: checked first, the rule's look-up ran for it, and not for an unused
    Request ID (finding 51f 1)."""
    target = bindparam(TARGET, type_=s.device_id.type)
    origin = bindparam(ORIGINATOR, type_=s.user_id.type)
    return or_(
        s.user_id.not_in([origin, target]),
        and_(s.kind.in_(SHARED_KINDS), s.device_id.not_in(["", target])),
    )


def _newest(
    scope: Scope,
    shape: Shape,
    with_cursor: bool,
    bucket: int,
    where: list[Any],
    ruled: bool,
    outer: FromClause | None = None,
) -> Select[Any]:
    """The newest `bucket` records of the Request ID that the viewer has an index row for,
    where `where` holds (`ruled`: and the rule, `rule_before_limit`); `outer`: the rows
    that `where` seeks the trail by, first in the FROM, or the trail as one index reads it
    (`indexed_by`)."""
    common = [
        s.request_id == bindparam("request_id", type_=s.request_id.type),
        seen_by_viewer(scope),
        *([rule_before_limit(scope)] if ruled else []),
        *conditions(shape, with_cursor),
    ]
    lim: ColumnElement[int] = literal_column(str(int(bucket)))
    query = select(*RECORD_COLUMNS)
    if outer is not None:
        query = query.select_from(outer, sat_record)
    return newest_first(query.where(*common, *where)).limit(lim)


def _page(parts: list[Select[Any]], scope: Scope, bucket: int, titles_only: bool) -> Select[Any]:
    """The page over the branches' candidates: their own LIMIT on top keeps SQLite from
    copying the items' joins and the rule into every branch: 0.17 ms a run and 0.87 to
    prepare, against 0.08 and 0.39 (1M)."""
    found = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("found")
    candidate = (
        select(*found.c)
        .order_by(found.c.logged_at.desc(), found.c.id.desc())
        .limit(literal_column(str(int(bucket))))
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, titles_only=titles_only)


def unindexed(column: ColumnElement[str]) -> ColumnElement[str]:
    """The column (never NULL) as no index serves it, so that the identity index leads: with
    the Device's or the Users' own index, SQLite (no statistics) read every record of the
    Device, or of the sender, in the viewer's range, for each of them the trail's row."""
    return func.coalesce(column, "")


__all__ = ["others_request", "request_search"]
