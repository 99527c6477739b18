#!/usr/bin/env python3
"""What a read's seal costs: the statements it sends and its CPU, for one `servicetrail`
command run in this process (a CLI read's closing seal, `cli.store_access._seal_the_logs`)
or one `serve` (each seal of the server's: its rounds and the one as it stops).

    PYTHONPATH=src .venv/bin/python bench/seal_cost.py records --party P01 --limit 5
    PYTHONPATH=src .venv/bin/python bench/seal_cost.py serve --port 20510  # a read, then stop it

prints a line to standard error per seal: the statements its thread sent to the driver (on
SQLite every statement SQLite was handed, BEGIN and COMMIT among them, by its trace
callback; on PostgreSQL every execute, executemany and COPY of psycopg's cursors), how many
of those went through SQLAlchemy (a `before_cursor_execute` listener), those that read
log_checkpoint, its CPU (the thread's), its wall time (the server's planning and work with
the client's: PostgreSQL's shows only there) and the opens of the signing key file (a `*.key`
file). Only the sealing thread's statements are counted: a server's requests are not.
SEAL_COST_SHOW=1 lists the statements as they are sent.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import threading
import time
from typing import Any

_HERE = threading.local()  # .counts while the thread seals
KEY_OPENS = [0]


def _counting() -> dict[str, int] | None:
    return getattr(_HERE, "counts", None)


def _count(sql: str, through: str) -> None:
    counts = _counting()
    if counts is not None:
        counts[through] = counts.get(through, 0) + 1
        if through == "driver" and os.environ.get("SEAL_COST_SHOW"):
            sys.stderr.write(f"  {' '.join(sql.split())[:150]}\n")
        if through == "driver" and "FROM log_checkpoint" in sql and "ORDER BY" in sql:
            counts["checkpoint"] = counts.get("checkpoint", 0) + 1


def _listen() -> None:
    import psycopg
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", lambda *a: _count(a[2], "sqlalchemy"))

    @event.listens_for(Engine, "connect")
    def traced(dbapi: Any, _record: Any) -> None:
        if hasattr(dbapi, "set_trace_callback"):  # sqlite3
            dbapi.set_trace_callback(lambda sql: _count(sql, "driver"))

    for cls, names in (
        (psycopg.Cursor, ("execute", "executemany", "copy")),
        (psycopg.ServerCursor, ("execute",)),
    ):
        for name in names:
            original = getattr(cls, name)

            def counted(self: Any, query: Any, *a: Any, _o: Any = original, **k: Any) -> Any:
                _count(query if isinstance(query, str) else str(query), "driver")
                return _o(self, query, *a, **k)

            setattr(cls, name, counted)


def _count_key_opens() -> None:
    """Opens of the signing key file itself (its trust file beside it is not the key)."""
    opened = io.open

    def open_counted(file: Any, *a: Any, **k: Any) -> Any:
        try:
            path = os.fspath(file)
        except TypeError:
            path = None
        if path is not None and str(path).endswith(".key"):
            KEY_OPENS[0] += 1
        return opened(file, *a, **k)

    builtins.open = open_counted
    io.open = open_counted


def _sealing(label: str, run: Any) -> Any:
    def sealed(*a: Any, **k: Any) -> Any:
        _HERE.counts = counts = {}
        opens = KEY_OPENS[0]
        began, wall = time.thread_time(), time.perf_counter()
        try:
            return run(*a, **k)
        finally:
            cpu = (time.thread_time() - began) * 1000
            wall = (time.perf_counter() - wall) * 1000
            _HERE.counts = None
            sys.stderr.write(
                f"seal ({label}): statements={counts.get('driver', 0)} "
                f"through_sqlalchemy={counts.get('sqlalchemy', 0)} "
                f"reading_log_checkpoint={counts.get('checkpoint', 0)} "
                f"cpu_ms={cpu:.1f} key_opens={KEY_OPENS[0] - opens} wall_ms={wall:.1f}\n"
            )

    return sealed


def main() -> None:
    _listen()
    _count_key_opens()
    from servicetrail.cli import store_access
    from servicetrail.store import sealing

    store_access._seal_the_logs = _sealing("cli", store_access._seal_the_logs)
    sealing.seal_store = _sealing("server", sealing.seal_store)
    sys.argv = ["servicetrail", *sys.argv[1:]]
    from servicetrail.start import main as command

    command()


if __name__ == "__main__":
    main()
