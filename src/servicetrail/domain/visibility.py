"""The MP141 (Option B) visibility rule of SPEC section 3, for one record and one viewer.

`store.visibility_sql` compiles the very same rule to SQL for every read; a property test
proves the two agree. Both take their vocabulary from this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .model import ALERT_KINDS, RELATION_LABELS, Kind, Relation, Responsibility, SatRecord

# Rule 3 shares titles of these kinds only; alerts stay with their addressee (rule 2).
MP141_KINDS = frozenset({Kind.REQUEST, Kind.ACKNOWLEDGEMENT, Kind.RESPONSE})
assert MP141_KINDS.isdisjoint(ALERT_KINDS)


class Access(StrEnum):
    OWN = "own"
    MP141 = "mp141"


class Scope(StrEnum):
    """Which visible records a search wants: the viewer's own, other Users' (MP141), or both."""

    OWN = "own"
    OTHERS = "others"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Viewer:
    """A Party looking at the trail, with every User ID it holds (one per User Role)."""

    party_id: str
    user_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Decision:
    access: Access | None
    rule: int
    reason: str
    interval: Responsibility | None = None

    @property
    def visible(self) -> bool:
        return self.access is not None

    def badge(self) -> str:
        """The short text a screen shows beside a visible record."""
        if self.access is Access.OWN:
            return "own"
        if self.interval is not None:
            role = RELATION_LABELS[Relation(self.interval.relation)]
            return f"visible as {role}, {self.interval.describe()}"
        return ""


def is_own(viewer: Viewer, record: SatRecord) -> bool:
    """Rule 1: sent by, or addressed to, one of the viewer's User IDs. Reports use this alone."""
    return record.user_id in viewer.user_ids


def decide(viewer: Viewer, record: SatRecord, registry: Iterable[Responsibility]) -> Decision:
    """Decide one record. `registry` holds Responsibilities of the record's device (others are
    ignored)."""
    if is_own(viewer, record):
        return Decision(
            Access.OWN, 1, "own traffic: the message came from or went to one of your User IDs"
        )
    if record.kind in ALERT_KINDS:
        return Decision(None, 2, "alerts are visible only to the User they were sent to")
    if record.kind in MP141_KINDS and record.device_id:
        for interval in sorted(registry, key=lambda r: (r.valid_from, r.relation)):
            if (
                interval.device_id == record.device_id
                and interval.party_id == viewer.party_id
                and interval.covers(record.logged_at)
            ):
                role = RELATION_LABELS[Relation(interval.relation)]
                return Decision(
                    Access.MP141,
                    3,
                    f"MP141: you were the {role} of device {record.device_id} "
                    f"from {interval.describe()}; titles only, no payload",
                    interval,
                )
    return Decision(None, 4, "not visible to you")


def audiences_at(
    kind: str,
    device_id: str,
    at: Any,
    owner_party: str | None,
    spans: Iterable[tuple[str, Any, Any]],
) -> dict[str, Access]:
    """Every Party that may see a record, and how: what `decide()` answers for each Party,
    asked the other way round. The per-Party visibility index (store.visibility_index) holds
    exactly these rows, and a property test holds that table to `decide()`.

    On bare values, for the store's hot path: `owner_party` is the Party holding the record's
    User ID (None when no Party does; rule 1 holds for it alone); `at` and the spans' ends
    (None: open) may be datetimes or any values that order as the times do (the store's
    fixed-width text, or microseconds). `spans` are (party_id, valid_from, valid_to) of the
    record's device."""
    seen: dict[str, Access] = {}
    if owner_party is not None:
        seen[owner_party] = Access.OWN
    if kind in MP141_KINDS and device_id:
        for party_id, valid_from, valid_to in spans:
            if valid_from <= at and (valid_to is None or at < valid_to):
                seen.setdefault(party_id, Access.MP141)
    return seen


def in_scope(access: Access, scope: Scope) -> bool:
    return scope is Scope.ALL or (scope is Scope.OWN) == (access is Access.OWN)
