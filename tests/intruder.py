"""What someone with the database can do that servicetrail never does: write past the
append-only triggers (the tamper tests of SPEC sections 7 and 8)."""

from __future__ import annotations

from sqlalchemy import text


def intrude(engine, *statements: tuple[str, dict]) -> None:
    """Run statements with the append-only triggers out of the way."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f"DROP TRIGGER {name}"))
        for sql, params in statements:
            conn.execute(text(sql), params)
