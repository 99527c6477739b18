"""Whether a registry batch whose commit a stop interrupted was stored: the stop does not say
whether the database's COMMIT happened (trail_load asks the same of an ingest's batch, by its
first leaf). One line the batch loaded or corrected answers for it, as its row now stands in
the store: a row the store cannot hold unless the batch committed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from ..domain.intervals import Outcome
from ..domain.model import Device, User
from ..store.registry import holds
from ..store.schema import dcc_user, device, responsibility


def batch_stored(engine: Engine, rows: Sequence[Any], decided: Sequence[Any]) -> bool | None:
    """Whether the batch of `rows` (as the writer decided them) is stored; None when the store
    cannot say (gone with the stop), or no line of the batch shows it alone."""
    changed = [(row, outcome) for row, outcome in zip(rows, decided) if changes_a_row(outcome)]
    if not changed:
        return True  # nothing it held needed storing
    witness = _witness(changed, rows)
    if witness is None:
        return None
    try:
        with engine.connect() as conn:
            return holds(conn, *witness)
    except Exception:
        return None


def changes_a_row(outcome: Any) -> bool:
    """Whether a line so decided writes to the store (one counted loaded)."""
    return outcome is Outcome.LOADED or outcome is Outcome.CORRECTED


def _witness(
    changed: list[tuple[Any, Any]], rows: Sequence[Any]
) -> tuple[Table, dict[str, Any]] | None:
    """A new Device or User ID as given (a known User ID counted corrected renamed its Party
    alone, its row held before), or an interval as the only line of its Device and relation
    in the batch gave it: two lines may give an interval and take it back, the store left as
    it was."""
    lines_of = Counter((row[0], row[2]) for row in rows if isinstance(row, tuple) and len(row) == 5)
    for row, outcome in changed:
        match row:
            case Device(device_id, device_type, smets):
                return device, {"device_id": device_id, "device_type": device_type, "smets": smets}
            case (User(user_id, party_id, role), _) if outcome is Outcome.LOADED:
                return dcc_user, {"user_id": user_id, "party_id": party_id, "role": role}
            case (str(device_id), str(party_id), str(relation), datetime(), _) if (
                lines_of[device_id, relation] == 1
            ):
                return responsibility, {
                    "device_id": device_id,
                    "party_id": party_id,
                    "relation": relation,
                    "valid_from": row[3],
                    "valid_to": row[4],
                }
    return None
