"""`servicetrail serve` asked to stop while event streams are open (web.stopping): each
stream ends at once and writes its closing access-log entry, and the server exits cleanly,
where uvicorn used to wait out its graceful timeout and then cancel them with tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from servicetrail.store.access_log import EntryFilter, iter_entries
from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import open_store
from tests import personas as P
from tests.access.test_streams_and_deliveries_access_log import lk_requests
from tests.web.live_server import SERVICETRAIL, free_port

GRACEFUL_SECONDS = 5  # web.server's timeout_graceful_shutdown


@pytest.mark.parametrize(("stop", "workers"), [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_open_streams_end_and_are_logged_when_the_server_is_asked_to_stop(
    sqlite_url, tmp_path, stop, workers
):
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "south", P.SOUTHENERGY, "correct horse battery")
        south = {"Authorization": f"Bearer {create_token(conn, 'south')}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(SERVICETRAIL), "--db", sqlite_url, "serve", "--port", str(port)]
            + ["--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "SERVICETRAIL_STREAM_POLL_SECONDS": "0.2"},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/login", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        watch = httpx.post(base + "/api/v1/watches", json={"name": "s"}, headers=south).json()
        lk_requests(engine, 1)  # one event each stream sends before the stop
        got: list[tuple[bytes, float]] = []
        started = threading.Barrier(3)

        def stream() -> None:
            url = f"{base}/api/v1/watches/{watch['id']}/stream"
            with httpx.stream("GET", url, headers=south, timeout=30) as response:
                body, waited = b"", False
                for chunk in response.iter_bytes():
                    body += chunk
                    if not waited and b"data: " in body:
                        waited = True
                        started.wait(timeout=20)  # both streams have their event: stop
                got.append((body, time.monotonic()))

        streams = [threading.Thread(target=stream) for _ in range(2)]
        for each in streams:
            each.start()
        started.wait(timeout=20)
        asked = time.monotonic()
        server.send_signal(stop)
        for each in streams:
            each.join(timeout=GRACEFUL_SECONDS + 10)
        assert server.wait(timeout=GRACEFUL_SECONDS + 10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    said = log_path.read_text()
    assert "Traceback" not in said and "Cancel" not in said, said
    assert len(got) == 2 and all(b"data: " in body for body, _ in got)
    assert all(ended - asked < GRACEFUL_SECONDS - 2 for _, ended in got)
    with engine.connect() as conn:
        entries = [e for e in iter_entries(conn, EntryFilter()) if e.action == "stream"]
    # each stream's entry before its first byte, and its closing one with the event it sent
    assert sorted(e.records_returned for e in entries) == [0, 0, 1, 1]
    engine.dispose()
