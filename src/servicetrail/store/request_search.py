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

The rule and the viewer's index rows are applied on top, as in every form.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    text,
    union_all,
)

from ..domain.ids import InvalidValue, RequestId
from ..domain.model import Responsibility
from ..domain.search import Search
from ..domain.visibility import Scope, Viewer
from .device_search import MAX_RANGE_BRANCHES
from .filters import Shape, conditions, shape_of
from .index_search import ruled_before_limit, seen_by_viewer
from .items import RECORD_COLUMNS, newest_first, page_of_candidates
from .schema import APART_FROM_REQUEST_ID_SQL, SHARED_KINDS, UtcDateTime, sat_record
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
    without_row_security: bool = False,
) -> Select[Any]:
    """The statement for another User's Request ID (adding its parameters). `intervals`: the
    viewer's Responsibility rows on the Request ID's target (`visibility_sql.intervals_query`;
    None for a search of the viewer's own traffic, which rule 3 never serves)."""
    ranges = bridged(merged_ranges([Responsibility(*row) for row in intervals or ()]))
    params[ORIGINATOR], params[TARGET] = asked.originator, asked.target
    for j, (start, end) in enumerate(ranges):
        params[f"from_{j}"], params[f"to_{j}"] = start, end
    return _statement(
        search.scope,
        shape_of(search),
        with_cursor,
        tuple(end is not None for _, end in ranges),
        bucket,
        titles_only,
        without_row_security,
    )


@lru_cache(maxsize=256)
def _statement(
    scope: Scope,
    shape: Shape,
    with_cursor: bool,
    ranges: tuple[bool, ...],
    bucket: int,
    titles_only: bool,
    without_row_security: bool,
) -> Select[Any]:
    """One branch per merged range of the viewer's on the target (`ranges`: whether each has
    an end), and one of the records apart from their Request ID; each an index range with the
    page's LIMIT. The branches share no record: a range's records follow their Request ID."""
    target = bindparam(TARGET, type_=s.device_id.type)
    origin = bindparam(ORIGINATOR, type_=s.user_id.type)
    common = [
        s.request_id == bindparam("request_id", type_=s.request_id.type),
        seen_by_viewer(scope),
        *ruled_before_limit(scope, without_row_security),
        *conditions(shape, with_cursor),
    ]
    branches: list[list[Any]] = [[text(APART_FROM_REQUEST_ID_SQL)]]
    for j, has_end in enumerate(ranges):
        when = [s.logged_at >= bindparam(f"from_{j}", type_=UtcDateTime)]
        if has_end:
            when.append(s.logged_at < bindparam(f"to_{j}", type_=UtcDateTime))
        # not apart from the Request ID (the other branch's): its User is one of the two
        follows = unindexed(s.user_id).in_([origin, target])
        # a branch a kind, not `kind IN`: SQLite skips an IN's other values when the index
        # holds nothing of the Request ID at all (an unused one), so the IN took 23 more
        # instructions for a Request ID in use; PostgreSQL read the alerts and dropped them
        branches += [
            [s.kind == literal_column(repr(kind)), unindexed(s.device_id) == target, *when, follows]
            for kind in SHARED_KINDS
        ]
    lim: ColumnElement[int] = literal_column(str(int(bucket)))
    parts = [
        select(*b.c).select_from(b)
        for b in (
            newest_first(select(*RECORD_COLUMNS).where(*common, *where)).limit(lim).subquery()
            for where in branches
        )
    ]
    found = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("found")
    # the page's own LIMIT on top keeps SQLite from copying the items' joins and the rule
    # into every branch: 0.17 ms a run and 0.87 to prepare, against 0.08 and 0.39 (1M)
    candidate = (
        select(*found.c)
        .order_by(found.c.logged_at.desc(), found.c.id.desc())
        .limit(lim)
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, titles_only=titles_only)


def bridged(ranges: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Disjoint ranges (oldest first), at most MAX_RANGE_BRANCHES: past that (more than a
    registry holds for one Device and Party) one range from the first's start to the last's
    end, where the viewer's index rows keep out what it may not see. A hidden record
    between the viewer's ranges then costs its probe. Falling back to reading every record
    of the Request ID, as this search did, told the time of another's exchange at any time,
    and on the read's generic plan hashed every index row of the viewer's for a Request ID
    that had a record (PostgreSQL, 7,000 rows: 2.7 ms against 0.9); bridging only the
    shortest gaps down to 32 ranges, 97 branches, took 13 ms (audit 48h)."""
    if len(ranges) <= MAX_RANGE_BRANCHES:
        return ranges
    return [(ranges[0][0], ranges[-1][1])]


def unindexed(column: ColumnElement[str]) -> ColumnElement[str]:
    """The column (never NULL) as no index serves it, so that the identity index leads: with
    the Device's or the Users' own index, SQLite (no statistics) read every record of the
    Device, or of the sender, in the viewer's range, for each of them the trail's row."""
    return func.coalesce(column, "")


__all__ = ["others_request", "request_search"]
