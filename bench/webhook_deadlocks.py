#!/usr/bin/env python3
"""Webhook rounds, deletes of watches, registry changes and the matcher all at once on
PostgreSQL, counting the deadlocks PostgreSQL broke (review 34a's stress, widened by review
35d; the counts of each session are in BENCHMARKS.md).

    .venv/bin/python bench/webhook_deadlocks.py postgresql://.../NEWDB --seconds 40
    PYTHONPATH=OLD/src .venv/bin/python bench/webhook_deadlocks.py URL ...   # another src/

The database must be new (the script loads the test personas into it). Threads: 2 create
watches with webhooks (at most 60), 2 delete them, 1 deletes one twice at once (a client
that sends its DELETE twice), 1 appends records, 2 match, 1 plays a registry change (the
registry's lock, then matching in steps of 2 records), 1 marks events read, 1 skips hidden
unread events as a page does, and 3 play a deliverer's rounds through the store's functions
as `webhooks.deliver` does: the webhooks that answered 410 turned off (put off to a later
round during a registry change), then the deliveries locked in key order; random outcomes
(60% delivered, 30% failed, 10% 410 Gone); those hidden since the lease; about half the
leases held renewed (where `src/` renews them); a lease; now and then a release. Prints
each kind's operations, the deadlocks and other errors by kind, and what is left pending. A
skip that could not have its locks in time is put off, as a page puts it off: counted in
"skip" and in "skip put off", not as an error (sessions before 55 counted it as one).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import inspect
import random
import sys
import threading
import time
import traceback
from dataclasses import replace
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from servicetrail.domain.model import SatRecord  # noqa: E402
from servicetrail.domain.watches import watch_spec  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402
from servicetrail.store.outbox import (  # noqa: E402
    Due,
    Outcome,
    hidden_since_lease,
    lease_due,
    record_outcomes,
    release,
)
from servicetrail.store.visibility_index import lock_registry  # noqa: E402
from servicetrail.store.watch_events import mark_read, skip_hidden_unread  # noqa: E402
from servicetrail.store.watch_matcher import match_new_records  # noqa: E402
from servicetrail.store.watches import create_watch, delete_watch  # noqa: E402
from servicetrail.store.writer import append_records  # noqa: E402
from tests.personas import ESME_1, LK_OU, SOUTHENERGY, load_personas, t  # noqa: E402

try:  # the deliverer's own steps, where the code under test has them
    from servicetrail.store.outbox import lock_in_key_order
except ImportError:  # older src/

    def lock_in_key_order(conn, keys) -> None:  # type: ignore[no-untyped-def]
        return None


try:  # turning a 410's webhook off: store.outbox_gone since session 56, store.outbox before
    from servicetrail.store.outbox_gone import disable_gone
except ImportError:
    try:
        from servicetrail.store.outbox import disable_gone  # type: ignore[attr-defined,no-redef]
    except ImportError:  # older src/

        def disable_gone(conn, watch_ids, now) -> bool:  # type: ignore[no-untyped-def]
            return True


try:  # a round's statements on what it holds planned once (session 55)
    from servicetrail.store.engine import planned_generically
except ImportError:
    planned_generically = lambda conn: contextlib.nullcontext()  # noqa: E731

# where `src/` records a round's outcomes under the round's own locks (session 55)
UNDER_ROUND_LOCKS = "locked" in inspect.signature(record_outcomes).parameters

# where `src/` fences a failure by the lease it was made on (audit 47i)
FENCED = "lease_end" in getattr(Outcome, "__dataclass_fields__", {})

try:  # the leases a worker holds, renewed in its round (session 47)
    from servicetrail.store.outbox import renew
except ImportError:

    def renew(conn, leases, until) -> list:  # type: ignore[no-untyped-def]
        return list(leases)


try:  # a kept webhook's queue, dropped by the round's second transaction (session 36)
    from servicetrail.store.outbox_gone import drop_turned_off
except ImportError:
    try:
        from servicetrail.store.outbox import drop_turned_off  # type: ignore[attr-defined,no-redef]
    except ImportError:

        def drop_turned_off(conn, watch_ids) -> None:  # type: ignore[no-untyped-def]
            return None


LATER = t("2025-04-01T10:00:00Z")
HOOK = {"url": "https://hooks.example.com/w"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="a new PostgreSQL database")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--deliverers", type=int, default=3, help="rounds run at once")
    a = parser.parse_args()
    engine = open_store(a.url)
    load_personas(engine)
    stop = time.monotonic() + a.seconds
    ops: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    first_of: dict[str, str] = {}
    numbers = iter(range(1, 10**9))
    numbers_lock = threading.Lock()

    def failed(kind: str, e: Exception) -> None:
        key = f"{kind}: {type(getattr(e, 'orig', e)).__name__}"
        errors[key] += 1
        first_of.setdefault(key, "".join(traceback.format_exception_only(e))[:300])

    def looping(kind: str, step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while time.monotonic() < stop:
                try:
                    step()
                    ops[kind] += 1
                except Exception as e:  # counted: the figure is how many
                    failed(kind, e)
                    time.sleep(0.01)

        return run

    def create() -> None:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM watch")).scalar_one() > 60:
                time.sleep(0.02)
                return
        with engine.begin() as conn:
            create_watch(conn, SOUTHENERGY, watch_spec({"name": "w", "webhook": HOOK}), "whsec_x")
        time.sleep(random.uniform(0, 0.05))

    def delete() -> None:
        with engine.connect() as conn:
            ids = conn.execute(text("SELECT id FROM watch")).scalars().all()
        if len(ids) < 3:
            time.sleep(0.02)
            return
        with engine.begin() as conn:
            delete_watch(conn, SOUTHENERGY, random.choice(ids))
        time.sleep(random.uniform(0, 0.05))

    def delete_twice() -> None:
        with engine.connect() as conn:
            ids = conn.execute(text("SELECT id FROM watch")).scalars().all()
        if len(ids) < 3:
            time.sleep(0.02)
            return
        chosen = random.choice(ids)

        def once() -> None:
            try:
                with engine.begin() as conn:
                    delete_watch(conn, SOUTHENERGY, chosen)
            except Exception as e:  # counted: the figure is how many
                failed("delete_twice", e)

        both = [threading.Thread(target=once) for _ in range(2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()
        time.sleep(random.uniform(0, 0.05))

    def registry_change() -> None:
        with engine.begin() as conn:
            lock_registry(conn)
            while match_new_records(conn, batch=2, wait=True, gaps_final=True):
                time.sleep(random.uniform(0, 0.01))
        time.sleep(random.uniform(0.05, 0.3))

    def some_watches() -> list[tuple[int, int]]:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text("SELECT id, last_event_id FROM watch"))]

    def mark() -> None:
        watches = some_watches()
        if not watches:
            time.sleep(0.02)
            return
        watch_id, last = random.choice(watches)
        with engine.begin() as conn:
            mark_read(conn, SOUTHENERGY, watch_id, last or 1)
        time.sleep(random.uniform(0, 0.02))

    def skip() -> None:
        watches = some_watches()
        if not watches:
            time.sleep(0.02)
            return
        chosen = random.sample(watches, min(len(watches), 4))
        try:
            with engine.begin() as conn:
                skip_hidden_unread(conn, SOUTHENERGY, [(w, last or 1) for w, last in chosen])
        except OperationalError as e:
            # it waits SKIP_WAIT_SECONDS for the registry's lock (a registry change holds it
            # while it matches) or a watch's row, then gives up: the page that asked says
            # nothing and a later page skips them (web.signin.unread_now), as intended
            if type(e.orig).__name__ != "LockNotAvailable":
                raise
            ops["skip put off"] += 1
            return
        time.sleep(random.uniform(0, 0.02))

    def append() -> None:
        with numbers_lock:
            batch = [next(numbers) for _ in range(random.randint(1, 20))]
        records = [
            SatRecord(
                LATER + timedelta(seconds=n),
                "request",
                f"{LK_OU}:{ESME_1}:{n + 100}",
                "4.1.1",
                LK_OU,
                ESME_1,
                "",
                f"<b {n}>",
            )
            for n in batch
        ]
        with engine.begin() as conn:
            append_records(conn, records)
        time.sleep(random.uniform(0, 0.02))

    def match() -> None:
        with engine.begin() as conn:
            found = match_new_records(conn)
        if not found:
            time.sleep(0.005)

    def deliverer() -> None:
        held: list[Due] = []  # leased, not yet attempted
        ends: dict[tuple[int, int], datetime] = {}  # when each held lease ends in the store
        while time.monotonic() < stop:
            try:
                random.shuffle(held)
                tried = random.randint(0, len(held))
                attempted, waiting = held[:tried], held[tried:]
                outcomes = []
                for d in attempted:
                    status = random.choices(["delivered", "failed", "gone"], [6, 3, 1])[0]
                    error = "503" if status == "failed" else ""
                    outcome = Outcome(d.watch_id, d.event_id, d.attempts, status, error)
                    if FENCED:  # a failure recorded only on the lease it was made on
                        outcome = replace(outcome, lease_end=ends.get((d.watch_id, d.event_id)))
                    outcomes.append(outcome)
                waiting_keys = [(d.watch_id, d.event_id) for d in waiting]
                # about half of those held renewed, as a worker renews those due for it
                renewing = {k: ends[k] for k in waiting_keys if k in ends and random.random() < 0.5}
                now = datetime.now(timezone.utc)
                gone = {o.watch_id for o in outcomes if o.status == "gone"}
                with engine.begin() as conn:  # during a registry change: kept in webhook_gone
                    turned_off = disable_gone(conn, gone, now)
                if getattr(turned_off, "watches", ()):  # their queues, in a transaction alone
                    with engine.begin() as conn:
                        drop_turned_off(conn, turned_off.watches)
                with engine.begin() as conn:
                    with planned_generically(conn):
                        lock_in_key_order(
                            conn, [*((o.watch_id, o.event_id) for o in outcomes), *waiting_keys]
                        )
                        if outcomes:
                            locked = {"locked": True} if UNDER_ROUND_LOCKS else {}
                            record_outcomes(conn, outcomes, now, [0.01, 0.01, 0.01], **locked)
                        if waiting:
                            hidden_since_lease(conn, waiting_keys)
                        renewed = renew(conn, renewing, now + timedelta(seconds=5))
                    leased = lease_due(
                        conn,
                        now,
                        40,
                        timedelta(seconds=5),
                        accept=lambda d, held=set(waiting_keys): (
                            (d.watch_id, d.event_id) not in held
                        ),
                    )
                lost = set(renewing) - set(renewed)
                held = [d for d in waiting if (d.watch_id, d.event_id) not in lost] + leased
                kept = set(waiting_keys) - lost
                ends = {k: end for k, end in ends.items() if k in kept}
                ends.update((k, now + timedelta(seconds=5)) for k in renewed)
                ends.update(((d.watch_id, d.event_id), now + timedelta(seconds=5)) for d in leased)
                ops["round"] += 1
                ops["renewed"] += len(renewed)
                if held and random.random() < 0.05:
                    with engine.begin() as conn:
                        release(conn, [(d.watch_id, d.event_id) for d in held], now)
                    held, ends = [], {}
                    ops["release"] += 1
                time.sleep(random.uniform(0, 0.01))
            except Exception as e:  # counted: the figure is how many
                failed("round", e)
                held, ends = [], {}  # their leases end on their own
                time.sleep(0.01)

    threads = [looping("create", create) for _ in range(2)]
    threads += [looping("delete", delete) for _ in range(2)] + [looping("twice", delete_twice)]
    threads += [looping("registry", registry_change), looping("mark", mark), looping("skip", skip)]
    threads += [looping("append", append)] + [looping("match", match) for _ in range(2)]
    threads += [deliverer for _ in range(a.deliverers)]
    started = time.monotonic()
    running = [threading.Thread(target=body) for body in threads]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    with engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM webhook_outbox")).scalar_one()
    engine.dispose()
    deadlocks = sum(n for key, n in errors.items() if "Deadlock" in key)
    print(f"{time.monotonic() - started:.1f} s: {dict(ops)}; {pending} deliveries pending")
    print(f"deadlocks: {deadlocks}; errors: {dict(errors) or 'none'}")
    for key, first in first_of.items():
        print(f"  first {key}: {first.strip()}")


if __name__ == "__main__":
    main()
