"""Another Party's watch is looked up with the work of a watch that never was (the rule of
issue 10 finding 7, for watches): every address that names a watch (its events, its stream,
its deletion, the Watches page) asks `owned_watch` first.

Not a timed test: it counts what the engine does, as tests/store/test_lookup_work.py does
for records. Looked up by its primary key, another Party's watch was found and then
refused by its party_id (SQLite: 10 virtual-machine instructions against 8 for a missing
one; PostgreSQL, once the table is big enough for the key's index to be chosen: a row read
and removed by the filter, against none).
"""

from __future__ import annotations

import pytest
from sqlalchemy import insert, select, text

from servicetrail.domain.watches import watch_spec
from servicetrail.store.read_transaction import read_as
from servicetrail.store.watch_tables import watch
from servicetrail.store.watches import create_watch, owned_watch
from tests.personas import (
    LOOKER,
    NORTHPOWER,
    PARTIES,
    SOUTHENERGY,
    World,
)
from tests.store.test_lookup_work import postgres_nodes, sqlite_instructions, statements_sent

MISSING = 10**9  # no watch has this id
WATCHES_EACH = 200  # enough rows for PostgreSQL's planner to prefer the key's index


@pytest.fixture
def watches(world: World) -> dict[str, list[int]]:
    """WATCHES_EACH watches of every Party: one made by the store, the others copies of its
    row (made one at a time, 1,400 took a minute)."""
    made: dict[str, list[int]] = {}
    with world.engine.begin() as conn:
        for party in PARTIES:
            first = create_watch(conn, party, watch_spec({"name": "w"}), None)["id"]
            row = conn.execute(select(watch).where(watch.c.id == first)).mappings().one()
            copies = [{k: v for k, v in row.items() if k != "id"}] * (WATCHES_EACH - 1)
            conn.execute(insert(watch), copies)
            made[party] = list(
                conn.execute(select(watch.c.id).where(watch.c.party_id == party)).scalars()
            )
    if world.engine.dialect.name == "postgresql":
        with world.engine.connect() as conn:
            conn.execute(text("ANALYZE watch"))
            conn.commit()
    return made


def work(world: World, watch_id: int):
    engine, viewer = world.engine, world.viewer(SOUTHENERGY)
    with statements_sent(engine) as sent, engine.connect() as conn, read_as(conn, viewer):
        owned_watch(conn, SOUTHENERGY, watch_id)
    # on PostgreSQL seen twice, by SQLAlchemy and by psycopg: one statement all the same
    reads = [(sql, params) for sql, params in sent if "FROM watch" in sql]
    assert len({sql for sql, _ in reads}) == 1, reads
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, *reads[0])
    return postgres_nodes(engine, viewer, *reads[0])


def test_another_partys_watch_is_looked_up_with_the_work_of_a_missing_one(
    world: World, watches: dict[str, list[int]]
) -> None:
    missing = work(world, MISSING)
    for whose in (NORTHPOWER, LOOKER):
        for theirs in (watches[whose][0], watches[whose][-1]):
            with world.engine.connect() as conn, read_as(conn, world.viewer(SOUTHENERGY)):
                assert owned_watch(conn, SOUTHENERGY, theirs) is None
            assert work(world, theirs) == missing, (whose, theirs)


def test_the_count_sees_the_work_of_a_watch_that_is_found(
    world: World, watches: dict[str, list[int]]
) -> None:
    """The measure can fail: the Party's own watch costs more than a missing one."""
    own = watches[SOUTHENERGY][WATCHES_EACH // 2]
    with world.engine.connect() as conn, read_as(conn, world.viewer(SOUTHENERGY)):
        assert owned_watch(conn, SOUTHENERGY, own) is not None
    assert work(world, own) != work(world, MISSING)
