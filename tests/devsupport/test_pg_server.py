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
from devsupport.pg_server import PgServer

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


def test_a_start_removes_the_folders_no_process_owns_and_no_server_runs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg-throwaway's server stopped by other means, or a start killed in initdb before
    owners were written for it, left its folder for good; pg-throwaway's running server, and
    a folder made a moment ago whose owner is not written yet, stay."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.Popen(["true"])
    finished.wait()
    postmasters = {
        "half-built": None,
        "stopped": f"{finished.pid}\n/data\n0\n5999\n",
        "running": f"{os.getpid()}\n/data\n0\n5999\n",
    }
    old = time.time() - pg_server.ABANDONED_AFTER_SECONDS - 10
    for name, postmaster in postmasters.items():
        data = tmp_path / f"servicetrail-pg-{name}" / "data"
        data.mkdir(parents=True)
        if postmaster:
            (data / "postmaster.pid").write_text(postmaster)
        for folder in (data, data.parent):
            os.utime(folder, (old, old))
    (tmp_path / "servicetrail-pg-new").mkdir()
    (tmp_path / "servicetrail-pg-dev.pid").write_text("")  # pg-throwaway's state file
    os.utime(tmp_path / "servicetrail-pg-dev.pid", (old, old))
    starting = pg_server.PgServer()
    starting._stop_orphans()
    left = sorted(p.name for p in tmp_path.glob("servicetrail-pg-*") if p != starting.folder)
    assert left == ["servicetrail-pg-dev.pid", "servicetrail-pg-new", "servicetrail-pg-running"]


def test_pg_throwaway_finds_its_server_by_its_folders_mark_when_its_state_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state file lost, the server ran on unseen (it has no owner by design)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.Popen(["true"])
    finished.wait()
    state = str(tmp_path / "mine.state")
    servers = {"a": (state, finished.pid, 5998), "b": ("other", os.getpid(), 5997)}
    servers["c"] = (state, os.getpid(), 5999)
    for name, (named, pid, port) in servers.items():
        data = tmp_path / f"servicetrail-pg-{name}" / "data"
        data.mkdir(parents=True)
        (data.parent / pg_server.THROWAWAY_MARK).write_text(named)
        (data / "postmaster.pid").write_text(f"{pid}\n{data}\n0\n{port}\n")
    found = pg_server.found_throwaway(state)
    assert found is not None and found.port == 5999
    assert found.folder == tmp_path / "servicetrail-pg-c" and found.outlives_owner
    assert pg_server.found_throwaway(str(tmp_path / "lost")) is None


def test_a_start_whose_port_was_taken_meanwhile_starts_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The port is picked free before initdb's second or more, and another process may bind
    it meanwhile (a parallel test's server or client): the start failed for that alone."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = pg_server.PgServer(in_memory=True)
        server.port = busy  # as if someone bound it after it was picked
        try:
            server.start()
            assert server.port != busy
            server.admin("SELECT 1")
        finally:
            server.stop()


def _sessions_named(server: PgServer, name: str) -> int:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert found is not None
    return int(found[0])


def test_admin_statements_share_one_session_the_server_may_end(
    pg_server: PgServer,
) -> None:
    """A test's database is made and dropped by `admin`: on one kept session, not a new one
    each (a backend's start, ~5 ms of the server's CPU, twice a test). One the server ended
    is replaced at the next statement."""
    pg_server.admin("SET application_name = 'admin_kept'")
    pg_server.admin("SELECT 1")
    assert _sessions_named(pg_server, "admin_kept") == 1
    with __import__("psycopg").connect(pg_server.url(), autocommit=True) as other:
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'admin_kept'"
        )
    deadline = time.monotonic() + 30
    while _sessions_named(pg_server, "admin_kept") and time.monotonic() < deadline:
        time.sleep(0.05)
    pg_server.admin("SELECT 1")  # on a new session, the old one's setting gone with it
    assert _sessions_named(pg_server, "admin_kept") == 0


def test_a_forked_child_leaves_the_admin_session_to_its_parent(
    pg_server: PgServer,
) -> None:
    """A child forked with the session open (a fork pool's worker) and dropping its copy
    would end the parent's session on the socket they share."""
    import gc

    pg_server.admin("SET application_name = 'admin_parent'")
    child = os.fork()
    if child == 0:  # the child drops its copy and ends, as a fork pool's worker does
        gc.collect()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    pg_server.admin("SELECT 1")
    assert _sessions_named(pg_server, "admin_parent") == 1
    pg_server.admin("RESET application_name")
