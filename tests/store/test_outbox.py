"""The outbox's leases (store.outbox) with times passed explicitly: renewed while a worker
holds them, and only while the lease is still the one it was given."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from servicetrail.domain.watches import watch_spec
from servicetrail.store.outbox import (
    Outcome,
    hidden_since_lease,
    lease_due,
    lock_in_key_order,
    record_outcomes,
    renew,
)
from servicetrail.store.watch_matcher import catch_up
from servicetrail.store.watch_tables import webhook_outbox
from servicetrail.store.watches import create_watch
from servicetrail.webhooks.signing import new_secret
from tests import personas as P
from tests.personas import starts_with_personas
from tests.store.two_deliveries import lk_requests, two_deliveries

NOW = P.t("2030-01-01T00:00:00Z")  # later than any delivery's first due time
LEASE = timedelta(seconds=30)


def ends(engine) -> dict[tuple[int, int], object]:
    o = webhook_outbox.c
    with engine.connect() as conn:
        rows = conn.execute(select(o.watch_id, o.event_id, o.next_attempt_at)).all()
    return {(w, e): at for w, e, at in rows}


def test_a_lease_held_is_renewed_and_one_leased_again_after_it_lapsed_is_not(engine, world) -> None:
    """A worker renews the leases it holds (its heartbeat), so a lease can be short: a worker
    killed between an attempt and its record left the delivery for the whole of a lease sized
    to its queue (275 s; audit 47a). Renewed on the time alone, a lease that had lapsed and
    that another worker had taken since was extended for the first as well: held by two."""
    watch_id = two_deliveries(engine)
    one, two = (watch_id, 1), (watch_id, 2)
    with engine.begin() as conn:
        leased = lease_due(conn, NOW, 10, LEASE)
    assert sorted((d.watch_id, d.event_id) for d in leased) == [one, two]
    given = NOW + LEASE
    with engine.begin() as conn:  # 10 s later, the worker renews what it holds
        renewed = renew(conn, {one: given, two: given}, NOW + timedelta(seconds=10) + LEASE)
    assert sorted(renewed) == [one, two]
    assert ends(engine) == {one: NOW + timedelta(seconds=40), two: NOW + timedelta(seconds=40)}
    with engine.begin() as conn:  # the worker stalls, its leases lapse: another takes one
        taken = lease_due(conn, NOW + timedelta(seconds=41), 1, LEASE)
    assert [(d.watch_id, d.event_id) for d in taken] == [one]
    renewed_at = NOW + timedelta(seconds=40)
    with engine.begin() as conn:  # the first, back, renews both: `one` is not its own now
        renewed = renew(conn, {one: renewed_at, two: renewed_at}, NOW + timedelta(seconds=45))
    assert renewed == [two]
    assert ends(engine) == {
        one: NOW + timedelta(seconds=71),  # the other worker's lease, as it gave it
        two: NOW + timedelta(seconds=45),
    }


def test_a_failure_on_a_lease_another_worker_has_taken_since_is_left_to_that_worker(
    engine, world
) -> None:
    """A worker stalled (stopped, swapped out) with an attempt in flight; its lease lapsed and
    another worker leased the delivery and is sending it. Recorded when the first came back,
    that attempt's failure set the row due again in 5 s, under the second's attempt: a third
    worker sent it while the second still did (audit 47i), and the second's renewals failed.
    The failure is the holder's to record; on a lease still the worker's, it is recorded."""
    watch_id = two_deliveries(engine)
    one, two = (watch_id, 1), (watch_id, 2)
    with engine.begin() as conn:
        lease_due(conn, NOW, 10, LEASE)
    given = NOW + LEASE
    with engine.begin() as conn:  # the first worker stalls; another takes `one`
        taken = lease_due(conn, NOW + timedelta(seconds=31), 1, LEASE)
    assert [(d.watch_id, d.event_id) for d in taken] == [one]
    back = NOW + timedelta(seconds=40)
    failed = [Outcome(*key, 0, "failed", "answered 500", given) for key in (one, two)]
    with engine.begin() as conn:
        record_outcomes(conn, failed, back, [5.0, 5.0])
    assert ends(engine) == {
        one: NOW + timedelta(seconds=61),  # still the other worker's lease
        two: back + timedelta(seconds=5),  # the first's own: due again on the schedule
    }


@starts_with_personas
def test_a_lease_joins_only_its_page_of_a_watchs_backlog(pg_engine) -> None:
    """A lease of a page (PostgreSQL) joined every due delivery of the watch to its event
    and record, then sorted them for the page: the join to the record by its whole key is
    taken for one row, so the sort looked free (4,626 due, 64-80 ms a page of 64; a backlog
    read again for each page). The page is chosen from the outbox first: of 120 due, a lease
    of 5 reads 5 events (120 before), oldest first, and leaves the rest due. Its rows are
    leased in one statement, not one a row, each planned for its values (session 55)."""
    from sqlalchemy import event, text

    P.load_personas(pg_engine)
    spec = watch_spec({"name": "w", "webhook": {"url": "https://hooks.example.com/w"}})
    with pg_engine.begin() as conn:
        watch_id = int(create_watch(conn, P.SOUTHENERGY, spec, new_secret())["id"])
    lk_requests(pg_engine, range(120))
    catch_up(pg_engine)
    with pg_engine.begin() as conn:  # as autovacuum finds it once a backlog has grown
        conn.execute(text("ANALYZE webhook_outbox"))
    read = text(
        "SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname = 'watch_event'"
    )
    updates: list[int] = []

    def count(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        if statement.startswith("UPDATE webhook_outbox"):
            updates.append(len(parameters) if executemany else 1)

    event.listen(pg_engine, "before_cursor_execute", count)
    try:
        with pg_engine.begin() as conn:
            before = conn.execute(read).scalar_one()  # the connection's last, not yet flushed
            leased = lease_due(conn, NOW, 5, LEASE)
            events_read = conn.execute(read).scalar_one() - before
    finally:
        event.remove(pg_engine, "before_cursor_execute", count)
    assert updates == [1]
    assert [(d.watch_id, d.event_id) for d in leased] == [(watch_id, n) for n in range(1, 6)]
    assert events_read <= 10, events_read
    assert sum(at <= NOW for at in ends(pg_engine).values()) == 115


@starts_with_personas
def test_a_lease_page_keeps_one_generic_plan_that_reads_only_its_watch(pg_engine) -> None:
    """Planned for its values every call, the lease's page cost 4-9 ms of planning against
    1 ms of running (the record's partitions, the rule's subqueries; session 55). Its generic
    plan picked the page by `ix_webhook_outbox_next_attempt_at`, filtering the watch: a
    lease of another receiver's page walked every row due before it (8512bce). The pick's
    range of (watch, due time) pairs with the watch fixed has one index it fits: of two
    watches, the first's 120 due first, five leases of 5 of the second, each read 10 outbox
    rows (the page's 5, then each by its key), prepared and generic from the second on (after
    the ALTER below, the last): 130 with the due time bounded alone; once the statistics are
    a store of 13,000 watches', 191-225 with the range alone (the primary key, the watch's
    backlog sorted)."""
    from sqlalchemy import event, text

    P.load_personas(pg_engine)
    ids = []
    with pg_engine.begin() as conn:
        for name in ("first", "second"):
            url = f"https://hooks.example.com/{name}"
            spec = watch_spec({"name": name, "webhook": {"url": url}})
            ids.append(int(create_watch(conn, P.SOUTHENERGY, spec, new_secret())["id"]))
    lk_requests(pg_engine, range(120))
    catch_up(pg_engine)
    first, second = ids
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE webhook_outbox SET next_attempt_at = next_attempt_at - interval '1 day'"
                " WHERE watch_id = :w"
            ),
            {"w": first},
        )
        conn.execute(text("ANALYZE webhook_outbox"))
    reads: list[int] = []

    def outbox_read(conn) -> int:  # on the statement's own connection, in its transaction
        with conn.connection.dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT idx_tup_fetch + seq_tup_read FROM pg_stat_xact_user_tables "
                "WHERE relname = 'webhook_outbox'"
            )
            return int(cursor.fetchone()[0])

    def before(conn, _cursor, statement, *_) -> None:
        if statement.startswith("WITH picked"):
            reads.append(-outbox_read(conn))

    def after(conn, _cursor, statement, *_) -> None:
        if statement.startswith("WITH picked"):
            reads[-1] += outbox_read(conn)

    event.listen(pg_engine, "before_cursor_execute", before)
    event.listen(pg_engine, "after_cursor_execute", after)
    try:
        with pg_engine.connect() as conn:
            for n in range(5):  # each later than the last lease's end: its rows due again
                if n == 3:  # the statistics of a store of 13,000 watches, planned again
                    with conn.begin():
                        conn.execute(
                            text(
                                "ALTER TABLE webhook_outbox ALTER COLUMN watch_id"
                                " SET (n_distinct = 13000)"
                            )
                        )
                        conn.execute(text("ANALYZE webhook_outbox"))
                with conn.begin():
                    # a store this small is read whole by any plan: without the sequential
                    # scan, what the planner weighs is the indexes, as on a store of size
                    conn.execute(text("SET LOCAL enable_seqscan = off"))
                    leased = lease_due(conn, NOW + 3 * n * LEASE, 5, LEASE, lambda _: {second: 5})
                assert [d.watch_id for d in leased] == [second] * 5
            plans = conn.exec_driver_sql(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE strpos(statement, 'picked') > 0"
            ).all()
    finally:
        event.remove(pg_engine, "before_cursor_execute", before)
        event.remove(pg_engine, "after_cursor_execute", after)
    assert plans == [(1, 0)], plans  # psycopg prepares again after an ALTER: the last lease
    assert reads == [10] * 5, reads


@starts_with_personas
def test_a_leases_access_log_entries_keep_one_plan(pg_engine) -> None:
    """A lease writes one access-log entry a delivery, and queues its leaf: planned for their
    values each (the sessions' force_custom_plan), 256 entries cost ~30% more than on one
    generic plan (audit 56c). Three leases of two: the two inserts, prepared, run generic
    plans only."""
    from servicetrail.store.logged_reads import lease_deliveries

    P.load_personas(pg_engine)
    two_deliveries(pg_engine)
    with pg_engine.connect() as conn:
        for n in range(3):  # each later than the last lease's end: its rows due again
            with conn.begin():
                assert len(lease_deliveries(conn, NOW + 3 * n * LEASE, 10, LEASE)) == 2
        plans = conn.exec_driver_sql(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE starts_with(statement, 'INSERT INTO access_log ') "
            "OR starts_with(statement, 'INSERT INTO log_pending ')"
        ).all()
    assert len(plans) == 2 and all(generic and not custom for generic, custom in plans), plans


@starts_with_personas
def test_a_rounds_held_deliveries_go_to_postgresql_as_two_arrays(pg_engine) -> None:
    """Each round locks every delivery its worker holds, checks again the visibility of
    those waiting and renews the leases due for it; sent as an IN list of pairs, two bind
    parameters each, each round's statement was new text and planned again (256 held:
    planning 17.6 ms against running 7 ms; finding 54e 1; the renewal's, session 55). Of 300
    held, 2 real: the statements carry a few parameters, the 298 not there are found hidden,
    the 2 stay, and are renewed only on the end their rows hold."""
    from sqlalchemy import event

    P.load_personas(pg_engine)
    watch_id = two_deliveries(pg_engine)
    real = [(watch_id, 1), (watch_id, 2)]
    gone = [(watch_id + 1 + n, n + 1) for n in range(298)]
    sent: list[int] = []

    def count(_conn, _cursor, _statement, parameters, _context, executemany) -> None:
        sets = parameters if executemany else [parameters]
        sent.append(max((len(p) for p in sets), default=0))

    event.listen(pg_engine, "before_cursor_execute", count)
    try:
        with pg_engine.begin() as conn:
            lock_in_key_order(conn, [*gone, *real])
            hidden = hidden_since_lease(conn, [*real, *gone])
    finally:
        event.remove(pg_engine, "before_cursor_execute", count)
    held = ends(pg_engine)
    until = NOW + LEASE
    leases = {**{key: until for key in gone}, real[0]: held[real[0]], real[1]: until}
    event.listen(pg_engine, "before_cursor_execute", count)
    try:
        with pg_engine.begin() as conn:
            renewed = renew(conn, leases, until + LEASE)
    finally:
        event.remove(pg_engine, "before_cursor_execute", count)
    assert hidden == gone
    assert sorted(ends(pg_engine)) == real
    assert renewed == [real[0]]
    assert ends(pg_engine)[real[0]] == until + LEASE
    assert max(sent) <= 8, sent
