"""The visibility rule of `domain.visibility`, compiled to SQL.

Every read of SAT records (lists, look-ups, counts, exports) filters through these
clauses; `tests/store/test_visibility_property.py` proves they agree with `decide()`.

The viewer enters as named bind parameters (`viewer_params`), never as literals: a
statement built once from these clauses has the same structure for every viewer, so it
is built once per shape and SQLAlchemy compiles it once (store.queries caches them).
A statement that is executed without the viewer's parameters fails; it cannot fall back
to another viewer.

Two forms of the same rule:
- `visible_clause`: a predicate on any SAT record (the general form, and the authority);
- `own_rows` / `mp141_range`: the rule read interval by interval, for a device search
  (rule 1 per User ID, rule 3 per Responsibility interval of that device and viewer),
  so that the engine reads only rows the viewer may see. store.queries re-applies
  `visible_clause` on top, so this form can only narrow the candidates, never widen them.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Boolean,
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    exists,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from ..domain.model import Responsibility
from ..domain.visibility import Access, Scope, Viewer
from .schema import SHARED_KINDS, responsibility, sat_record

VIEWER_PARTY = "viewer_party_id"
VIEWER_USER_IDS = "viewer_user_ids"
# The same User IDs under another name, for NOT IN. SQLAlchemy expands an expanding
# parameter once per name: when one name served both IN and NOT IN in a statement, an
# empty set rendered NOT IN as the empty IN ("... AND (1 != 1)", false), so a Party with no
# User IDs lost its MP141 rows. The property test's Party without User IDs caught it.
VIEWER_USER_IDS_NOT = "viewer_user_ids_not"


def viewer_params(viewer: Viewer) -> dict[str, Any]:
    """The bind parameters every clause of this module needs."""
    ids = sorted(viewer.user_ids)
    return {VIEWER_PARTY: viewer.party_id, VIEWER_USER_IDS: ids, VIEWER_USER_IDS_NOT: ids}


def _party() -> BindParameter[Any]:
    return bindparam(VIEWER_PARTY, type_=responsibility.c.party_id.type)


def own_clause() -> ColumnElement[bool]:
    """Rule 1: the message came from or went to one of the viewer's User IDs.

    An expanding parameter: an empty set of User IDs renders the engine's empty IN, false."""
    return sat_record.c.user_id.in_(
        bindparam(VIEWER_USER_IDS, expanding=True, type_=sat_record.c.user_id.type)
    )


def not_own_clause() -> ColumnElement[bool]:
    """Rule 1 does not hold (see VIEWER_USER_IDS_NOT for why this is not `~own_clause()`)."""
    return sat_record.c.user_id.not_in(
        bindparam(VIEWER_USER_IDS_NOT, expanding=True, type_=sat_record.c.user_id.type)
    )


def mp141_kinds_clause() -> ColumnElement[bool]:
    """Rule 2 (and the kinds rule 3 speaks of): only requests, acknowledgements and responses
    of a device are shared; alerts never are, nor non-device messages."""
    s = sat_record.c
    # literals, as the partial index on them says it: a device search's rule 3 range reads
    # that index, which holds no alert, so its time tells nothing of the alerts it cannot show
    kinds: list[ColumnElement[Any]] = [literal_column(repr(kind)) for kind in SHARED_KINDS]
    return and_(s.kind.in_(kinds), s.device_id != "")


def held_clause(
    device_id: ColumnElement[Any], party_id: ColumnElement[Any], at: ColumnElement[Any]
) -> ColumnElement[bool]:
    """The Party held a Responsibility interval on the Device at that time (valid_from
    included, valid_to excluded, open-ended when it has none): rule 3's test of time."""
    return _Held(device_id, party_id, at)


