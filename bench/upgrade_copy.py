#!/usr/bin/env python3
"""What `servicetrail db upgrade` from 0028 costs a store of --leaves Merkle leaves (finding
53b 1: migration 0029 copies every leaf and tile): a store built at 0028 by the migrations,
its leaves and tiles written in bulk by SQL (half the trail's, half the access log's, spread
over --months months, tiles at levels 4, 8, 12, ... as the seal makes them: some leaves/15),
then frozen and checkpointed as a store long in service is; then `db upgrade` run as a
subprocess and timed, with, sampled every 0.2 s:

- PostgreSQL: pg_wal's size (pg_ls_waldir), the database's size, the WAL written
  (pg_stat_wal), the temporary files (pg_stat_database), and the upgrading backend's peak RSS
  and CPU (its /proc stat: the last 0.2 s before it ends is missed);
- SQLite: the size of the store's -journal and -wal files;
- both: the command's own peak RSS and CPU (its rusage).

    .venv/bin/python bench/upgrade_copy.py postgresql://postgres@127.0.0.1:PORT/postgres
    .venv/bin/python bench/upgrade_copy.py sqlite --leaves 1000000

With --access-entries N the store is built at 0027 instead, holding N access-log entries
(SPEC 8) spread over --months months and their N leaves, and `db upgrade` runs 0028's copy of
the access log then 0029's of the leaves; the time and WAL written when the store reached 0028
are sampled too (`at_0028`).

    .venv/bin/python bench/upgrade_copy.py postgresql://... --access-entries 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

FAMILIES = ("sat", "access")
LEVELS = (4, 8, 12, 16, 20, 24, 28)


def logs(leaves: int, months: int) -> list[tuple[str, str, int, int]]:
    """(family, month, leaves in its log, its first entry id)."""
    each = leaves // (len(FAMILIES) * months)
    return [
        (family, f"2025-{m:02d}", each, 1 + (m - 1) * each)
        for family in FAMILIES
        for m in range(1, months + 1)
    ]


def build_postgresql(url: str, leaves: int, months: int) -> None:
    from alembic import command

    from servicetrail.store import migrate
    from servicetrail.store.engine import make_engine
    from servicetrail.store.partitions import ensure_months

    engine = make_engine(url)
    command.upgrade(migrate._config(engine), "0028")
    ensure_months(engine, [datetime(2025, m, 15, tzinfo=timezone.utc) for m in range(1, 13)])
    with engine.begin() as conn:
        for family, month, n, first in logs(leaves, months):
            conn.exec_driver_sql(
                "INSERT INTO log_leaf (family, month, leaf_index, entry_id, leaf_hash, salt) "
                f"SELECT '{family}', '{month}', i, {first} + i, sha256(int8send(i)), "
                f"substr(sha256(int8send(-i - 1)), 1, 16) FROM generate_series(0, {n - 1}) i"
            )
            for level in LEVELS:
                if n >> level:
                    conn.exec_driver_sql(
                        "INSERT INTO log_node (family, month, level, node_index, hash) "
                        f"SELECT '{family}', '{month}', {level}, j, sha256(int8send(j)) "
                        f"FROM generate_series(0, {(n >> level) - 1}) j"
                    )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE) log_leaf, log_node")
        conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()


# an entry as a search's reads leave it: some 100 bytes of filters, one Device
ENTRY = (
    "'2025-{m:02d}-01 00:00:00+00'::timestamptz + i * interval '{step} milliseconds', "
    "'P' || mod(i, 50), 'user-' || mod(i, 500), 'api', 'search', "
    "'{{\"device_id\": \"00-11-22-33-' || lpad(mod(i, 100000)::text, 8, '0') || "
    "'\", \"from\": \"2025-01-01T00:00:00Z\", \"to\": \"2025-02-01T00:00:00Z\"}}', "
    "mod(i, 20), 0, '[\"00-11-22-33-' || lpad(mod(i, 100000)::text, 8, '0') || '\"]'"
)


def build_access_log(url: str, entries: int, months: int) -> None:
    """A store at 0027 with `entries` access-log entries, a month's spread over its first 27
    days, and their leaves (the access log's monthly logs), sealed as long ago."""
    from alembic import command

    from servicetrail.store import migrate
    from servicetrail.store.engine import make_engine

    engine = make_engine(url)
    command.upgrade(migrate._config(engine), "0027")
    each = entries // months
    step = 27 * 86_400_000 // max(each, 1)
    with engine.begin() as conn:
        for m in range(1, months + 1):
            first = 1 + (m - 1) * each
            conn.exec_driver_sql(
                "INSERT INTO access_log (id, at, party_id, actor, interface, action, filters, "
                f"records_returned, mp141_records_returned, device_ids) SELECT {first} + i, "
                f"{ENTRY.format(m=m, step=step)} FROM generate_series(0, {each - 1}) i"
            )
            conn.exec_driver_sql(
                "INSERT INTO log_leaf (family, month, leaf_index, entry_id, leaf_hash, salt) "
                f"SELECT 'access', '2025-{m:02d}', i, {first} + i, sha256(int8send(i)), "
                f"substr(sha256(int8send(-i - 1)), 1, 16) FROM generate_series(0, {each - 1}) i"
            )
        conn.exec_driver_sql(f"SELECT setval('access_log_id_seq', {each * months})")
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM (FREEZE, ANALYZE) access_log, log_leaf")
        conn.exec_driver_sql("CHECKPOINT")
    engine.dispose()


def build_sqlite(path: Path, leaves: int, months: int) -> None:
    from alembic import command

    from servicetrail.store import migrate
    from servicetrail.store.engine import make_engine

    engine = make_engine(f"sqlite:///{path}")
    command.upgrade(migrate._config(engine), "0028")
    engine.dispose()
    db = sqlite3.connect(path)
    with db:
        for family, month, n, first in logs(leaves, months):
            db.execute(
                "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
                f"WHERE i < {n - 1}) "
                "INSERT INTO log_leaf (family, month, leaf_index, entry_id, leaf_hash, salt) "
                f"SELECT '{family}', '{month}', i, {first} + i, randomblob(32), randomblob(16) "
                "FROM s"
            )
            for level in LEVELS:
                if n >> level:
                    db.execute(
                        "WITH RECURSIVE s(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM s "
                        f"WHERE j < {(n >> level) - 1}) INSERT INTO log_node "
                        f"SELECT '{family}', '{month}', {level}, j, randomblob(32) FROM s"
                    )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


class Sampler(threading.Thread):
    """Calls `probe` every 0.2 s until stopped, keeping each figure's peak."""

    def __init__(self, probe: Callable[[], dict[str, int]]) -> None:
        super().__init__(daemon=True)
        self.probe, self.peak, self.done = probe, dict[str, int](), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for name, value in self.probe().items():
                    self.peak[name] = max(value, self.peak.get(name, 0))
            except Exception:  # a sample racing the upgrade's own DDL: the next one counts
                pass
            self.done.wait(0.2)


def pg_probe(
    url: str,
) -> tuple[Callable[[], dict[str, int]], Callable[[], dict[str, int]], dict[str, float]]:
    """The sampled figures, the cumulative counters read before and after, and when the
    store was first seen at 0028 (time, WAL written; cleared for each run)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)
    store = psycopg.connect(url, autocommit=True)
    reached: dict[str, float] = {}

    def sample() -> dict[str, int]:
        row = admin.execute(
            "SELECT (SELECT sum(size) FROM pg_ls_waldir()), pg_database_size(%s), "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')",
            (name,),
        ).fetchone()
        found = {"pg_wal_bytes": int(row[0]), "database_bytes": int(row[1])}
        revision = store.execute("SELECT version_num FROM alembic_version").fetchone()
        if revision and revision[0] == "0028" and not reached:  # 0028 committed, 0029 not
            reached.update(at=time.perf_counter(), wal_bytes=int(row[2]))
        for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active'", (name,)
        ).fetchall():
            status = Path(f"/proc/{pid}/status").read_text()
            hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
            if hwm:
                found["backend_peak_rss_kib"] = int(hwm.group(1))
            ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
            found["backend_cpu_ms"] = sum(map(int, ticks)) * 1000 // os.sysconf("SC_CLK_TCK")
        return found

    def counters() -> dict[str, int]:
        # after the backends of a command that ended have ended too: a killed command's goes on
        # with its statement until it next writes to the client, and holds its locks
        for _ in range(600):
            others = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                (name, store.info.backend_pid),
            ).fetchone()[0]
            if not others:
                break
            time.sleep(0.1)
        wal, temp, lsn = admin.execute(
            "SELECT (SELECT wal_bytes FROM pg_stat_wal), (SELECT temp_bytes FROM "
            "pg_stat_database WHERE datname = %s), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')",
            (name,),
        ).fetchone()
        return {
            "wal_written_bytes": int(wal),
            "temp_file_bytes": int(temp or 0),
            "wal_lsn_bytes": int(lsn),  # the server's whole WAL: pg_stat_wal lags a backend's
            "server_cpu_ms": server_cpu_ms(),
        }

    def server_cpu_ms() -> int:
        """The CPU of the server's processes that ended (the postmaster's children's: the
        upgrade's backend, an index build's parallel workers, but autovacuum's workers too,
        which analyse the store just built: noisy), 0 on a server not readable here."""
        try:
            folder = admin.execute("SHOW data_directory").fetchone()[0]
            pid = Path(folder, "postmaster.pid").read_text().split()[0]
            ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[13:15]
        except (OSError, psycopg.Error):
            return 0
        return sum(map(int, ticks)) * 1000 // os.sysconf("SC_CLK_TCK")

    return sample, counters, reached


def sqlite_probe(path: Path) -> Callable[[], dict[str, int]]:
    def sample() -> dict[str, int]:
        return {
            f"{suffix}_bytes": os.path.getsize(f"{path}-{suffix}")
            for suffix in ("journal", "wal")
            if os.path.exists(f"{path}-{suffix}")
        }

    return sample


def copied_ahead(url: str) -> dict[str, int]:
    """The rows of the copies ahead a killed upgrade left (none before session 57)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("access_log_0028", "log_leaf_0029", "log_node_0029")
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
        }


