"""The rows a statement finds in a store, read through a connection of its own."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()
