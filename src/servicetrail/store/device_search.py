"""The interval-first form of a search by Device (see visibility_sql): the newest `lim` rows
of each of the viewer's User IDs on the Device, and of each Responsibility range of the
viewer on it, each one ordered index range; then the rule itself, on top, over those few
candidates, and the page. A busy Device's other rows are never read.

The ranges go in as values, one row a range, each the outer row of an index seek with the
page's LIMIT: on PostgreSQL arrays into a lateral seek (`_over_the_ranges`); on SQLite a JSON
array, through `json_each` for one range (`_over_the_ranges_sqlite`) and past one by a
recursive walk, newest first, that stops at a full page (`_walking_the_ranges_sqlite`). One
statement for any number of ranges. Each seek's only bounds on time are its range's, cut in
Python to the search's time filters and cursor (`cut_ranges`): with those filters beside the
range's own bounds, the engine seeks by one pair and filters by the other, and SQLite sought
by the search's and read every record of the Device between the viewer's ranges in that
window (a record it may not see cost its row: 50,727 instructions against 1,727 for none, 42
ranges; and past 32 ranges the general form read every record of the Device newer than the
page: BENCHMARKS.md, session 51).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    Text,
    bindparam,
    cast,
    column,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)

from ..domain.model import Responsibility
from ..domain.search import Search
from ..domain.visibility import Scope, Viewer
from .filters import FILTERS, Shape, conditions, device_param, shape_of
from .items import RECORD_COLUMNS, newest_first, page_of_candidates
from .schema import SQLITE_OPEN_END, UtcDateTime, sat_record, sqlite_time
from .visibility_sql import merged_ranges, mp141_range, own_rows

s = sat_record.c
# Past this, a device search uses the general form, which reads every record of the Device
# newer than the page and so takes as long as there are records the viewer may not see
# (audit 21d: 18 ms against 2.6 for a Party of 9 User IDs, past 20,000 hidden records). A
# Party holds a User ID per role: this is well past what the registry holds, and the
# statement shapes stay bounded.
MAX_OWN_BRANCHES = 32


@lru_cache(maxsize=512)
def device_statement(
    scope: Scope,
    shape: Shape,
    with_cursor: bool,
    own_branches: int,
    in_ranges: str | None,
    titles_only: bool = False,
) -> Select[Any]:
    """Each branch reads whole (narrow) records, so the page is not joined back to the trail,
    and a payload is read only for the viewer's own rows: on PostgreSQL, joining back and
    probing payloads for every row cost more than twice as much (BENCHMARKS.md).

    The viewer's own non-device requests about the device (`subject_device_id`) come through
    one more branch a User ID, unless the search is of the requests on the Device alone.
    `in_ranges` ("sqlite", "postgresql" or None: the viewer holds no range in the search's
    window): the branch of the viewer's ranges, in that engine's form."""
    on_device = conditions(shape, with_cursor, device=s.device_id == device_param())
    on_subject = conditions(shape, with_cursor, device=s.subject_device_id == device_param())
    lim = bindparam("lim", type_=Integer)
    branches = [(on_device, own_rows(f"own_{i}")) for i in range(own_branches)]
    # per User ID too, as the subject's index is (0017): one branch for all of them read
    # every User's requests naming the Device, and took as long as there were (audit 21b)
    if "device_id" in shape:
        branches += [(on_subject, own_rows(f"own_{i}")) for i in range(own_branches)]
    # each branch is wrapped in a subquery: SQLite allows ORDER BY / LIMIT only on a whole compound
    parts = [
        select(*b.c).select_from(b)
        for b in (
            newest_first(select(*RECORD_COLUMNS).where(*where, rule)).limit(lim).subquery()
            for where, rule in branches
        )
    ]
    if in_ranges == "sqlite":
        parts.append(_over_the_ranges_sqlite(shape, with_cursor))
    elif in_ranges == "sqlite-walk":
        parts.append(_walking_the_ranges_sqlite(shape, with_cursor))
    elif in_ranges is not None:
        parts.append(_over_the_ranges(shape, with_cursor))
    # the page's candidates alone, before the rule and the items' joins: without this LIMIT
    # SQLite copied them into every branch and ran them on every branch's rows (32 ranges at
    # 1M: 62 ms, 400,209 instructions, against 7.5 ms, 108,212; BENCHMARKS.md, session 50),
    # and the ranges' branch holds up to `lim` rows a range.
    # Every branch's rows are ones the rule grants (own, or rule 3 in the viewer's range), so
    # the rule on top drops none and the page is whole.
    found = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("found")
    candidate = (
        select(*found.c)
        .order_by(found.c.logged_at.desc(), found.c.id.desc())
        .limit(lim)
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, titles_only=titles_only)


RANGES, RANGE_STARTS, RANGE_ENDS = "ranges", "range_starts", "range_ends"


def _in_a_range(shape: Shape, with_cursor: bool) -> list[ColumnElement[bool]]:
    """The search's filters but those on time, which cut the ranges themselves
    (`cut_ranges`), and of the cursor only what tells records of its own time apart."""
    when: list[ColumnElement[bool]] = [s.device_id == device_param()]
    when += [FILTERS[name][0](s) for name in shape if name in FILTERS and name not in _ON_TIME]
    if with_cursor:
        at = bindparam("cursor_at", type_=UtcDateTime)
        when.append(or_(s.logged_at != at, s.id < bindparam("cursor_id", type_=s.id.type)))
    return when


_ON_TIME = ("time_from", "time_to")


def _over_the_ranges_sqlite(shape: Shape, with_cursor: bool) -> Select[Any]:
    """SQLite's: the viewer's ranges as one JSON array (`json_each`), a row a range, each the
    outer row of a correlated `id IN (... LIMIT)` that seeks the Device's shared records in
    that range alone. SQLite has no LATERAL: the LIMIT inside the IN is what keeps a busy
    range from being read whole."""
    held = func.json_each(bindparam(RANGES, type_=Text)).table_valued("value").alias("held")
    start, end = (func.json_extract(held.c.value, literal_column(f"'$[{i}]'")) for i in range(2))
    lim = bindparam("lim", type_=Integer)
    when = [*_in_a_range(shape, with_cursor), mp141_range(start, end)]
    newest = newest_first(select(s.id).where(*when)).limit(lim)
    found = sat_record.alias("in_range")
    return (
        select(*(found.c[c.name] for c in RECORD_COLUMNS))
        .select_from(held, found)
        .where(found.c.id.in_(newest))
    )


def _walking_the_ranges_sqlite(shape: Shape, with_cursor: bool) -> Select[Any]:
    """SQLite's, past one range: a recursive walk of the ranges, newest first, that stops
    once the page is full. Each range is read as in `_over_the_ranges_sqlite` (its newest
    `lim` rows, by a correlated `id IN (... LIMIT)`), but from a marker row that the walk
    takes off its queue only when every row of the newer ranges has gone before it: the
    queue is ordered by range, then marker last, then time, and the walk is read up to the
    page's LIMIT, so a range older than the page is never read. Over `json_each`, whose order
    SQLite does not know, every range read its newest page and all were sorted: 2,100-2,600
    instructions a range at 1M (BENCHMARKS.md, session 51)."""
    ranges = bindparam(RANGES, type_=Text)
    lim = bindparam("lim", type_=Integer)
    one: ColumnElement[int] = literal_column("1")
    zero: ColumnElement[int] = literal_column("0")
    seed: Select[Any] = select(
        literal_column("-1").label("k"),
        one.label("marker"),
        null().label("id"),
        null().label("logged_at"),
    )
    walk = seed.cte("walk", recursive=True)
    w = walk.alias("w")
    k = w.c.k + one
    start, end = (func.json_extract(ranges, func.printf(f"$[%d][{i}]", k)) for i in range(2))
    when = [*_in_a_range(shape, with_cursor), mp141_range(start, end)]
    newest = newest_first(select(s.id).where(*when)).limit(lim)
    row = sat_record.alias("in_range")
    its_rows = select(k, zero, row.c.id, row.c.logged_at).where(
        w.c.marker == one, row.c.id.in_(newest)
    )
    next_marker = select(k, one, null(), null()).where(
        w.c.marker == one, k + one < func.json_array_length(ranges)
    )
    steps = seed.union_all(its_rows, next_marker)
    c = steps.selected_columns
    # SQLAlchemy has no ORDER BY for a recursive CTE: this is its `union_all`, ordered
    walk = CTE._construct(
        steps.order_by(c.k, c.marker, c.logged_at.desc(), c.id.desc()),
        name="walk",
        recursive=True,
        _restates=walk,
    )
    taken = select(walk.c.id).where(walk.c.marker == zero).limit(lim).subquery("taken")
    found = sat_record.alias("walked")
    return select(*(found.c[c.name] for c in RECORD_COLUMNS)).where(found.c.id == taken.c.id)


def _over_the_ranges(shape: Shape, with_cursor: bool) -> Select[Any]:
    """PostgreSQL's: the viewer's ranges as two arrays, a row a range, each the outer row of a
    lateral seek of the Device's shared records in that range with the page's LIMIT."""
    when = DateTime(timezone=True)
    held = (
        func.unnest(
            bindparam(RANGE_STARTS, type_=ARRAY(when)),
            # as text, an open end 'infinity' (as request_search's: no datetime is past all)
            cast(bindparam(RANGE_ENDS, type_=ARRAY(Text)), ARRAY(when)),
        )
        .table_valued(column("start", when), column("end", when), with_ordinality="newer")
        .render_derived(name="held")
    )
    lim = bindparam("lim", type_=Integer)
    where = [*_in_a_range(shape, with_cursor), mp141_range(held.c.start, held.c.end)]
    seek = newest_first(select(*RECORD_COLUMNS).where(*where)).limit(lim).lateral("in_range")
    # the ranges newest first, and disjoint: in their order, the page's order, which the
    # planner knows of the ordinality's, so that it sorts a range at a time and stops at the
    # page's LIMIT (Incremental Sort), not reading every range's newest `lim` rows
    newest = (
        select(*seek.c)
        .select_from(held)
        .join(seek, true())
        .order_by(held.c.newer, seek.c.logged_at.desc(), seek.c.id.desc())
        .limit(lim)
        .subquery()
    )
    return select(*newest.c).select_from(newest)


# times are kept to the microsecond (SQLite's text, PostgreSQL's timestamptz): a record at or
# before the cursor's time is one before the next microsecond
_NEXT = timedelta(microseconds=1)


def cut_ranges(
    ranges: list[tuple[datetime, datetime | None]], search: Search, cursor_at: datetime | None
) -> list[tuple[datetime, datetime | None]]:
    """The viewer's ranges cut to the search's time filters and to the cursor's time, those
    left empty left out."""
    upper = [t for t in (search.time_to, cursor_at and _next(cursor_at)) if t is not None]
    cut = []
    for start, end in ranges:
        start = max(start, search.time_from) if search.time_from else start
        end = min([*upper, *([end] if end else [])], default=None)
        if end is None or start < end:
            cut.append((start, end))
    return cut


def _next(at: datetime) -> datetime | None:
    """The next microsecond; None past the last one there is (no record is after it)."""
    try:
        return at + _NEXT
    except OverflowError:
        return None


def range_values(ranges: list[tuple[datetime, datetime | None]], on_sqlite: bool) -> dict[str, Any]:
    """The parameters of the ranges' branch, the ranges newest first (as the walk and
    `_over_the_ranges` read them)."""
    newest = ranges[::-1]
    if on_sqlite:
        held = [[sqlite_time(a), sqlite_time(b) if b else SQLITE_OPEN_END] for a, b in newest]
        return {RANGES: json.dumps(held)}
    return {
        RANGE_STARTS: [a for a, _ in newest],
        RANGE_ENDS: [b.isoformat() if b else "infinity" for _, b in newest],
    }


# one statement for every search that may see nothing: store.compiled_statements compiles a
# statement object once, and a new one a search was compiled each time, and its 64th
# cleared the compiled form of every device search in the process (450 of the 616
# compilings of tests/store/test_visibility_property.py's 20 worlds)
_SEES_NOTHING = select(s.id).where(false())


def device_search(
    viewer: Viewer,
    search: Search,
    with_cursor: bool,
    params: dict[str, Any],
    intervals: list[tuple[Any, ...]] | None,
    titles_only: bool = False,
    on_sqlite: bool = False,
) -> Select[Any] | None:
    """The interval-first statement for this device search (adding its parameters), or
    None when the general form should be used. `intervals`: the rows of
    `visibility_sql.intervals_query` (None for a search of the viewer's own traffic)."""
    user_ids = sorted(viewer.user_ids) if search.scope is not Scope.OTHERS else []
    if len(user_ids) > MAX_OWN_BRANCHES:
        return None
    for i, user_id in enumerate(user_ids):
        params[f"own_{i}"] = user_id
    ranges = merged_ranges([Responsibility(*row) for row in intervals or ()])
    ranges = cut_ranges(ranges, search, params.get("cursor_at") if with_cursor else None)
    if not user_ids and not ranges:
        return _SEES_NOTHING  # the viewer may see nothing on this device
    params.update(range_values(ranges, on_sqlite) if ranges else {})
    return device_statement(
        search.scope,
        shape_of(search),
        with_cursor,
        len(user_ids),
        _form(len(ranges), on_sqlite),
        titles_only,
    )


def _form(ranges: int, on_sqlite: bool) -> str | None:
    """The form of the ranges' branch (`device_statement`'s `in_ranges`) for that many ranges.
    SQLite walks two or more (`_walking_the_ranges_sqlite`); one it reads through `json_each`,
    which costs less than a walk's steps there: 8,475 instructions against 10,378 (1M, the
    persona case of issue 12; BENCHMARKS.md, session 52)."""
    if not ranges:
        return None
    if not on_sqlite:
        return "postgresql"
    return "sqlite" if ranges == 1 else "sqlite-walk"
