"""Deliberate one-line breakages of the visibility rule's paths, to see which tests catch them
(tests/store/test_visibility_property.py's docstring says what was found; session 61).

    python -m devsupport.visibility_breaks list
    python -m devsupport.visibility_breaks apply NAME /tmp/breaks/NAME/src

`apply` copies src/ and edits the copy, so the clone stays as it is and several breakages can
be tried side by side. Run a test against a copy with it first on the path, and this module
as a plugin, which drops Hypothesis's shrink phase and example database (a failing example
is reported as drawn, and none is replayed into the next try):

    PYTHONPATH=/tmp/breaks/NAME/src:$PWD timeout 120 .venv/bin/pytest -q -x \\
        -p devsupport.visibility_breaks -p no:randomly -p no:cacheprovider \\
        tests/store/test_visibility_property.py -k sql_rule_agrees --hypothesis-seed=1
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

SQL = "servicetrail/store/visibility_sql.py"
INDEX = "servicetrail/store/visibility_index.py"
DEVICE = "servicetrail/store/device_search.py"
LOOKUP = "servicetrail/store/index_search.py"

# name: (file under src/, the text replaced, which must occur once, its replacement)
BREAKS: dict[str, tuple[str, str, str]] = {
    # rule 2 and 3 in visibility_sql: what every read applies on top
    "kinds_alerts": (SQL, "in SHARED_KINDS]", "in (*SHARED_KINDS, 'device_alert')]"),
    "kinds_dcc": (SQL, "in SHARED_KINDS]", "in (*SHARED_KINDS, 'dcc_alert')]"),
    "nondevice": (SQL, 'and_(s.kind.in_(kinds), s.device_id != "")', "s.kind.in_(kinds)"),
    "party_match": (SQL, "            r.party_id == self.party_id,\n", ""),
    "device_match": (SQL, "            r.device_id == self.device_id,\n", ""),
    "others_own": (SQL, "and_(not_own_clause(), mp141_clause())", "mp141_clause()"),
    "from_lt": (SQL, "r.valid_from <= self.at,", "r.valid_from < self.at,"),
    "to_le": (SQL, "self.at < r.valid_to),", "self.at <= r.valid_to),"),
    "open_end": (SQL, "or_(r.valid_to.is_(None), self.at < r.valid_to),", "self.at < r.valid_to,"),
    "relation_sql": (
        SQL,
        "            r.party_id == self.party_id,\n",
        "            r.party_id == self.party_id, r.relation == 'supplier',\n",
    ),
    "access_col": (SQL, "else_=literal(Access.MP141.value))", "else_=literal(Access.OWN.value))"),
    # a device search's interval-first form
    "dev_relation": (
        SQL,
        "r.party_id == _party()\n    )",
        "r.party_id == _party(), r.relation == 'supplier'\n    )",
    ),
    "dev_merge_max": (SQL, "else max(last[1], interval.valid_to)", "else interval.valid_to"),
    "dev_range_le": (SQL, "s.logged_at < end]", "s.logged_at <= end]"),
    "dev_range_gt": (SQL, "[s.logged_at >= start,", "[s.logged_at > start,"),
    "dev_range_own": (SQL, "*when, not_own_clause())", "*when)"),
    "dev_cut_cursor": (DEVICE, "cursor_at and _next(cursor_at)", "cursor_at"),
    "dev_cut_open": (
        DEVICE,
        "if end is None or start < end:",
        "if end is not None and start < end:",
    ),
    "dev_own_scope": (
        DEVICE,
        "if search.scope is not Scope.OTHERS else",
        "if search.scope is Scope.ALL else",
    ),
    "dev_open_sqlite": (DEVICE, "if b else SQLITE_OPEN_END", "if b else sqlite_time(a)"),
    # the visibility index: a batch's rows, and their re-derivation after a registry change
    "idx_to_le": ("servicetrail/domain/visibility.py", "or at < valid_to)", "or at <= valid_to)"),
    "idx_relation": (
        INDEX,
        '"WHERE device_id IN (SELECT',
        "\"WHERE relation = 'supplier' AND device_id IN (SELECT",
    ),
    "re_lower_max": (INDEX, "lower = min(e for e", "lower = max(e for e"),
    "re_upper_min": (
        INDEX,
        "upper = None if None in ends else max(ends)",
        "upper = None if None in ends else min(ends)",
    ),
    "re_start_max": (INDEX, "start = min(s[1] for s in spans)", "start = max(s[1] for s in spans)"),
    "re_end_first": (INDEX, "    end = None if None in ends else max(ends)", "    end = ends[-1]"),
    "re_new_party_only": (INDEX, "frozenset(s[0] for s in spans))", "frozenset({spans[-1][0]}))"),
    "re_last_lt": (
        INDEX,
        'f"AND s.logged_at <= t.value ->> 2"',
        'f"AND s.logged_at < t.value ->> 2"',
    ),
    "re_first_gt": (INDEX, 's.logged_at >= t.value ->> 1 "', 's.logged_at > t.value ->> 1 "'),
    "re_open_start": (INDEX, "if t.end else _LAST_INSTANT", "if t.end else t.start"),
    "re_parties_all": (INDEX, "            if party_id in parties:\n", "            if True:\n"),
    "re_forget_mp141": (
        INDEX,
        "party_id = ? AND access IN (1, 3) AND",
        "party_id = ? AND access = 3 AND",
    ),
    "re_user_skip": (
        "servicetrail/store/registry.py",
        "        refresh_user(conn, user_id, party_id)",
        "        pass",
    ),
    # get_visible's statement and the device-less search through the index
    "get_access": (LOOKUP, "v.access.in_((OWN, MP141)),", "v.access.in_((OWN,)),"),
    "get_party": (LOOKUP, "v.party_id == _party(),\n            v.record_id ==", "v.record_id =="),
    "ix_others_access": (LOOKUP, "Scope.OTHERS: (MP141,)", "Scope.OTHERS: (OWN, MP141)"),
    "ix_party": (LOOKUP, "where = [v.party_id == _party(), *(", "where = [*("),
    "own_only_sql": (
        "servicetrail/store/items.py",
        "return case((own_clause(), column), else_=null())",
        "return column",
    ),
}


def apply(name: str, dest: Path, src: Path = Path("src")) -> None:
    """Copy `src` to `dest` (replaced) and make breakage `name` in the copy."""
    path, old, new = BREAKS[name]
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    edited = dest / path
    text = edited.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: the text to replace occurs {text.count(old)} times in {path}")
    edited.write_text(text.replace(old, new))


def pytest_configure(config: Any) -> None:
    """As a pytest plugin: no shrinking, no example database (see the module's note). The
    tests' own settings (max_examples) still apply."""
    from hypothesis import Phase, settings

    settings.register_profile(
        "breaks",
        parent=settings.get_profile("servicetrail"),
        phases=[Phase.explicit, Phase.generate],
        database=None,
    )
    settings.load_profile("breaks")


if __name__ == "__main__":
    if sys.argv[1:2] == ["list"]:
        print(" ".join(BREAKS))
    elif sys.argv[1:2] == ["apply"] and len(sys.argv) == 4:
        apply(sys.argv[2], Path(sys.argv[3]))
    else:
        raise SystemExit(__doc__)
