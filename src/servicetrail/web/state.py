"""What a request finds on its application: the store it serves."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.engine import Engine


def engine_of(request: Request) -> Engine:
    return request.app.state.engine
