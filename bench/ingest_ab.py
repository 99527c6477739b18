#!/usr/bin/env python3
"""What the visibility index (issue 12) and the verifiable logs (issue 14) cost the ingest.

    .venv/bin/python bench/ingest_ab.py                          # 200k records, both engines
    .venv/bin/python bench/ingest_ab.py --records 50000 --engines sqlite --rounds 2

The same generated SAT JSON Lines file is ingested by `servicetrail ingest` into fresh stores
whose registry (users, devices, responsibilities) was loaded first, untimed, so the index has
every audience to write. Four arms, in a rotating order each round:
- shipped: the ingest as it is;
- without_index: no `sat_visibility` rows (bench/without_index on the child's PYTHONPATH);
- without_logs: no salt, leaf hash, leaves or seal (bench/without_logs);
- without_index_and_logs: neither (against without_logs: the index's cost without the seal's
  run-to-run noise on PostgreSQL).
Each switch's folder goes before the caller's PYTHONPATH, so that its arm runs the same code
as shipped (it replaced it: from a clone, the arms without ran the installed tree's code).
--arms picks some of them (all by default). --code NAME=DIR adds an arm: the shipped ingest
with DIR (another copy of src/, e.g. `git archive main src`) first on PYTHONPATH, to compare
a change with the code before it in the same runs (the arm's registry is loaded by that code
too, so a store is at its own code's schema).
Each run gives wall seconds and CPU seconds: the ingest process with its parse workers, and
on PostgreSQL the server's, from a CHECKPOINT before the ingest to one after it (so the
run's own dirty pages are written inside its window, and no one else's); the run's database
is dropped afterwards, so that autovacuum does not work through it during a later run.
One untimed ingest comes first (--warmup). The rate of an arm against another is the
inverse ratio of their means; the issues ask
shipped / without_index >= 0.8 and shipped / without_logs >= 0.9.
Results go to stdout and bench/out/ingest_ab-N.json.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import Store, load_registry, on_each_engine, run_cli  # noqa: E402
from logs import _server_cpu  # noqa: E402

from sqlalchemy import text  # noqa: E402

from servicetrail.store.engine import make_engine  # noqa: E402

ARMS = {
    "shipped": None,
    "without_index": str(ROOT / "bench" / "without_index"),
    "without_logs": str(ROOT / "bench" / "without_logs"),
    "without_index_and_logs": str(ROOT / "bench" / "without_index_and_logs"),
}
SWITCHES = tuple(ARMS)  # the arms that switch a part of the code under test off


def arm_env(arm: str) -> dict[str, str]:
    """The child's environment: a switch arm's folder before the code under test (the
    caller's PYTHONPATH, else the installed package), so that both arms run the same code; a
    --code arm's folder alone."""
    env = dict(os.environ)
    folder = ARMS[arm]
    if folder is not None:
        under_test = env.get("PYTHONPATH", "") if arm in SWITCHES else ""
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (folder, under_test)))
    return env


def compiled(folders: list[str]) -> None:
    """Byte-compile every tree an arm imports, once: with PYTHONDONTWRITEBYTECODE set (as it
    is here) a tree without __pycache__ was compiled again by each run, 0.13 s of CPU an
    ingest, which only the arms run from a fresh clone paid (the installed tree has its
    .pyc files)."""
    for folder in folders:
        compileall.compile_dir(folder, quiet=1, workers=1)


def ingest_once(url: str, folder: Path, arm: str, pg) -> dict:
    env = arm_env(arm)
    load_registry(url, folder, env)  # a --code arm's store at that code's schema
    _checkpoint(pg)
    time.sleep(0.3)  # the loads' backends reaped before the server's CPU is read
    before, server = resource.getrusage(resource.RUSAGE_CHILDREN), _server_cpu(pg)
    began = time.perf_counter()
    run_cli(["--db", url, "ingest", str(folder / "sat.jsonl")], env)
    wall = time.perf_counter() - began
    _checkpoint(pg)
    time.sleep(0.3)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _server_cpu(pg) - server
    counts = written(url)
    if pg is not None:
        # autovacuum would otherwise work through this store during a later run, any arm's
        pg.admin(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
        "server_cpu_s": round(server_cpu, 2),
        **counts,
    }


