"""A store upgraded behind a running servicetrail: its revision changed by another
process's engine, as `db upgrade` changes it, and what the running one then says to do."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail.store.engine import make_engine


SAID = "restart servicetrail, of the version that upgraded the store"


def stamped_behind(engine: Engine, revision: str) -> None:
    """The revision changed by another process's engine, as `db upgrade` changes it."""
    other = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        with other.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        other.dispose()
