#!/usr/bin/env python3
"""What `servicetrail serve` costs to start, for trees of the code alternated: the CPU (user +
system, from /proc) of the server's process from its launch until it answers /login and its
webhook worker has run its rounds for a second more, with no delivery due. The median of N
runs each, on a small SQLite store. CPU, not wall time: on a shared machine the wall time of
a 1 s start measures the queue.

    git worktree add /tmp/old origin/main
    .venv/bin/python bench/serve_start.py /tmp/old/src src --runs 9 --port 20801
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
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _start(src: str, url: str, port: int, folder: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    env["PYTHONPATH"] = src
    server = subprocess.Popen(
        [SERVICETRAIL, "--db", url, "serve", "--host", "127.0.0.1", "--port", str(port)],
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
        time.sleep(1)  # the webhook worker's rounds, nothing due
        return _cpu(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="src folders to compare (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/s.db"
        users = Path(folder) / "users.csv"
        users.write_text("user_id,party_id,party_name,role\n")
        subprocess.run(
            [SERVICETRAIL, "--db", url, "load", "users", str(users)],
            env={**os.environ, "PYTHONPATH": options.trees[0]},
            cwd=folder,
            check=True,
            capture_output=True,
        )
        used: dict[str, list[float]] = {t: [] for t in options.trees}
        for _ in range(options.runs):
            for tree in options.trees:
                used[tree].append(_start(tree, url, options.port, folder))
        for tree in options.trees:
            runs = " ".join(f"{u:.2f}" for u in used[tree])
            print(f"{tree}: median {statistics.median(used[tree]):.3f} s CPU  ({runs})")


if __name__ == "__main__":
    main()
