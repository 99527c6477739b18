"""The interval-first form of a search by Device (see visibility_sql): the newest `lim` rows
of each of the viewer's User IDs on the Device, and of each Responsibility range of the
viewer on it, each one ordered index range; then the rule itself, on top, over those few
candidates, and the page. A busy Device's other rows are never read.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, false, select, union_all

from ..domain.model import Responsibility
from ..domain.search import Search
from ..domain.visibility import Scope, Viewer
from .filters import Shape, conditions, device_param, shape_of
from .items import RECORD_COLUMNS, newest_first, page_of_candidates
from .schema import sat_record
from .visibility_sql import merged_ranges, mp141_range, own_rows

s = sat_record.c
# Past these, a device search uses the general form, which reads every record of the Device
# newer than the page and so takes as long as there are records the viewer may not see
# (audit 21d: 18 ms against 2.6 for a Party of 9 User IDs, past 20,000 hidden records). A
# Party holds a User ID per role, and few hold a Device more than a few times: these are
# well past what the registry holds, and the statement shapes stay bounded.
MAX_OWN_BRANCHES = 32
MAX_RANGE_BRANCHES = 32


@lru_cache(maxsize=512)
def device_statement(
    scope: Scope,
    shape: Shape,
    with_cursor: bool,
    own_branches: int,
    ranges: tuple[bool, ...],
    titles_only: bool = False,
) -> Select[Any]:
    """Each branch reads whole (narrow) records, so the page is not joined back to the trail,
    and a payload is read only for the viewer's own rows: on PostgreSQL, joining back and
    probing payloads for every row cost more than twice as much (BENCHMARKS.md).

    `ranges` says, per range, whether it has an end. The viewer's own non-device requests
    about the device (`subject_device_id`) come through one more branch a User ID, unless the
    search is of the requests on the Device alone."""
    on_device = conditions(shape, with_cursor, device=s.device_id == device_param())
    on_subject = conditions(shape, with_cursor, device=s.subject_device_id == device_param())
    lim = bindparam("lim", type_=Integer)
    branches = [(on_device, own_rows(f"own_{i}")) for i in range(own_branches)]
    # per User ID too, as the subject's index is (0017): one branch for all of them read
    # every User's requests naming the Device, and took as long as there were (audit 21b)
    if "device_id" in shape:
        branches += [(on_subject, own_rows(f"own_{i}")) for i in range(own_branches)]
    branches += [
        (on_device, mp141_range(f"from_{j}", f"to_{j}" if has_end else None))
        for j, has_end in enumerate(ranges)
    ]
    # each branch is wrapped in a subquery: SQLite allows ORDER BY / LIMIT only on a whole compound
    parts = [
        select(*b.c).select_from(b)
        for b in (
            newest_first(select(*RECORD_COLUMNS).where(*where, rule)).limit(lim).subquery()
            for where, rule in branches
        )
    ]
    if len(parts) == 1:
        return page_of_candidates(parts[0].subquery("candidate"), scope, titles_only=titles_only)
    # the page's candidates alone, before the rule and the items' joins: without this LIMIT
    # SQLite copied them into every branch and ran them on every branch's rows (32 ranges at
    # 1M: 62 ms, 400,209 instructions, against 7.5 ms, 108,212; BENCHMARKS.md, session 50).
    # Every branch's rows are ones the rule grants (own, or rule 3 in the viewer's range), so
    # the rule on top drops none and the page is whole.
    found = union_all(*parts).subquery("found")
    candidate = (
        select(*found.c)
        .order_by(found.c.logged_at.desc(), found.c.id.desc())
        .limit(lim)
        .subquery("candidate")
    )
    return page_of_candidates(candidate, scope, titles_only=titles_only)


def device_search(
    viewer: Viewer,
    search: Search,
    with_cursor: bool,
    params: dict[str, Any],
    intervals: list[tuple[Any, ...]] | None,
    titles_only: bool = False,
) -> Select[Any] | None:
    """The interval-first statement for this device search (adding its parameters), or
    None when the general form should be used. `intervals`: the rows of
    `visibility_sql.intervals_query` (None for a search of the viewer's own traffic)."""
    user_ids = sorted(viewer.user_ids) if search.scope is not Scope.OTHERS else []
    ranges = merged_ranges([Responsibility(*row) for row in intervals or ()])
    if len(user_ids) > MAX_OWN_BRANCHES or len(ranges) > MAX_RANGE_BRANCHES:
        return None
    for i, user_id in enumerate(user_ids):
        params[f"own_{i}"] = user_id
    for j, (start, end) in enumerate(ranges):
        params[f"from_{j}"], params[f"to_{j}"] = start, end
    if not user_ids and not ranges:
        return select(s.id).where(false())  # the viewer may see nothing on this device
    return device_statement(
        search.scope,
        shape_of(search),
        with_cursor,
        len(user_ids),
        tuple(end is not None for _, end in ranges),
        titles_only,
    )
