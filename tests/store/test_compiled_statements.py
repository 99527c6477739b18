"""Statements run through the driver (store.compiled_statements: psycopg itself, SQLite's
driver SQL) answer what SQLAlchemy's own execution of them answers: IN lists of any length
(one compiled form per length), the statement's literals (a percent sign among them), bind
and result processing (UTC times)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Integer, bindparam, column, select, text
from sqlalchemy.engine import Engine

from servicetrail.domain.search import Search
from servicetrail.domain.visibility import Scope
from servicetrail.store import compiled_statements
from servicetrail.store.compiled_statements import fetch_all
from servicetrail.store.limits import SearchTooBroad
from servicetrail.store.log_tables import log_verifier_key
from servicetrail.store.queries import search_page
from servicetrail.store.read_transaction import time_limit
from tests import personas as P

k = log_verifier_key.c
START = datetime(2025, 3, 1, tzinfo=timezone.utc)
KEYS = [f"key {i}%" if i % 2 else f"key {i}" for i in range(6)]

STATEMENT = (
    select(k.verifier_key, k.first_used_at)
    .where(
        k.verifier_key.in_(bindparam("wanted", expanding=True)),
        k.verifier_key.like("key%"),  # SQLAlchemy writes the percent sign as %% for psycopg
        k.verifier_key.not_in(("key 5%",)),  # a literal list of the statement's own
        k.first_used_at >= bindparam("since", type_=k.first_used_at.type),
    )
    .order_by(k.verifier_key)
)


@pytest.fixture
def keys(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(
            log_verifier_key.insert(),
            [
                {"verifier_key": key, "first_used_at": START + timedelta(days=i)}
                for i, key in enumerate(KEYS)
            ],
        )
    return engine


@pytest.mark.parametrize(
    "wanted, days",
    [
        (["key 0"], 0),
        (["key 0", "key 1%", "key 2"], 1),
        (["key 1%", "key 3%", "key 5%", "nothing"], 0),
        (["key 0", "key 1%", "key 2"], 0),  # the length of a list seen before, other values
        (KEYS, 4),
    ],
)
def test_the_rows_are_sqlalchemys(keys: Engine, wanted: list[str], days: int) -> None:
    # a time in another zone: the bind processor makes it the same instant in UTC
    since = (START + timedelta(days=days)).astimezone(timezone(timedelta(hours=2)))
    values = {"wanted": wanted, "since": since}
    with keys.connect() as conn:
        expected = [tuple(row) for row in conn.execute(STATEMENT, values)]
        got = fetch_all(conn, STATEMENT, values)
        conn.commit()
    assert got == expected
    assert [key for key, _ in got] == sorted(
        key for i, key in enumerate(KEYS) if key in wanted and key != "key 5%" and i >= days
    )
    assert all(at.tzinfo is not None and at.utcoffset() == timedelta(0) for _, at in got)


def test_a_time_parameter_is_compared_as_the_store_holds_times(keys: Engine) -> None:
    # a microsecond after key 2's time: on SQLite only the store's own text form of the
    # time (its bind processor) sorts key 2 out; the driver's default rendering of a
    # datetime sorts before every stored time of that day
    since = (START + timedelta(days=2, microseconds=1)).astimezone(timezone(timedelta(hours=2)))
    values = {"wanted": KEYS, "since": since}
    with keys.connect() as conn:
        got = fetch_all(conn, STATEMENT, values)
        conn.commit()
    assert [key for key, _ in got] == ["key 3%", "key 4"]


def test_a_parameter_with_a_value_of_its_own_is_the_callers_when_given(keys: Engine) -> None:
    """A parameter the statement gives a value to (`items.payload_head`'s length) is the
    statement's when left out and the caller's when given, whichever came first: the form
    kept from a call that left it out had the statement's value written in for good."""
    at_most = select(k.verifier_key).where(
        k.verifier_key.in_(bindparam("wanted", expanding=True)),
        k.verifier_key <= bindparam("upto", "key 1%"),
    )
    with keys.connect() as conn:
        default = fetch_all(conn, at_most, {"wanted": KEYS})
        given = fetch_all(conn, at_most, {"wanted": KEYS, "upto": "key 3%"})
        conn.commit()
    assert [key for (key,) in default] == ["key 0", "key 1%"]
    assert [key for (key,) in given] == ["key 0", "key 1%", "key 2", "key 3%"]


SLOW = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
    "SELECT count(*) AS n FROM c"
).columns(column("n", Integer))


def test_a_statement_past_its_time_limit_is_too_broad_and_the_connection_reads_on(
    engine: Engine,
) -> None:
    for _ in range(2):  # the pool hands the same connection back
        with pytest.raises(SearchTooBroad):
            with engine.connect() as conn, time_limit(conn, 0.05):
                fetch_all(conn, SLOW, {})
        with engine.connect() as conn:
            assert fetch_all(conn, select(bindparam("one", 1)), {}) == [(1,)]
            conn.commit()


def test_searches_that_may_see_nothing_leave_the_device_searches_compiled(world: P.World) -> None:
    """A device search the viewer may see nothing in (only others' records asked for, on a
    Device it never held) is one statement, compiled once: a new one a search was compiled
    each time, and the 64th cleared the compiled form of every device search in the process."""
    compiled_statements._compiled_statements.clear()  # what other tests left is not counted
    nothing = Search(device_id=P.UNKNOWN_DEVICE, scope=Scope.OTHERS)
    with world.engine.connect() as conn:
        search_page(conn, world.viewer(P.NORTHPOWER), Search(device_id=P.ESME_1), 10)
        kept = dict(compiled_statements._compiled_statements)
        for _ in range(70):
            assert search_page(conn, world.viewer(P.LOOKER), nothing, 10) == ([], None)
        conn.commit()
    assert kept and all(
        compiled_statements._compiled_statements.get(key) is held for key, held in kept.items()
    )
    assert len(compiled_statements._compiled_statements) == len(kept) + 1
