"""A pytest plugin that tells each test's CPU, the throwaway PostgreSQL servers' included:
`pytest -p devsupport.cpu_per_test -n 0 FILE` (PYTHONPATH holding the checkout). `time` sees the
test process and the children it waited for, never the servers, which pg_ctl starts apart
from it; a PostgreSQL test's server CPU is often as much as its own.

Each test's figures (setup, call and teardown together) go to $CPU_PER_TEST_FILE, costliest
first, "total own server test-id" a line; the run's totals are said at its end. Measurement
only: the suite never loads it (session 60)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devsupport.pg_server import PgServer

_TICK = os.sysconf("SC_CLK_TCK")
_SERVERS: list[PgServer] = []
_PER_TEST: dict[str, tuple[float, float]] = {}
_started = PgServer.start


def _start(self: PgServer) -> PgServer:
    _SERVERS.append(self)
    return _started(self)


PgServer.start = _start  # type: ignore[method-assign]


def _stat(pid: int | str) -> list[str] | None:
    try:  # the fields after the name, which may hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def server_cpu() -> float:
    """The CPU seconds of every server started so far: its postmaster with the backends that
    have ended (its children's times) and those still running."""
    postmasters = set()
    for server in _SERVERS:
        try:
            postmasters.add(int((server.data / "postmaster.pid").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue  # stopped: its figures were taken before (see `_stopped`)
    ticks = _stopped_ticks[0]
    for pid in os.listdir("/proc"):
        fields = _stat(pid) if pid.isdigit() else None
        if fields is None:
            continue
        if int(pid) in postmasters:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
        elif int(fields[1]) in postmasters:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


_stopped_ticks = [0]
_stop = PgServer.stop


def _stopped(self: PgServer) -> None:
    """A server's figures kept as it stops (its backends have ended by then, bar a few)."""
    try:
        fields = _stat(int((self.data / "postmaster.pid").read_text().split()[0]))
        if fields is not None:
            _stopped_ticks[0] += sum(int(fields[i]) for i in (11, 12, 13, 14))
    except (OSError, ValueError, IndexError):
        pass
    _stop(self)


PgServer.stop = _stopped  # type: ignore[method-assign]


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    own, server = own_cpu(), server_cpu()
    yield
    _PER_TEST[item.nodeid] = (own_cpu() - own, server_cpu() - server)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ranked = sorted(_PER_TEST.items(), key=lambda kv: -sum(kv[1]))
    out = os.environ.get("CPU_PER_TEST_FILE")
    if out:
        with open(out, "w") as f:
            for nodeid, (own, server) in ranked:
                f.write(f"{own + server:6.2f} {own:6.2f} {server:6.2f} {nodeid}\n")
    terminalreporter.write_line(
        f"cpu_per_test: the whole run {own_cpu():.2f} s of CPU here and {server_cpu():.2f} s in "
        f"the PostgreSQL servers; its tests {sum(o for o, _ in _PER_TEST.values()):.2f} s "
        f"and {sum(s for _, s in _PER_TEST.values()):.2f} s"
    )