def upgrade(url: str, sample: Callable[[], dict[str, int]], kill_after: float | None) -> dict:
    """`db upgrade` timed; killed (SIGKILL) after `kill_after` seconds if given."""
    sampler = Sampler(sample)
    sampler.start()
    spent = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [str(Path(sys.executable).with_name("servicetrail")), "--db", url, "db", "upgrade"]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = child.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
    wall = time.perf_counter() - began
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.done.set()
    sampler.join()
    return {
        "wall_s": round(wall, 2),
        "exit": child.returncode,
        "said": out.strip().splitlines()[-3:],
        "command_peak_rss_kib": used.ru_maxrss,
        "command_cpu_s": round(used.ru_utime + used.ru_stime - spent.ru_utime - spent.ru_stime, 2),
        **sampler.peak,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("server", help="a PostgreSQL server's URL, or `sqlite`")
    ap.add_argument("--leaves", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--access-entries", type=int, help="a store at 0027 with so many entries")
    ap.add_argument("--kill-after", type=float, help="SIGKILL the first upgrade after so long")
    ap.add_argument("--keep", action="store_true", help="leave the store (its URL is printed)")
    a = ap.parse_args()
    began = time.perf_counter()
    result: dict = {"leaves": a.leaves}
    if a.server == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="upgrade-copy-"))
        path = folder / "store.db"
        build_sqlite(path, a.leaves, a.months)
        result["built_s"] = round(time.perf_counter() - began, 1)
        result["store_bytes"] = path.stat().st_size
        url, sample, counters = f"sqlite:///{path}", sqlite_probe(path), None
        reached = {}
    else:
        import psycopg

        base = a.server.replace("postgresql+psycopg://", "postgresql://")
        name = f"upgrade_copy_{os.getpid()}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url = base.rsplit("/", 1)[0] + "/" + name
        if a.access_entries:
            result = {"access_entries": a.access_entries}
            build_access_log(url, a.access_entries, a.months)
        else:
            build_postgresql(url, a.leaves, a.months)
        result["built_s"] = round(time.perf_counter() - began, 1)
        sample, counters, reached = pg_probe(url)
        result["database_bytes_before"] = sample()["database_bytes"]
    runs = []
    for kill_after in ([a.kill_after] if a.kill_after else []) + [None]:
        before = counters() if counters else {}
        reached.clear()
        began_run = time.perf_counter()
        run = upgrade(url, sample, kill_after)
        after = counters() if counters else {}
        run |= {name: after[name] - before[name] for name in after}
        if reached:  # when 0028 was seen committed (0.2 s a sample), and the WAL by then
            run["s_to_0028"] = round(reached["at"] - began_run, 1)
            run["wal_to_0028_bytes"] = int(reached["wal_bytes"]) - before["wal_lsn_bytes"]
        if kill_after and counters:
            run["kept_after_the_kill"] = copied_ahead(url)
        runs.append(run)
    result["runs"] = runs
    if a.keep:
        result["store"] = url
    elif a.server == "sqlite":
        shutil.rmtree(folder)
    else:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
