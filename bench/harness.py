"""What the benchmarks share: the stores they measure on (SQLite files, databases on a
throwaway PostgreSQL server), the server they measure through, timed child processes,
percentiles, and the raw floor of a device search."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # devsupport/, beside src/ and tests/

from devsupport.pg_server import PgServer  # noqa: E402

BIN = str(Path(sys.executable).with_name("servicetrail"))
OUT = ROOT / "bench" / "out"


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (1 to 99), interpolated between the measured values."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


class Store:
    """Where a benchmark makes its stores: SQLite files in `work`, or databases on `pg`."""

    def __init__(self, kind: str, work: Path, pg: PgServer | None = None) -> None:
        self.kind, self.work, self.pg = kind, work, pg

    def fresh(self, name: str) -> str:
        if self.kind == "sqlite":
            path = self.work / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            return f"sqlite:///{path}"
        assert self.pg is not None
        return self.pg.new_database()

    def raw(self, url: str) -> Any:
        """The driver's own connection: the floors run beneath SQLAlchemy."""
        if self.kind == "sqlite":
            return sqlite3.connect(url.removeprefix("sqlite:///"))
        import psycopg

        return psycopg.connect(url, prepare_threshold=None)


def on_each_engine(
    records: int,
    engines: str,
    name: str,
    measure: Callable[[Store, Path], dict[str, Any]],
    port: int = 0,
) -> dict[str, Any]:
    """Write a generated world of `records` SAT records (seed 2025) and its registry once, run
    `measure(store, folder)` on each engine (a throwaway PostgreSQL server for that one, on
    `port` if given, else a free one), print each engine's figures but its raw runs, and keep
    them all in bench/out/NAME-RECORDS.json."""
    from servicetrail.generate import World, write_world

    os.environ.setdefault("SERVICETRAIL_SIGNING_KEY", tempfile.mkdtemp() + "/bench.key")
    results: dict[str, Any] = {"records": {"n": records}}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "input"
        folder.mkdir()
        write_world(World(n_records=records, seed=2025), folder)
        for kind in filter(None, engines.split(",")):
            store = Store(kind, Path(work), _pg_server(port) if kind == "postgresql" else None)
            try:
                results[kind] = measure(store, folder)
            finally:
                if store.pg is not None:
                    store.pg.stop()
            print(kind, json.dumps({k: v for k, v in results[kind].items() if k != "runs"}))
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}-{records}.json").write_text(json.dumps(results, indent=1))
    return results


def _pg_server(port: int) -> PgServer:
    server = PgServer()
    server.port = port or server.port
    return server.start()


def store_at(url: str) -> Store:
    """The Store of a --store URL someone built already."""
    kind = "postgresql" if url.startswith("postgres") else "sqlite"
    return Store(kind, Path(tempfile.gettempdir()))


@contextmanager
def stores(
    engines: str, prefix: str, keep: Path | None = None, shared_buffers: str = "1GB"
) -> Iterator[list[Store]]:
    """A Store per engine of `engines` ("sqlite,postgresql"), all in one folder: `keep`, or a
    temporary one removed afterwards. PostgreSQL runs on a throwaway server for the block."""
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    kinds = engines.split(",")
    pg = PgServer(shared_buffers=shared_buffers).start() if "postgresql" in kinds else None
    try:
        yield [Store(kind, work, pg) for kind in kinds]
    finally:
        if pg is not None:
            pg.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


REGISTRY_FILES = ("users", "devices", "responsibilities")


def run_cli(args: list[str], env: dict[str, str] | None = None) -> None:
    """`servicetrail ARGS`; the end of its error output if it fails."""
    done = subprocess.run([BIN, *args], capture_output=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{args[2:4]} failed: {done.stderr[-500:]!r}")


def load_registry(url: str, folder: Path, env: dict[str, str] | None = None) -> None:
    """The generated world's registry (its CSV files in `folder`) into the store at `url`
    (`env`: of the code that is to use the store, which builds it at its own schema)."""
    for what in REGISTRY_FILES:
        run_cli(["--db", url, "load", what, str(folder / f"{what}.csv")], env)


def switched_off(folder: Path | str) -> dict[str, str]:
    """The environment for a child that runs the code under test with one of bench/'s
    switches (`folder`, e.g. without_index_and_logs) before it: the switch goes in front of
    the caller's PYTHONPATH. It replaced it, so from a clone the child ran the installed
    tree's code, not the clone's (audit 54f)."""
    under_test = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(folder), under_test))))


