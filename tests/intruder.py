"""What someone with the database can do that servicetrail never does: write past the
append-only triggers (the tamper tests of SPEC section 7 and 8)."""

from __future__ import annotations

from sqlalchemy import text


def as_intruder(engine, statement: str, **params) -> None:
    """A write past the append-only triggers, as someone with the database would make it."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for name in list(
                conn.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).scalars()
            ):
                conn.execute(text(f"DROP TRIGGER {name}"))
        conn.execute(text(statement), params)
