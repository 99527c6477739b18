"""Running the web app under uvicorn: in this process, or in several worker processes
sharing one listening socket."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import socket
from typing import TYPE_CHECKING, TypedDict

from sqlalchemy.engine import Engine

from .. import settings
from .stopping import GRACEFUL_SECONDS

if TYPE_CHECKING:  # uvicorn itself is imported when a server starts, not by every CLI command
    import uvicorn


class Options(TypedDict):
    """What uvicorn is given, in one process or in several."""

    host: str
    port: int
    log_level: str
    server_header: bool
    timeout_graceful_shutdown: int
    http: type[asyncio.Protocol]
    proxy_headers: bool
    forwarded_allow_ips: str


def run(
    store: Engine, url: str, host: str, port: int, workers: int, trusted_proxies: str | None = None
) -> bool:
    """Serve `store` (already open, so a new store is built before any worker starts); `url` is
    how worker processes open it for themselves. Whether a second Ctrl-C forced the stop."""
    import uvicorn

    from .forced_stop import serve
    from .http_limits import CappedHeadProtocol
    from .open_files import raise_open_file_limit
    from .quiet_logs import quiet_repeated_warnings

    fewer_malloc_arenas()
    raise_open_file_limit()  # before the workers start: they inherit it
    quiet_repeated_warnings()

    options = Options(
        host=host,
        port=port,
        log_level=settings.current().log_level,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        http=CappedHeadProtocol,  # httptools, answering 431 to an oversized request head
        # only a named TLS-terminating proxy may say the client's address and https
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or "",
    )
    if workers == 1:
        from .app import create_app

        return serve(uvicorn.Config(create_app(store, deliveries=True), **options))
    store.dispose()
    from .worker_app import app_for_store

    # uvicorn's worker processes are spawned, each given the config pickled: the factory
    # travels with the store's URL bound to it, and each worker opens the store itself
    return _run_workers(
        uvicorn.Config(
            functools.partial(app_for_store, url), factory=True, workers=workers, **options
        )
    )


# glibc gives each thread that meets another in malloc an arena of its own, up to eight a
# core, and an arena keeps what was freed in it: under one Party's hostile mix (stalled
# reports, 40 broad searches, 500 large bodies) a worker on SQLite grew to 280 MB and stayed
# there, 190 MB with two arenas (audit 24c; BENCHMARKS.md, session 24)
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h


def fewer_malloc_arenas() -> None:
    """At most MALLOC_ARENAS arenas in this process (its threads have not started yet) and
    in the worker processes it spawns (glibc reads MALLOC_ARENA_MAX as a process starts),
    unless the operator set MALLOC_ARENA_MAX. Nothing where the C library is not glibc."""
    if not settings.malloc_arenas_unless_set(MALLOC_ARENAS):
        return
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (AttributeError, OSError, TypeError):  # TypeError: no CDLL(None) (Windows)
        pass


def _run_workers(config: uvicorn.Config) -> bool:
    """uvicorn.run's multi-process path (web.workers), with TCP_NODELAY on the shared
    listening socket; whether a second Ctrl-C forced the stop.

    uvicorn binds that socket as `socket.socket(family=AF_INET)`, whose `proto` is 0, so
    asyncio's `_set_nodelay` (which checks `proto == IPPROTO_TCP`) never disables Nagle on
    the accepted connections. A response then goes out as two writes (headers, body) and
    the second one waits for the client's delayed ACK: every API answer waited for it with
    `--workers 2` while the processes sat idle. Linux copies TCP_NODELAY from a listening
    socket to the connections it accepts, so setting it once here fixes every worker.
    """
    from .workers import Workers

    supervisor = Workers(config, sockets=[listening_socket(config)])
    supervisor.run()
    return supervisor.forced


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """uvicorn's shared listening socket, with TCP_NODELAY for the connections it accepts."""
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
