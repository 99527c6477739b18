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
libpq's trace of the protocol (PQtrace, documented, stable since PostgreSQL 14) writes it out.
One attempt made with the trace on tells all PQping would, and the code: it takes PQping's
place where the trace can be had (`_traced_attempt`). A ping and a traced attempt both made
the server refuse a wrong password three times at a command's start, three FATAL lines in
its log and three failures for a lockout to count (audit 56g).

A server that says "no" to the SSL or GSSAPI encryption the URL requires (sslmode=require,
gssencmode=require) answered, and no wait mends it, where PQping calls it no response: from
libpq 18 the trace shows that "N" (audit 56j). gssencmode=require with no Kerberos
credentials fails before any server is reached: the same URL without it reaching one tells it.

psycopg is imported only here, when a PostgreSQL store failed to open (postgresql_errors says
why not at import).
"""

from __future__ import annotations

import os
import re
import select
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

# A server that answered the connection at once answers a ping at once too; one that did not
# answer in the connection's own time (10 s by default) is not waited for that long again
PING_SECONDS = 5


class StoreRefused(RuntimeError):
    """A PostgreSQL store that cannot be opened with its URL as set up, whatever the wait:
    said as the driver's own refusals are (exit 2), with why in words of ours."""


@dataclass(frozen=True)
class Unopened:
    """What a PostgreSQL store's failed connection says of its server: `away`, why it cannot
    take a connection now when waiting may mend it; `maybe_no_database`, False only when the
    server refused the URL for something else than a database that does not exist (then
    there is no database to make, and asking two maintenance databases is two more refusals
    in the server's log, and against a lockout's count)."""

    away: str | None
    maybe_no_database: bool = True
    # why the URL as set up can never be had of this server: an encryption the URL requires,
    # which the server said it does not offer (its "N" to the request, in the trace), or
    # which this client cannot have (gssencmode=require with no Kerberos credentials)
    refused: str | None = None


def server_away(engine: Engine) -> Unopened:
    """Why the store's server cannot take a connection now, when waiting may mend it: nothing
    answers (not running, restarting, out of reach), it is starting up or shutting down, or
    it has no room. `away` None when it answered and refused (a wrong password, a role or
    database that does not exist): the URL or the server's set-up needs mending, not a retry.

    One connection attempt, traced, tells it all where libpq's trace can be had; elsewhere
    PQping does (no room then goes untold). A URL refused for its password is tried twice in
    all, the command's own attempt included: a lockout counting failures counts two."""
    if engine.dialect.name != "postgresql":
        return Unopened(None)
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    _, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # psycopg's adapters: not a connection parameter
    seconds = _ping_seconds(params.get("connect_timeout"))
    params["connect_timeout"] = seconds
    conninfo = make_conninfo(**params)
    answer = _traced_attempt(conninfo, seconds) if _traceable() else None
    if answer is None:
        answer = _Answer(pq.PGconn.ping(conninfo.encode()), [])
    if answer.unoffered:
        return Unopened(None, maybe_no_database=False, refused=answer.unoffered)
    if answer.ping == pq.Ping.REJECT:
        return Unopened("its server is starting up or shutting down")
    if answer.ping == pq.Ping.NO_RESPONSE:
        if _no_such_host(params.get("host")):
            return Unopened(None)
        return Unopened("its server does not answer (not running, restarting, or out of reach)")
    if any(code.startswith("53") for code in answer.codes):  # insufficient resources
        return Unopened("its server has no room for another connection now")
    if answer.no_login:
        return Unopened(None, maybe_no_database=False)
    return Unopened(None, maybe_no_database=not answer.codes or "3D000" in answer.codes)


@dataclass(frozen=True)
class _Answer:
    ping: Any  # pq.Ping: what PQping would have said of the same attempt
    codes: list[str]  # the SQLSTATEs the servers refused the attempt with
    unoffered: str | None = None  # an encryption the server said no to, and libpq gave up for
    no_login: bool = False  # the server asked for a login the client cannot give


def _traceable() -> bool:
    """Whether libpq traces here: psycopg traces only on Linux, PQsetTraceFlags came in 14."""
    from psycopg import pq

    return sys.platform == "linux" and hasattr(os, "memfd_create") and pq.version() >= 140000


# the server's SQLSTATE in a traced ErrorResponse: `S "FATAL" V "FATAL" C "53300" M "..."`
# (the server sends the severity, its untranslated twin and the code first, in that order)
_TRACED_REFUSAL = re.compile(
    r'^B\t\d+\tErrorResponse\t S "[^"]*"(?: V "[^"]*")? C "([0-9A-Z]{5})"', re.M
)
# the server's "no" to the encryption asked first, traced by libpq 18 (not 14 to 17: there
# the attempt goes to PQping, which calls it no response), as the last thing said: libpq gave
# up for it, where sslmode=prefer goes on with a StartupMessage
_TRACED_NO_ENCRYPTION = re.compile(
    r"^F\t\d+\t(SSL|GSSENC)Request\t[^\n]*\nB\t\d+\t\w+\t N\n?\Z", re.M
)
_ENCRYPTIONS = {"SSL": ("SSL", "sslmode"), "GSSENC": ("GSSAPI encryption", "gssencmode")}
_ASKED = {option.encode() for _, option in _ENCRYPTIONS.values()} | {b"require_auth"}
# any request of the server's to authenticate, AuthenticationOk included
_TRACED_AUTHENTICATION = re.compile(r"^B\t\d+\tAuthentication", re.M)


