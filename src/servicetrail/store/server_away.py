"""Whether a PostgreSQL store that could not be opened has a server there to answer.

A command that could not open its store said "cannot open the store" and exited 2 whatever
the cause, while the same outage met part way through exited 3, "try again" (audit 54g): a
script retrying on 3 gave up on a start made during the database's restart. The connection's
error does not tell the two apart: psycopg raises OperationalError for a server not there and
for one that refused the URL's role, password or database, and libpq keeps the server's
SQLSTATE of a refused connection to itself. Its PQping says it without reading the error's
words, which are the server's language (`lc_messages`) and the client's: no answer at all, a
server starting up or shutting down (SQLSTATE 57P03), or one up that answered.

psycopg is imported only here, when a PostgreSQL store failed to open (postgresql_errors says
why not at import).
"""

from __future__ import annotations

import socket
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
    return None


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