def _checkpoint(pg) -> None:
    """PostgreSQL writes the dirty pages it holds: before a run, those of the loads and of
    earlier runs, which a checkpoint falling into the run would otherwise charge to it (a
    swing of seconds, in any arm); after it, the run's own, charged to the run."""
    if pg is not None:
        pg.admin("CHECKPOINT")


def written(url: str) -> dict[str, int]:
    """What the arm left in the store, so a run shows its switch took effect."""
    engine = make_engine(url)
    with engine.connect() as conn:
        counts = {
            name: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for name, table in (
                ("records", "sat_record"),
                ("index_rows", "sat_visibility"),
                ("leaves", "log_leaf"),
            )
        }
    engine.dispose()
    return counts


def bench_engine(store: Store, folder: Path, rounds: int, arms: list[str], warmup: int) -> dict:
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for _ in range(warmup):
        # untimed: the first ingest into a new server (or a cold page cache) ran seconds
        # slower than the rest, and it fell on whichever arm came first (session 24: 10.0 s
        # wall against 7.2-7.5 for the same arm later)
        done = ingest_once(store.fresh("ab-warmup"), folder, arms[0], store.pg)
        print(store.kind, "warm-up", arms[0], done, file=sys.stderr, flush=True)
    for round_ in range(rounds):
        turn = round_ % len(arms)
        for arm in arms[turn:] + arms[:turn]:
            runs[arm].append(ingest_once(store.fresh(f"ab-{arm}"), folder, arm, store.pg))
            print(store.kind, arm, runs[arm][-1], file=sys.stderr, flush=True)

    def mean(arm: str, key: str) -> float:
        return sum(r[key] for r in runs[arm]) / len(runs[arm])

    cpu = {arm: round(mean(arm, "cpu_s") + mean(arm, "server_cpu_s"), 2) for arm in arms}
    wall = {arm: round(mean(arm, "wall_s"), 2) for arm in arms}
    result: dict = {"runs": runs, "cpu_s_mean": cpu, "wall_s_mean": wall}
    for name, base, arm in (
        ("index", "shipped", "without_index"),
        ("logs", "shipped", "without_logs"),
        ("index_without_logs", "without_logs", "without_index_and_logs"),
    ):
        if base in arms and arm in arms:
            result[f"rate_with_{name}_by_cpu"] = round(cpu[arm] / cpu[base], 3)
            result[f"rate_with_{name}_by_wall"] = round(wall[arm] / wall[base], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--arms", default=",".join(ARMS), help="a comma-separated subset of " + ", ".join(ARMS)
    )
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed ingests before the rounds (default 1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="the throwaway server's (default: free)"
    )
    a = parser.parse_args()
    for named in a.code:
        name, _, folder = named.partition("=")
        if not name or not Path(folder, "servicetrail").is_dir():
            parser.error(f"--code takes NAME=DIR, DIR holding servicetrail/: {named!r}")
        ARMS[name] = str(Path(folder).resolve())
    arms = [arm for arm in a.arms.split(",") if arm] + [n.partition("=")[0] for n in a.code]
    if not arms or any(arm not in ARMS for arm in arms):
        parser.error(f"--arms takes a comma-separated subset of {', '.join(ARMS)}")
    trees = {path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path}
    compiled(sorted(trees | {ARMS[arm] for arm in arms if ARMS[arm] is not None}))
    on_each_engine(
        a.records,
        a.engines,
        "ingest_ab",
        lambda store, folder: bench_engine(store, folder, a.rounds, arms, a.warmup),
        a.port,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
