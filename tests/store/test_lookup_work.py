"""Issue 10 finding 7: looking up a record the viewer may not see does the same work as
looking up one that does not exist, so the time of the answer cannot tell them apart.

Not a timed test (times on a shared machine are noise; bench/timing.py measures them): it
counts what the engine does for the statement `get_visible` sends. On SQLite, the virtual
machine instructions it executes (a progress handler called at every one); on PostgreSQL,
each plan node that ran and the rows it produced (EXPLAIN ANALYZE as the reader role, so
row-level security is in the plan as in service). Both are exact and repeatable for a
statement, its plan and the data, and both saw the difference the benchmark timed: when
the record's row was read before the viewer's index row, a hidden record took 35 more
SQLite instructions than a missing one, and on PostgreSQL ran the row-level-security rule
over `responsibility`; before the index, the rule itself ran for it on both engines.
"""

from __future__ import annotations

import pytest

from servicetrail.domain.visibility import Viewer
from servicetrail.store.queries import get_visible
from tests.personas import (
    LOOKER,
    NORTHPOWER,
    SOUTHENERGY,
    SUNEXPORT,
    World,
)
from tests.store.work_counted import postgres_nodes, sqlite_instructions, statements_sent

MISSING = 10**9  # no persona record has this id


def lookup_statement(world: World, viewer: Viewer, record_id: int) -> tuple[str, object]:
    """The statement (and its parameters) with which `get_visible` reads the trail."""
    with statements_sent(world.engine) as sent, world.engine.connect() as conn:
        get_visible(conn, viewer, record_id)
    reads = [(sql, params) for sql, params in sent if "sat_record" in sql]
    assert len(reads) == 1, reads
    return reads[0]


def work(world: World, viewer: Viewer, record_id: int):
    statement, parameters = lookup_statement(world, viewer, record_id)
    if world.engine.dialect.name == "sqlite":
        return sqlite_instructions(world.engine, statement, parameters)
    return postgres_nodes(world.engine, viewer, statement, parameters)


@pytest.mark.parametrize(
    "party, hidden, why",
    [
        (SUNEXPORT, "np_req", "another Party's request on a Device the viewer never held"),
        (SOUTHENERGY, "np_req", "a request on the viewer's Device from before its Responsibility"),
        (LOOKER, "np_device_alert", "another Party's device alert"),
        (SOUTHENERGY, "np_device_alert", "another Party's device alert on the viewer's Device"),
    ],
)
def test_a_hidden_record_is_looked_up_with_the_work_of_a_missing_one(
    world: World, party: str, hidden: str, why: str
) -> None:
    viewer = world.viewer(party)
    record_id = world.ids[hidden]
    with world.engine.connect() as conn:
        assert get_visible(conn, viewer, record_id) is None, why
        assert get_visible(conn, viewer, MISSING) is None
    hidden_work, missing_work = work(world, viewer, record_id), work(world, viewer, MISSING)
    assert hidden_work == missing_work, why


@pytest.mark.parametrize("party, visible", [(NORTHPOWER, "np_req"), (SOUTHENERGY, "np_late_resp")])
def test_the_count_sees_the_work_of_a_record_that_is_found(
    world: World, party: str, visible: str
) -> None:
    """The measure can fail: a record the viewer may see costs more than a missing one."""
    viewer = world.viewer(party)
    with world.engine.connect() as conn:
        assert get_visible(conn, viewer, world.ids[visible]) is not None
    found_work, missing_work = work(world, viewer, world.ids[visible]), work(world, viewer, MISSING)
    assert found_work != missing_work