class _Held(ColumnElement[bool]):
    """`held_clause`: EXISTS of such an interval; on SQLite the newest such interval, read
    newest first. SQLite reads the intervals starting before the time in the index's order,
    oldest first, and drops an ORDER BY from an EXISTS: a record in a Party's newest range
    cost a row a range it held before (a device search by a Party of 100 ranges at 1M: 81,000
    of its 102,000 instructions; BENCHMARKS.md, session 52). Read newest first, a record in a
    range costs the intervals that started between that range's start and its time (one,
    where they do not overlap); one in none, all those that started before it, as before: the
    viewer's own intervals, whatever others' records there are."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("device_id", InternalTraversal.dp_clauseelement),
        ("party_id", InternalTraversal.dp_clauseelement),
        ("at", InternalTraversal.dp_clauseelement),
    ]

    def __init__(
        self, device_id: ColumnElement[Any], party_id: ColumnElement[Any], at: ColumnElement[Any]
    ) -> None:
        self.device_id, self.party_id, self.at = device_id, party_id, at

    def intervals(self) -> Select[Any]:
        r = responsibility.c
        return select(literal(1)).where(
            r.device_id == self.device_id,
            r.party_id == self.party_id,
            r.valid_from <= self.at,
            or_(r.valid_to.is_(None), self.at < r.valid_to),
        )


@compiles(_Held)
def _held_exists(element: _Held, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(exists(element.intervals()), **kw))


@compiles(_Held, "sqlite")
def _held_newest_first(element: _Held, compiler: Any, **kw: Any) -> str:
    newest = element.intervals().order_by(responsibility.c.valid_from.desc()).limit(1)
    return str(compiler.process(newest.scalar_subquery().is_not(None), **kw))


def mp141_clause() -> ColumnElement[bool]:
    """Rule 3 (rule 2 is the kind filter): the viewer held the device at the record's time."""
    s = sat_record.c
    return and_(mp141_kinds_clause(), held_clause(s.device_id, _party(), s.logged_at))


def visible_clause(scope: Scope = Scope.ALL) -> ColumnElement[bool]:
    if scope is Scope.OWN:
        return own_clause()
    if scope is Scope.OTHERS:
        return and_(not_own_clause(), mp141_clause())
    return or_(own_clause(), mp141_clause())


def access_column() -> ColumnElement[str]:
    """The access level of a row already known to be visible."""
    return case((own_clause(), literal(Access.OWN.value)), else_=literal(Access.MP141.value))


# --- the interval-first form, for a search of one device ------------------------------


@lru_cache(maxsize=1)
def intervals_query() -> Select[tuple[str, str, str, datetime, datetime | None]]:
    """Built once (the driver-level pipeline that sends it compiles it once per object).

    The Responsibility intervals of one device held by the viewer (any relation): the
    only ones rule 3 can grant by, for that device."""
    r = responsibility.c
    return select(r.device_id, r.party_id, r.relation, r.valid_from, r.valid_to).where(
        r.device_id == bindparam("device_id"), r.party_id == _party()
    )


def merged_ranges(intervals: list[Responsibility]) -> list[tuple[datetime, datetime | None]]:
    """The union of half-open intervals as disjoint half-open ranges (None: open end).

    Overlapping intervals (the same Party as supplier and network operator) and adjacent
    ones become one range, so no record falls in two ranges and none is listed twice."""
    merged: list[list[Any]] = []
    for interval in sorted(intervals, key=lambda i: i.valid_from):
        if merged and (merged[-1][1] is None or interval.valid_from <= merged[-1][1]):
            last = merged[-1]
            last[1] = (
                None
                if last[1] is None or interval.valid_to is None
                else max(last[1], interval.valid_to)
            )
        else:
            merged.append([interval.valid_from, interval.valid_to])
    return [(start, end) for start, end in merged]


def own_rows(user_param: str) -> ColumnElement[bool]:
    """Rule 1 for one of the viewer's User IDs (one index range per User ID keeps the rows
    in time order, which an IN list of several would not)."""
    return sat_record.c.user_id == bindparam(user_param, type_=sat_record.c.user_id.type)


def mp141_range(start: ColumnElement[Any], end: ColumnElement[Any]) -> ColumnElement[bool]:
    """Rule 3 within one merged Responsibility range [start, end) of the searched device (a
    row of the viewer's ranges, `store.device_search`): rule 2's kinds, the record's own time
    inside the range, and not the viewer's own (those come from `own_rows`, so no record is
    listed twice)."""
    s = sat_record.c
    when = [s.logged_at >= start, s.logged_at < end]
    return and_(mp141_kinds_clause(), *when, not_own_clause())
