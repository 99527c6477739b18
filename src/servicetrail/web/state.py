"""What a request finds on its application: the store it serves."""

from __future__ import annotations

from contextlib import AbstractContextManager

from fastapi import Request
from sqlalchemy.engine import Connection, Engine

from ..store.engine import reading


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def reader_of(request: Request) -> AbstractContextManager[Connection]:
    """A connection of the store for the request's reads (store.engine.reading: it ends by
    COMMIT, so the pool's connections keep their prepared statements)."""
    return reading(engine_of(request))
