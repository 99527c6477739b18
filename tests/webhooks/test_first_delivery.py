"""A server's first webhook delivery imports aiohttp (and the CA certificates it loads) off
the event loop: on it, 0.18 s of CPU, 1-2.6 s at a load of 15-20, held every request the
server's worker was answering, and the leases of that round (audit 67c). Run in a process of
its own: the suite's own processes have imported aiohttp already."""

from __future__ import annotations

import os
import subprocess
import sys

from servicetrail import settings
from servicetrail.domain.watches import watch_spec
from servicetrail.store.engine import open_store
from servicetrail.store.watches import create_watch
from servicetrail.webhooks.signing import new_secret
from tests import personas as P
from tests.live_server import wait_until
from tests.webhooks.receiver import Receiver

# the thread aiohttp is imported on, beside the one that runs the loop, said by the process
# that delivers: a finder first on sys.meta_path is asked for it by any import, wherever
_DELIVERING = """
import asyncio, sys, threading

imported_on = []

class Told:  # told of each import as it starts, on the thread that imports
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp":
            imported_on.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Told())
from servicetrail.store.engine import open_store
from servicetrail.webhooks.deliver import Deliverer

assert "aiohttp" not in sys.modules, "imported before the first delivery"
engine = open_store(sys.argv[1])

async def main():
    stop = asyncio.Event()
    worker = asyncio.create_task(Deliverer(engine, schedule=[0.1]).run(stop))
    print(threading.current_thread().name, flush=True)  # the loop's
    await asyncio.to_thread(sys.stdin.readline)  # the test says when it has its delivery
    stop.set()
    await worker

asyncio.run(main())
print(",".join(imported_on), flush=True)
"""


def test_the_first_delivery_imports_aiohttp_off_the_loop(sqlite_url, monkeypatch) -> None:
    monkeypatch.setenv("SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK", "1")
    settings.reload()
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    with Receiver() as receiver:
        with engine.begin() as conn:
            made = create_watch(
                conn,
                P.SOUTHENERGY,
                watch_spec({"name": "first", "webhook": {"url": receiver.url("/a")}}),
                new_secret(),
            )
        receiver.secrets["/a"] = made["webhook"]["secret"]
        P.requests_to_esme_1(engine, [1], counter_from=900, at=P.t("2025-04-01T10:00:00Z"))
        engine.dispose()
        delivering = subprocess.Popen(
            [sys.executable, "-c", _DELIVERING, sqlite_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "SERVICETRAIL_WEBHOOK_ALLOW_LOOPBACK": "1"},
        )
        try:
            delivered = wait_until(lambda: len(receiver.received) >= 1, 60)
            out, err = delivering.communicate(b"stop\n", timeout=60)
        finally:
            if delivering.poll() is None:
                delivering.kill()
                delivering.wait()
    assert delivered and delivering.returncode == 0, err.decode()
    loop_thread, imported_on = out.decode().split()
    assert [r.error for r in receiver.received] == [""]
    assert imported_on and loop_thread not in imported_on.split(","), (loop_thread, imported_on)
