"""The tests' throwaway PostgreSQL server does not outlive the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

OWNER = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from devsupport.pg_server import PgServer
server = PgServer(in_memory=True).start()
print(server.folder, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_stops_when_the_process_that_started_it_is_killed() -> None:
    """A test worker killed by SIGKILL never runs its teardown: its server and /dev/shm folder
    stayed until someone killed them by hand. Costs one initdb (~1 s): the watchdog can only
    be seen to stop a server that really ran."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    folder = Path(owner.stdout.readline().strip())  # type: ignore[union-attr]
    postmaster = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    try:
        assert _alive(postmaster)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 5
        while (_alive(postmaster) or folder.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(postmaster), "the server outlived its owner"
        assert not folder.exists(), "the server's folder outlived its owner"
    finally:
        if _alive(postmaster):
            os.kill(postmaster, 9)
        subprocess.run(["rm", "-rf", str(folder)], check=False)
