"""Whether a PostgreSQL store that could not be opened has a server there to answer.

A command that could not open its store said "cannot open the store" and exited 2 whatever
the cause, while the same outage met part way through exited 3, "try again" (audit 54g): a
script retrying on 3 gave up on a start made during the database's restart. The connection's
error does not tell the two apart: psycopg raises OperationalError for a server not there and
for one that refused the URL's role, password or database, and libpq keeps the server's
SQLSTATE of a refused connection to itself. Its PQping says it without reading the error's
words, which are the server's language (`lc_messages`) and the client's: no answer at all, a
server starting up or shutting down (SQLSTATE 57P03), or one up that answered.

A server up that refused the connection for want of room (SQLSTATE 53300: max_connections
reached, or the slots left kept for superusers, or a role's or database's own limit) pings as
up, and its refusal's words are all psycopg passes on: those of the server's lc_messages, which
nothing pins before the connection exists (a role's setting applies after the refusal, and a
client may not set it). The code itself crosses the wire, in the refusal's ErrorResponse, and
libpq's trace of the protocol (PQtrace, documented, stable since PostgreSQL 14) writes it out:
another attempt, made with the trace on, reads it there (`_refusal_codes`).

psycopg is imported only here, when a PostgreSQL store failed to open (postgresql_errors says
why not at import).
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
from typing import Any

from sqlalchemy.engine import Engine

# A server that answered the connection at once answers a ping at once too; one that did not
# answer in the connection's own time (10 s by default) is not waited for that long again
PING_SECONDS = 5


def server_away(engine: Engine) -> str | None:
    """Why the store's server cannot take a connection now, when waiting may mend it: nothing
    answers (not running, restarting, out of reach) or it is starting up or shutting down.
    None when it answered and refused (a wrong password, a role or database that does not
    exist): the URL or the server's set-up needs mending, not a retry."""
    if engine.dialect.name != "postgresql":
        return None
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    _, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # psycopg's adapters: not a connection parameter
    params["connect_timeout"] = _ping_seconds(params.get("connect_timeout"))
    answer = pq.PGconn.ping(make_conninfo(**params).encode())
    if answer == pq.Ping.REJECT:
        return "its server is starting up or shutting down"
    if answer == pq.Ping.NO_RESPONSE and not _no_such_host(params.get("host")):
        return "its server does not answer (not running, restarting, or out of reach)"
    if answer == pq.Ping.OK and _refused_for_want_of_room(make_conninfo(**params)):
        return "its server has no room for another connection now"
    return None


# the server's SQLSTATE in a traced ErrorResponse: `S "FATAL" V "FATAL" C "53300" M "..."`
# (the server sends the severity, its untranslated twin and the code first, in that order)
_TRACED_REFUSAL = re.compile(r'\tErrorResponse\t S "[^"]*"(?: V "[^"]*")? C "([0-9A-Z]{5})"')


def _refused_for_want_of_room(conninfo: str) -> bool:
    """Whether the server refuses a connection in class 53, insufficient resources (53300
    above all): the server's state, which waiting mends, not the URL's."""
    return any(code.startswith("53") for code in _refusal_codes(conninfo))


def _refusal_codes(conninfo: str) -> list[str]:
    """The SQLSTATEs with which the servers refused a connection made now, read from libpq's
    trace of the protocol; none when it connected, or the trace could not be had (a libpq
    before 14, a system other than Linux: psycopg traces only there). libpq's stream on the
    trace stays open, empty, for the process's life: psycopg gives no way to close it."""
    from psycopg import errors, pq

    if not hasattr(os, "memfd_create"):
        return []
    # in memory, not a file: a server asking for a password in clear has it traced
    trace = os.memfd_create("servicetrail-refusal", os.MFD_CLOEXEC)
    conn = pq.PGconn.connect_start(conninfo.encode())
    try:
        try:
            conn.trace(trace)
            conn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        except errors.NotSupportedError:
            return []
        _polled(conn, time.monotonic() + PING_SECONDS)
        conn.untrace()  # flushes the trace's stream
        said = os.pread(trace, 1 << 20, 0).decode("utf-8", "replace")
    finally:
        conn.finish()
        os.close(trace)
    return _TRACED_REFUSAL.findall(said)


def _polled(conn: Any, deadline: float) -> None:
    """Drives a connection started by PQconnectStart until it is made or has failed, or the
    deadline passes (libpq's connect_timeout holds only for a blocking connect)."""
    from psycopg import pq

    while (status := conn.connect_poll()) not in (pq.PollingStatus.OK, pq.PollingStatus.FAILED):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        reading = status == pq.PollingStatus.READING
        select.select([conn.socket] if reading else [], [] if reading else [conn.socket], [], left)


def _ping_seconds(given: Any) -> int:
    try:
        return max(min(int(given), PING_SECONDS), 2)  # libpq waits 2 s at least
    except (TypeError, ValueError):
        return PING_SECONDS


def _no_such_host(hosts: Any) -> bool:
    """Whether every server named is a name the resolver says does not exist: a mistyped
    URL, which no wait mends (a resolver that cannot answer now is another error)."""
    named = [each for each in str(hosts or "").split(",") if each and not each.startswith("/")]
    if not named:
        return False
    for host in named:
        try:
            socket.getaddrinfo(host, None)
        except socket.gaierror as e:
            if e.errno != socket.EAI_NONAME:
                return False
        else:
            return False
    return True
