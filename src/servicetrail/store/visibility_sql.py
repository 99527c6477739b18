"""The visibility rule of `domain.visibility`, compiled to one SQL predicate.

Every read of SAT records (lists, look-ups, counts, exports) filters through these
clauses; `tests/store/test_visibility_property.py` proves they agree with `decide()`.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, exists, false, literal, or_, select

from ..domain.visibility import MP141_KINDS, Access, Scope, Viewer
from .schema import responsibility, sat_record


def own_clause(viewer: Viewer) -> ColumnElement[bool]:
    """Rule 1: the message came from or went to one of the viewer's User IDs."""
    if not viewer.user_ids:
        return false()
    return sat_record.c.user_id.in_(sorted(viewer.user_ids))


def mp141_clause(viewer: Viewer) -> ColumnElement[bool]:
    """Rule 3 (rule 2 is the kind filter): the viewer held the device at the record's time."""
    r = responsibility.c
    s = sat_record.c
    return and_(
        s.kind.in_(sorted(k.value for k in MP141_KINDS)),
        s.device_id != "",  # non-device messages have no device to be responsible for
        exists(select(literal(1)).where(
            r.device_id == s.device_id,
            r.party_id == viewer.party_id,
            r.valid_from <= s.logged_at,
            or_(r.valid_to.is_(None), s.logged_at < r.valid_to),
        )),
    )


def visible_clause(viewer: Viewer, scope: Scope = Scope.ALL) -> ColumnElement[bool]:
    if scope is Scope.OWN:
        return own_clause(viewer)
    if scope is Scope.OTHERS:
        return and_(~own_clause(viewer), mp141_clause(viewer))
    return or_(own_clause(viewer), mp141_clause(viewer))


def access_column(viewer: Viewer) -> ColumnElement[str]:
    """The access level of a row already known to be visible."""
    return case((own_clause(viewer), literal(Access.OWN.value)), else_=literal(Access.MP141.value))
