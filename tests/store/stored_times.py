"""A time as the engine stores it, to compare with what a raw read returns."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine


def _stored(engine: Engine, when: datetime) -> object:
    from servicetrail.store.schema import sqlite_time

    return sqlite_time(when) if engine.dialect.name == "sqlite" else when
