"""Another Party's watch is looked up with the work of a watch that never was (the rule of
issue 10 finding 7, for watches): every address that names a watch (its events, its stream,
its deletion, the Watches page, the watch itself: `get_watch`) asks `owned_watch` first; its
webhook's state (`list_watches(watch_id=...)`) finds the watch the same way.

Not a timed test: it counts what the engine does, as tests/store/test_lookup_work.py does
for records. Looked up by its primary key, another Party's watch was found and then
refused by its party_id (SQLite: 10 virtual-machine instructions against 8 for a missing
one; PostgreSQL, once the table is big enough for the key's index to be chosen: a row read
and removed by the filter, against none).
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from sqlalchemy import insert, select, text

from servicetrail.domain.watches import watch_spec
from servicetrail.store.read_transaction import read_as
from servicetrail.store.watch_tables import watch
from servicetrail.store.watches import create_watch, get_watch, list_watches, owned_watch
from tests.personas import (
    LOOKER,
    NORTHPOWER,
    PARTIES,
    SOUTHENERGY,
    World,
)
from tests.store.work_counted import postgres_nodes, sqlite_instructions, statements_sent

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


def webhook_state(conn, party_id: str, watch_id: int):
    """The look-up of GET /api/v1/watches/{id}/webhook: the watch with its webhook's state."""
    return list_watches(conn, party_id, with_state=True, watch_id=watch_id) or None


LOOKUPS = [owned_watch, get_watch, webhook_state]  # get_watch: GET /api/v1/watches/{id}


def looked_up(world: World, watch_id: int, lookup=owned_watch):
    """What `lookup` finds: owned_watch inside the viewer's read (as an events page looks),
    the watch and its webhook's state as the store's owner (as their routes read)."""
    with world.engine.connect() as conn:
        viewer = world.viewer(SOUTHENERGY) if lookup is owned_watch else None
        with read_as(conn, viewer) if viewer else nullcontext():
            return lookup(conn, SOUTHENERGY, watch_id)


def work(world: World, watch_id: int, lookup=owned_watch):
    engine = world.engine
    with statements_sent(engine) as sent:
        looked_up(world, watch_id, lookup)
    # on PostgreSQL seen twice, by SQLAlchemy and by psycopg: one statement all the same
    reads = [(sql, params) for sql, params in sent if "FROM watch" in sql]
    assert len({sql for sql, _ in reads}) == 1, reads
    if engine.dialect.name == "sqlite":
        return sqlite_instructions(engine, *reads[0])
    viewer = world.viewer(SOUTHENERGY) if lookup is owned_watch else None
    return postgres_nodes(engine, viewer, *reads[0])


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_another_partys_watch_is_looked_up_with_the_work_of_a_missing_one(
    world: World, watches: dict[str, list[int]], lookup
) -> None:
    """The webhook's state (audit 57k) found the watch by its key, then refused it by its
    party_id (SQLite: 11 virtual-machine instructions against 9; PostgreSQL: a row removed)."""
    missing = work(world, MISSING, lookup)
    for whose in (NORTHPOWER, LOOKER):
        for theirs in (watches[whose][0], watches[whose][-1]):
            assert looked_up(world, theirs, lookup) is None
            assert work(world, theirs, lookup) == missing, (whose, theirs)


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_the_count_sees_the_work_of_a_watch_that_is_found(
    world: World, watches: dict[str, list[int]], lookup
) -> None:
    """The measure can fail: the Party's own watch costs more than a missing one."""
    own = watches[SOUTHENERGY][WATCHES_EACH // 2]
    assert looked_up(world, own, lookup) is not None
    assert work(world, own, lookup) != work(world, MISSING, lookup)
