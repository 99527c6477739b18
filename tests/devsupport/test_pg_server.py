"""The tests' throwaway PostgreSQL server does not outlive the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from devsupport import pg_server

ROOT = Path(__file__).resolve().parent.parent.parent

OWNER = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from devsupport.pg_server import PgServer
server = PgServer(in_memory=True).start()
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print(server.folder, child, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a stopped server's postmaster, reparented to a container's
    init, may stay a zombie for a while after it exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_server_stops_when_the_process_that_started_it_is_killed() -> None:
    """A test worker killed by SIGKILL never runs its teardown: its server and /dev/shm folder
    stayed until someone killed them by hand; so did they while a child it forked (a fork
    pool's worker) ran on. Costs one initdb (~1 s): the watchdog can only be seen to stop a
    server that really ran."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    line = owner.stdout.readline().split()  # type: ignore[union-attr]
    folder, forked = Path(line[0]), int(line[1])
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
        assert _alive(forked)
    finally:
        os.kill(forked, 9)
        if _alive(postmaster):
            os.kill(postmaster, 9)
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_a_start_removes_the_servers_whose_owner_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watchdog killed with its owner (`pkill -9 python`) leaves the server to the next
    start; one whose owner still runs, or that has no owner (pg-throwaway's), stays."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.Popen(["true"])
    finished.wait()
    me = os.getpid()
    owners = {
        "dead": f"{finished.pid} 1",
        "reused": f"{me} 1",  # the pid now names a later process
        "alive": f"{me} {pg_server._started_at(me)}",
        "throwaway": None,
    }
    for name, owner in owners.items():
        (tmp_path / f"servicetrail-pg-{name}" / "data").mkdir(parents=True)
        if owner:
            (tmp_path / f"servicetrail-pg-{name}" / "owner").write_text(owner)
    (tmp_path / "servicetrail-pg-dead" / "data" / "postmaster.pid").write_text("1\n")
    starting = pg_server.PgServer()
    starting._stop_orphans()
    left = sorted(p.name for p in tmp_path.glob("servicetrail-pg-*") if p != starting.folder)
    assert left == ["servicetrail-pg-alive", "servicetrail-pg-throwaway"]
