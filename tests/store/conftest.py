"""Fixtures the store tests share: the persona world. A module that needs another world
(more records, other Parties) defines its own `world`."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from tests.personas import World, load_personas, starts_with_personas


@pytest.fixture
@starts_with_personas
def world(engine: Engine) -> World:
    return load_personas(engine)
