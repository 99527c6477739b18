"""For bench/keepalive_limit.py only (put on PYTHONPATH of `servicetrail serve`): the limit of
requests a keep-alive connection serves (web.http_limits.MAX_REQUESTS_PER_CONNECTION) from
BENCH_MAX_REQUESTS, in the supervisor and in each worker it spawns (which inherit the
environment); "none" for no limit. With BENCH_WORKER_STATS, a folder, each process that
serves writes there twice a second what it has served and the time its garbage collector
took, and the wall time its requests spent in the gate (web.gate) waiting for their turn. With
BENCH_ACCESS_WRITES=off, a diagnosis only, reads append no access-log entry (the rest of
the entry's work is done): what the entries' commits cost the other connections' page caches.
The product has no such switch: a limit an operator could raise would let a few
keep-alive clients hold one worker while the other idles (BENCHMARKS.md, session 22)."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import servicetrail.web.http_limits as http_limits

_asked = os.environ.get("BENCH_MAX_REQUESTS", "")
if _asked:
    http_limits.MAX_REQUESTS_PER_CONNECTION = 10**12 if _asked == "none" else int(_asked)

if os.environ.get("BENCH_ACCESS_WRITES") == "off":
    import servicetrail.store.access_log as access_log

    access_log.write_committed = lambda conn, row: None

_folder = os.environ.get("BENCH_WORKER_STATS", "")
if _folder:
    _stats: dict[str, Any] = {"served": 0, "connections": 0, "gc_s": [0.0, 0.0, 0.0], "gate_s": 0.0}
    _gc_started = [0.0]

    def _gc_timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _gc_started[0] = time.thread_time()
        else:
            _stats["gc_s"][info["generation"]] += time.thread_time() - _gc_started[0]

    gc.callbacks.append(_gc_timer)
    protocol = http_limits.CappedHeadProtocol
    _headers_complete = protocol.on_headers_complete
    _connection_made = protocol.connection_made

    def _counted_head(self: Any) -> None:
        _stats["served"] += 1
        _headers_complete(self)

    def _counted_connection(self: Any, transport: Any) -> None:
        _stats["connections"] += 1
        _connection_made(self, transport)

    protocol.on_headers_complete = _counted_head  # type: ignore[method-assign]
    protocol.connection_made = _counted_connection  # type: ignore[method-assign]

    from servicetrail.web.gate import Gate
    from servicetrail.web.read_turns import ReadTurns

    def _timed(method: Any) -> Any:
        async def timed(self: Any, *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(self, *args)
            finally:
                _stats["gate_s"] += time.perf_counter() - started

        return timed

    Gate._turn = _timed(Gate._turn)  # type: ignore[method-assign]
    Gate._first_lookup = _timed(Gate._first_lookup)  # type: ignore[method-assign]
    ReadTurns.take = _timed(ReadTurns.take)  # type: ignore[method-assign]

    def _write() -> None:
        out = Path(_folder) / f"{os.getpid()}.json"
        while True:
            time.sleep(0.5)
            if _stats["connections"]:  # a process that serves (not the supervisor)
                out.write_text(json.dumps(_stats))

    threading.Thread(target=_write, daemon=True).start()
