"""A worker's round of store work (webhooks.rounds) on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from servicetrail.store.outbox import Outcome
from servicetrail.webhooks.rounds import StoreRounds
from tests import personas as P
from tests.personas import starts_with_personas
from tests.store.two_deliveries import two_deliveries


def rounds_of(engine) -> StoreRounds:
    """A worker's rounds: retries 5 s apart, leases of 30 s, locks waited for 1 s, a share of
    10 a watch, every delivery accepted."""
    return StoreRounds(
        engine,
        [5.0],
        timedelta(seconds=30),
        1.0,
        lambda watches: {w: 10 for w, _, _ in watches},
        lambda _: True,
    )


@starts_with_personas
def test_a_round_locks_the_deliveries_it_holds_once(pg_engine) -> None:
    """A round locks every delivery it holds, in key order, before it records its outcomes;
    recording them locked them all again in the same transaction, where the first lock
    holds to its end (1.5 ms a round of 256 held). Its outcomes are recorded all the same:
    the delivered one deleted, the failed one due again."""
    P.load_personas(pg_engine)
    watch_id = two_deliveries(pg_engine)
    rounds = rounds_of(pg_engine)
    (leased, _, _, end), _ = rounds.round([], 10, [], {})
    assert [(d.watch_id, d.event_id) for d in leased] == [(watch_id, 1), (watch_id, 2)]
    outcomes = [
        Outcome(watch_id, 1, 0, "delivered"),
        Outcome(watch_id, 2, 0, "failed", "answered 503", end),
    ]
    locks: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if "FOR UPDATE" in statement and "unnest" in statement:
            locks.append(statement)

    event.listen(pg_engine, "before_cursor_execute", note)
    try:
        rounds.round(outcomes, 0, [], {})
    finally:
        event.remove(pg_engine, "before_cursor_execute", note)
    assert len(locks) == 1
    with pg_engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT event_id, attempts FROM webhook_outbox").all()
    assert [tuple(row) for row in left] == [(2, 1)]


@starts_with_personas
def test_a_rounds_statements_on_the_deliveries_it_holds_are_planned_once(pg_engine) -> None:
    """The sessions plan each execution for its values (`store.engine._postgres_session`);
    a round's locks, visibility check and renewal of what it holds read rows by their keys,
    whatever the values, and planned afresh every round, planning cost more than running
    (256 held: the visibility check 3 ms planned, 2.5 ms run). Three rounds holding two
    deliveries: each such statement, prepared, runs its generic plan. A round holding
    nothing sends the lease's page's settings alone, and an idle worker's (every 0.1-0.8 s,
    nothing due) none."""
    P.load_personas(pg_engine)
    two_deliveries(pg_engine)
    rounds = rounds_of(pg_engine)
    settings: list[str] = []

    def note(_conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        if "plan_cache_mode" in statement:
            settings.append(statement)

    event.listen(pg_engine, "before_cursor_execute", note)
    try:
        (leased, _, _, end), _ = rounds.round([], 10, [], {})
        assert len(settings) == 2  # around the lease's page (`store.outbox.lease_due`)
        assert rounds.round([], 10, [], {})[0].leased == []  # both leased: nothing due
    finally:
        event.remove(pg_engine, "before_cursor_execute", note)
    assert len(settings) == 2
    held = [(d.watch_id, d.event_id) for d in leased]
    for _ in range(3):
        (_, _, renewed, end), _ = rounds.round([], 0, held, dict.fromkeys(held, end))
        assert renewed == held
    with pg_engine.connect() as conn:  # the pool's last connection: the rounds'
        plans = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE strpos(statement, 'unnest') > 0"
        ).all()
    assert len(plans) == 3  # the locks, the visibility check, the renewal
    assert all(generic and not custom for generic, custom in plans), plans
