"""Durability (SPEC section 6): the receiver goes away, the server is killed with SIGKILL
while deliveries are pending, more records arrive while nothing runs; a `servicetrail
deliver` started afterwards delivers every event, each verified by the reference library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from servicetrail import settings
from servicetrail.domain.watches import watch_spec
from servicetrail.store.watches import create_watch
from servicetrail.webhooks.signing import new_secret
from tests import personas as P
from tests.web.live_server import live_server
from tests.webhooks.receiver import Receiver
from tests.webhooks.more_requests import add_requests
from tests.store.stamped_behind import SAID

SERVICETRAIL = Path(sys.executable).with_name("servicetrail")
ENV = {
    "SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK": "1",
    "SERVICETRAIL_WEBHOOK_RETRY_SECONDS": "0.5,0.5,0.5,0.5,0.5,"
    "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
    "SERVICETRAIL_WEBHOOK_TIMEOUT": "1",
}


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def deliver_worker(db_url: str) -> subprocess.Popen:
    """`servicetrail deliver` on the store, alone, its standard error kept."""
    return subprocess.Popen(
        [str(SERVICETRAIL), "--db", db_url, "deliver"],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@P.starts_with_personas
@pytest.mark.slow
def test_nothing_pending_is_lost_to_a_kill(engine, db_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    P.load_personas(engine)
    secret = new_secret()
    receiver = Receiver().__enter__()
    port = receiver.port
    with engine.begin() as conn:
        made = create_watch(
            conn,
            P.SOUTHENERGY,
            watch_spec({"name": "k", "webhook": {"url": receiver.url("/k")}}),
            secret,
        )
    receiver.secrets["/k"] = secret
    with live_server(db_url, tmp_path, env=ENV):
        add_requests(engine, 0, 10)
        assert wait_for(lambda: len({r.headers["webhook-id"] for r in receiver.received}) == 10, 30)
        receiver.__exit__()  # the receiver goes away
        add_requests(engine, 10, 10)
        time.sleep(2)  # attempts fail meanwhile
        server = [p for p in _children() if "serve" in p[1]]
        assert server, "the server process"
        os.kill(server[0][0], signal.SIGKILL)
    add_requests(engine, 20, 10)  # nothing runs
    revived = Receiver(port=port)
    revived.secrets["/k"] = secret
    with revived:
        worker = deliver_worker(db_url)
        try:
            want = {f"evt_{made['id']}_{n}" for n in range(1, 31)}

            def got() -> set[str]:
                return {r.headers["webhook-id"] for r in revived.received} | {
                    r.headers["webhook-id"] for r in receiver.received
                }

            assert wait_for(lambda: got() >= want, 60), sorted(want - got())
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
    assert all(r.verified and not r.error for r in revived.received)


@P.starts_with_personas
def test_a_delivery_in_flight_when_its_worker_is_killed_is_due_again_within_seconds(
    engine, db_url, monkeypatch
) -> None:
    """A `servicetrail deliver` killed (SIGKILL) while an attempt is in flight: the delivery
    comes due again when its lease ends, for another worker to send. Sized to the worker's
    whole queue (timeout x 18 + 5: 275 s at the default 15 s), the lease kept the receiver
    waiting minutes (audit 47a: 274.5 s on both engines); short and renewed while held, it
    ends within the attempt's time, 5 s to record it and 10 s of renewals (17 s here)."""
    from datetime import datetime, timezone

    from servicetrail.store.watch_tables import webhook_outbox

    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    P.load_personas(engine)
    secret = new_secret()
    with Receiver(answer=lambda path, n: (200, 10.0)) as never_in_time:
        never_in_time.secrets["/x"] = secret
        with engine.begin() as conn:
            spec = watch_spec({"name": "x", "webhook": {"url": never_in_time.url("/x")}})
            create_watch(conn, P.SOUTHENERGY, spec, secret)
        add_requests(engine, 0, 1)
        worker = subprocess.Popen(
            [str(SERVICETRAIL), "--db", db_url, "deliver"],
            env={**os.environ, **ENV, "SERVICETRAIL_WEBHOOK_TIMEOUT": "2"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_for(lambda: bool(never_in_time.received), 30)
            time.sleep(0.5)  # the attempt in flight
        finally:
            worker.kill()
            worker.wait(10)
        killed = datetime.now(timezone.utc)
    with engine.connect() as conn:
        due = conn.execute(sqlalchemy.select(webhook_outbox.c.next_attempt_at)).scalar_one()
    assert timedelta(0) < due - killed <= timedelta(seconds=17), due - killed


@P.starts_with_personas
@pytest.mark.parametrize(
    ("db_url", "stop"),
    [("sqlite", signal.SIGTERM), ("postgresql", signal.SIGINT)],
    ids=["sqlite-sigterm", "postgresql-ctrl-c"],
    indirect=["db_url"],
)
def test_a_worker_alone_seals_its_attempts_access_entries_as_it_stops(
    engine, db_url, monkeypatch, stop
) -> None:
    """Each attempt is an access-log entry (SPEC 8: sealed at least once a minute and at
    shutdown). `serve` sealed them, `deliver` never did: a store served by workers alone
    kept them out of every signed checkpoint (audit 42c). Either signal stops it gracefully
    (0), Ctrl-C too now that the command notes it in a handler of its own (session 46).
    Each signal on one engine and each engine with one signal: the signals reach the
    command alike on both (its event loop's handlers), and the last seal is the engine's
    whichever signal asked for it; all four pairs were ~1.2 s of CPU each (session 62)."""
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    P.load_personas(engine)
    secret = new_secret()
    with Receiver() as receiver:
        receiver.secrets["/s"] = secret
        with engine.begin() as conn:
            spec = watch_spec({"name": "s", "webhook": {"url": receiver.url("/s")}})
            create_watch(conn, P.SOUTHENERGY, spec, secret)
        add_requests(engine, 0, 3)
        worker = deliver_worker(db_url)
        try:
            assert wait_for(lambda: len(receiver.received) >= 3, 30)
        finally:
            worker.send_signal(stop)
            _, said = worker.communicate(timeout=30)
    assert worker.returncode == 0, said.decode()
    assert b"delivered 3" in said and b"Traceback" not in said
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT count(*) FROM access_log WHERE action = 'deliver'")
        ).scalar_one()
        queued = conn.execute(
            text("SELECT count(*) FROM log_pending WHERE family = 'access'")
        ).scalar_one()
    assert attempts >= 3 and queued == 0


def _children() -> list[tuple[int, str]]:
    """(pid, command line) of this test process's child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                found.append(
                    (
                        int(entry.name),
                        (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(),
                    )
                )
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_standalone_worker_on_a_store_upgraded_under_it_exits_2_saying_restart(
    sqlite_url,
) -> None:
    """`servicetrail deliver` itself, not the Deliverer alone (test_delivery): the process
    ends, with the CLI's `Error:` and exit 2, no traceback, and its seal at the end does not
    hide why. A process costs a second or two; SQLite alone, as the engines differ only in
    when the worker looks, which test_delivery shows on both (review 49b)."""
    from servicetrail.store.engine import make_engine

    worker = deliver_worker(sqlite_url)
    try:
        assert worker.stderr is not None
        assert b"delivering webhooks" in worker.stderr.readline()  # started, and watching
        store = make_engine(sqlite_url)
        with store.begin() as conn:  # as `db upgrade` stamps it, last
            conn.execute(text("UPDATE alembic_version SET version_num = '0026_later'"))
        store.dispose()
        assert worker.wait(10) == 2
        said = worker.stderr.read().decode()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    last = said.splitlines()[-1]
    assert last.startswith("Error: ") and SAID in last and "revision 0026_later" in last, said
    assert said.count("restart") == 1, said  # the Error line alone, no last seal's
    assert "Traceback" not in said