def store_of_records(store: Store, folder: Path, name: str) -> str:
    """A fresh store holding the generated world's registry and records, the records ingested
    without the visibility index and the logs (bench/without_index_and_logs), untimed: for a
    bench that writes one of those itself."""
    url = store.fresh(name)
    load_registry(url, folder)
    bare = ROOT / "bench" / "without_index_and_logs"
    run_cli(["--db", url, "ingest", str(folder / "sat.jsonl")], switched_off(bare))
    return url


def with_cpu_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A bench's rounds (each with client_cpu_s and server_cpu_s) and their medians."""
    return {
        "runs": runs,
        **{
            f"{side}_cpu_s_median": round(statistics.median(r[f"{side}_cpu_s"] for r in runs), 3)
            for side in ("client", "server")
        },
    }


def backend_cpu(pid: int | None) -> float:
    """CPU seconds of the PostgreSQL backend `pid` so far (0 for SQLite's None)."""
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(
    url: str,
    workers: int = 1,
    pythonpath: str | None = None,
    port: int | None = None,
    trusted_proxies: str | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """`servicetrail serve` on `port` (else a free one), once it answers; `pythonpath`: other
    code to run; `trusted_proxies`: its --trusted-proxies (a bench then says each request's
    client in X-Forwarded-For, as a proxy would)."""
    port = port or free_port()
    trusting = ["--trusted-proxies", trusted_proxies] if trusted_proxies else []
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # its log is kept: a bench that meets an error answer can say what the server saw
    OUT.mkdir(exist_ok=True)
    _prune_serve_logs()
    log = OUT / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [BIN, "--db", url, "serve", "--port", str(port), "--workers", str(workers), *trusting],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return answering(proc, port, log)


def answering(
    proc: subprocess.Popen[bytes], port: int, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """The server started as `proc` on `port`, once it answers (30 s at most, else it is
    killed and the bench stops, naming its log)."""
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=1).read()
            return proc, port
        except Exception:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start; its log: {log}")


# the newest servers' logs kept in bench/out; older ones go when a server starts (a long-quiet
# log of a server still running could go too: its bench then names a file that is gone)
KEPT_SERVE_LOGS = 50


def _prune_serve_logs() -> None:
    logs = sorted(OUT.glob("serve-*.log"), key=_modified)
    for old in logs[:-KEPT_SERVE_LOGS]:
        old.unlink(missing_ok=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # pruned meanwhile by another bench starting its server
        return 0.0


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ends a server: SIGTERM, then SIGKILL if it has not gone within 30 seconds."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed_child(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds and peak RSS (MB) of one child process.

    The peak is the child's own VmHWM, read while it runs: ru_maxrss would include this
    benchmark's memory, which Linux carries into a child across exec."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak_kb = 0
    status_file = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    return (
        wall,
        peak_kb // 1024,
        subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode()),
    )


def device_page_floor(kind: str, party: str, user_ids: list[str], device: str) -> tuple[str, Any]:
    """A device's first page of ids under the rule, as SQL and parameters for the driver
    itself: the rule's clauses come from store.visibility_sql, so the floor cannot drift
    from the rule the product applies."""
    from sqlalchemy import bindparam, select
    from sqlalchemy.dialects import postgresql, sqlite

    from servicetrail.domain.visibility import Viewer
    from servicetrail.store.schema import sat_record
    from servicetrail.store.visibility_sql import viewer_params, visible_clause

    s = sat_record.c
    page = (
        select(s.id)
        .where(s.device_id == bindparam("dev"), visible_clause())
        .order_by(s.logged_at.desc(), s.id.desc())
        .limit(100)
    )
    values = {"dev": device, **viewer_params(Viewer(party, frozenset(user_ids)))}
    dialect = sqlite.dialect() if kind == "sqlite" else postgresql.psycopg.dialect()
    compiled = page.params(values).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    params = compiled.construct_params()
    if compiled.positiontup:  # SQLite's qmark style
        return compiled.string, tuple(params[name] for name in compiled.positiontup)
    return compiled.string, params
