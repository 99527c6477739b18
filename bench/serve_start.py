#!/usr/bin/env python3
"""What `servicetrail serve` costs to start, for trees of the code alternated: the CPU (user +
system, from /proc) of the server's processes (with `--workers N`, the supervisor and its
workers) from the launch until /login is answered, and then after its webhook workers have
run their rounds for `--settle` seconds more (1 by default) with no delivery due. The least
and the median of N runs each, on a small SQLite store. CPU, not wall time: on a shared
machine the wall time of a 1 s start measures the queue.

    git worktree add /tmp/old origin/main
    .venv/bin/python bench/serve_start.py /tmp/old/src src --runs 9 --port 20801 [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVICETRAIL = str(Path(sys.executable).with_name("servicetrail"))
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """The CPU of `pid` and of its descendants still running (a worker's own children ended
    and waited for are in its cutime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    used = sum(int(f) for f in fields[11:15]) / TICK  # utime, stime, cutime, cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                used += _cpu(int(child))
            except FileNotFoundError:  # ended meanwhile
                pass
    return used


def _start(
    src: str, url: str, port: int, folder: str, workers: int, settle: float
) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    # absolute: the server runs in the store's folder, where a relative `src` named nothing
    # and the installed servicetrail was measured instead
    env["PYTHONPATH"] = str(Path(src).resolve())
    server = subprocess.Popen(
        [SERVICETRAIL, "--db", url, "serve", "--host", "127.0.0.1", "--port", str(port)]
        + ["--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=folder,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        answered = _cpu(server.pid)
        time.sleep(settle)  # the webhook workers' rounds, nothing due
        return answered, _cpu(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="src folders to compare (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--settle", type=float, default=1.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/s.db"
        users = Path(folder) / "users.csv"
        users.write_text("user_id,party_id,party_name,role\n")
        subprocess.run(
            [SERVICETRAIL, "--db", url, "load", "users", str(users)],
            env={**os.environ, "PYTHONPATH": str(Path(options.trees[0]).resolve())},
            cwd=folder,
            check=True,
            capture_output=True,
        )
        used: dict[str, list[tuple[float, float]]] = {t: [] for t in options.trees}
        for _ in range(options.runs):
            for tree in options.trees:
                used[tree].append(
                    _start(tree, url, options.port, folder, options.workers, options.settle)
                )
        for tree in options.trees:
            for n, when in enumerate(("answered /login", f"+{options.settle:g} s")):
                cpu = [u[n] for u in used[tree]]
                runs = " ".join(f"{u:.2f}" for u in cpu)
                print(
                    f"{tree}, {when}: least {min(cpu):.3f} median {statistics.median(cpu):.3f}"
                    f" s CPU  ({runs})"
                )


if __name__ == "__main__":
    main()