def _traced_attempt(conninfo: str, seconds: int) -> _Answer | None:
    """A connection attempt made now with libpq's protocol trace on, judged as PQping
    judges its own (libpq's internal_ping): made, or asked to authenticate, is up; no
    SQLSTATE from a server is no response; a last one of 57P03 is a reject. The trace also
    gives the codes of the refusals, which libpq keeps to itself, and the server's "no" to an
    encryption the URL requires (libpq 18), which PQping calls no response. None where the
    trace cannot tell what PQping would (`_TRACED_STARTUP`). libpq's stream on the trace
    stays open, empty, for the process's life: psycopg gives no way to close it."""
    from psycopg import pq

    # in memory, not a file: a server asking for a password in clear has it traced
    trace = os.memfd_create("servicetrail-refusal", os.MFD_CLOEXEC)
    conn = pq.PGconn.connect_start(conninfo.encode())
    try:
        if conn.status == pq.ConnStatus.BAD:
            # no server reached yet: options libpq refuses (PQping tells "no attempt"), or
            # no host to be found; a ping costs no server a connection either
            return _gss_unhad(conninfo, conn)
        conn.trace(trace)
        conn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        _polled(conn, time.monotonic() + seconds)
        status = conn.status
        asked = {o.keyword: o.val for o in conn.info if o.keyword in _ASKED}
        asked_password = conn.needs_password
        conn.untrace()  # flushes the trace's stream
        said = os.pread(trace, 1 << 20, 0).decode("utf-8", "replace")
    finally:
        conn.finish()
        os.close(trace)
    codes = _TRACED_REFUSAL.findall(said)
    unoffered = _TRACED_NO_ENCRYPTION.search(said)
    if status == pq.ConnStatus.BAD and unoffered:
        name, option = _ENCRYPTIONS[unoffered.group(1)]
        value = (asked.get(option.encode()) or b"").decode()
        return _Answer(
            pq.Ping.OK, codes, f"its server does not offer {name}, which {option}={value} asks for"
        )
    if status == pq.ConnStatus.BAD and asked_password:
        # the server asked for a password the client has not (PQconnectionNeedsPassword):
        # an answer, untraced; and no database can be made with a login that cannot be had
        return _Answer(pq.Ping.OK, codes, no_login=True)
    if status == pq.ConnStatus.OK or _TRACED_AUTHENTICATION.search(said):
        return _Answer(pq.Ping.OK, codes)
    if codes:
        return _Answer(pq.Ping.REJECT if codes[-1] == "57P03" else pq.Ping.OK, codes)
    if status == pq.ConnStatus.BAD and _TRACED_STARTUP.search(said):
        if not asked.get(b"require_auth"):
            return None  # PQping tells (below)
        # up, PQping says, where require_auth refused the method the server asked for: no
        # database can be made with a login that cannot be had (a server that hung up on
        # this attempt and said 3D000 to the ping's is not worth two more refusals)
        ping = pq.PGconn.ping(conninfo.encode())
        return _Answer(ping, [], no_login=ping == pq.Ping.OK)
    return _Answer(pq.Ping.NO_RESPONSE, codes)


def _gss_unhad(conninfo: str, conn: Any) -> _Answer | None:
    """gssencmode=require with no Kerberos credentials here, or over a local socket: libpq
    fails it before it reaches a server, and PQping calls that no response. The same attempt
    without it starting tells that the requirement alone failed it (not a network that
    refused at once), at the cost of a connection that sends nothing: no wait mends it."""
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    required = {o.keyword: o.val for o in conn.info}.get(b"gssencmode") == b"require"
    if not required:
        return None
    without = pq.PGconn.connect_start(make_conninfo(conninfo, gssencmode="disable").encode())
    try:
        if without.status == pq.ConnStatus.BAD:
            return None
    finally:
        without.finish()
    return _Answer(
        pq.Ping.OK, [], "the GSSAPI encryption gssencmode=require asks for cannot be had"
    )


# libpq traces a message from the server once it has handled it, and an authentication
# request it failed on goes untraced, where PQping counts it as the server's answer. A
# password asked and not had, libpq says (PQconnectionNeedsPassword); require_auth refusing
# the server's method it does not. An attempt that failed after its StartupMessage with
# nothing traced in reply is that or a server that hung up unasked: PQping tells which, at the
# cost of one more attempt, in that case only (where require_auth is set, or none)
_TRACED_STARTUP = re.compile(r"^F\t\d+\tStartupMessage\t", re.M)


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
