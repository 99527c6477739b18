#!/usr/bin/env python3
"""What a `servicetrail` command costs as it starts, for two trees of the code alternated:
the CPU (user + system) of the whole command, and of its `--help`, which imports what the
command imports before it runs and does nothing else. The median of N runs each, on a small
SQLite store built from a `generate` world, with the output of both trees compared. CPU,
not wall time: on a shared machine the wall time of a 0.4 s start measures the queue.

    .venv/bin/servicetrail generate --records 2000 /tmp/w
    git worktree add /tmp/old origin/main
    .venv/bin/python bench/cli_start.py /tmp/w /tmp/old/src src --runs 9
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SERVICETRAIL = str(Path(sys.executable).with_name("servicetrail"))


def _run(
    src: str, store: str, args: list[str], cwd: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    env["PYTHONPATH"] = src
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ran = subprocess.run(
        [SERVICETRAIL, "--db", f"sqlite:///{store}", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return ran, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a folder `servicetrail generate` wrote")
    parser.add_argument("trees", nargs="+", help="src folders to compare (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    world, trees = options.world, options.trees
    with tempfile.TemporaryDirectory() as folder:
        store = f"{folder}/s.db"
        for kind in ("users", "devices", "responsibilities"):
            _run(trees[0], store, ["load", kind, str(world / f"{kind}.csv")], folder)
        _run(trees[0], store, ["ingest", str(world / "sat.jsonl")], folder)
        party = (world / "users.csv").read_text().splitlines()[1].split(",")[1]
        commands = {  # the command (run again: it adds nothing), and its --help
            "--help": (["--help"], ["--help"]),
            "records": (["records", "--party", party, "--limit", "5"], ["records", "--help"]),
            "ingest": (["ingest", str(world / "sat.jsonl")], ["ingest", "--help"]),
            "load": (["load", "users", str(world / "users.csv")], ["load", "--help"]),
            "log verify": (["log", "verify"], ["log", "verify", "--help"]),
        }
        print(f"{'command':11s} " + "  ".join(f"{'run / start CPU s':>20s}" for _ in trees))
        for name, (args, help_args) in commands.items():
            run: dict[str, list[float]] = {t: [] for t in trees}
            start: dict[str, list[float]] = {t: [] for t in trees}
            said: dict[str, tuple[int, str]] = {}  # each tree's first answer, in turn
            for _ in range(options.runs):
                for tree in trees:
                    ran, used = _run(tree, store, args, folder)
                    run[tree].append(used)
                    said.setdefault(tree, (ran.returncode, ran.stdout))
                    start[tree].append(_run(tree, store, help_args, folder)[1])
            figures = "  ".join(
                f"{statistics.median(run[t]):9.3f} / {statistics.median(start[t]):.3f}"
                for t in trees
            )
            same = "same output" if len(set(said.values())) == 1 else "OUTPUT DIFFERS"
            print(f"{name:11s} {figures}  {same}")


if __name__ == "__main__":
    main()
