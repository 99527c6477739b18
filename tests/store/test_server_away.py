"""A PostgreSQL store that cannot be opened: a server not there, starting up or shutting
down is a wait (exit 3, "try again"), as the same outage part way through a command is; one
that answered and refused the URL is the URL's to mend (exit 2). The server's refusals are
played by a few lines of its protocol, not a server made to refuse: a shutdown held open
for a test cost a server of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from servicetrail.cli import main
from servicetrail.store.engine import make_engine
from servicetrail.store.server_away import server_away

# A server that refuses every connection with the SQLSTATE its database is named after (the
# database "password" is asked for a password in clear instead), in a process of its own:
# libpq's PQping holds Python's GIL while it waits, so a server in one of this process's
# threads never answered it
REFUSING_SERVER = r"""
import socket, struct, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    if "--tell-connections" in sys.argv:
        print("connection", flush=True)
    with conn:
        try:
            while True:  # "no" to TLS and GSS, until the startup message itself
                length, code = struct.unpack("!ii", conn.recv(8))
                said = conn.recv(length - 8) if length > 8 else b""
                if code not in (80877103, 80877104):
                    break
                conn.sendall(b"N")
            words = said.split(b"\0")
            sqlstate = words[words.index(b"database") + 1].decode()
            if sqlstate == "password":
                conn.sendall(b"R" + struct.pack("!ii", 8, 3))
                conn.recv(1024)
                continue
            fields = [("S", "FATAL"), ("V", "FATAL"), ("C", sqlstate)]
            fields.append(("M", "refused as " + sqlstate))
            body = b"".join(k.encode() + v.encode() + b"\0" for k, v in fields) + b"\0"
            conn.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)
        except (OSError, struct.error, ValueError):
            pass
"""


@pytest.fixture(scope="module")
def refusing_server() -> Iterator[str]:
    """The URL of that server, less its database's name."""
    server = subprocess.Popen(
        [sys.executable, "-c", REFUSING_SERVER], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    yield f"postgresql://analyst@127.0.0.1:{port}/"
    server.kill()
    server.communicate()  # its pipe closed too: a ResourceWarning at teardown (session 59)


def _nothing_listens() -> str:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    return f"postgresql://analyst@127.0.0.1:{port}/store"


def test_a_server_starting_up_or_shutting_down_is_a_wait(refusing_server: str) -> None:
    url = refusing_server + "57P03"
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"Error: cannot open the store at {url}: ")
    assert "starting up or shutting down" in result.stderr
    assert result.stderr.rstrip().endswith("; try again"), result.stderr


def test_a_server_with_no_room_for_another_connection_is_a_wait(refusing_server: str) -> None:
    """max_connections reached ("sorry, too many clients already"), or only the superusers'
    slots left: PQping calls such a server up, and the refusal's words are the server's
    language's; its SQLSTATE tells it (audit 55c)."""
    url = refusing_server + "53300"
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 3, result.output
    assert "no room for another connection" in result.stderr, result.stderr
    assert "refused as 53300" in result.stderr and result.stderr.rstrip().endswith("; try again")


def test_a_server_not_there_is_a_wait() -> None:
    """Exit 2 at the start of a command, exit 3 part way through: a script retrying on 3 did
    not retry a command started during the database's restart (audit 54g)."""
    url = _nothing_listens()
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 3, result.output
    assert "its server does not answer" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("sqlstate", ["28P01", "3D000", "28000"])
def test_a_server_that_refused_the_url_is_for_the_url_to_mend(
    refusing_server: str, sqlstate: str
) -> None:
    """A wrong password, a database or role that does not exist: retrying mends nothing."""
    url = refusing_server + sqlstate
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: cannot open the store at {url}: ")
    assert f"refused as {sqlstate}" in result.stderr, result.stderr  # the server's own words
    assert "try again" not in result.stderr


def test_a_host_that_does_not_exist_is_the_urls_to_mend(monkeypatch) -> None:
    """A mistyped name, which no wait mends; a resolver that cannot answer now is a wait.
    The resolver's answers are played: one offline answers neither."""
    engine = make_engine("postgresql://analyst@no-such-host.invalid:5432/store")
    for error, away in ((socket.EAI_NONAME, False), (socket.EAI_AGAIN, True)):

        def resolver(*_: object, error: int = error) -> None:
            raise socket.gaierror(error, "played")

        monkeypatch.setattr(socket, "getaddrinfo", resolver)
        assert (server_away(engine).away is not None) is away


def test_an_sqlite_store_is_never_away(tmp_path) -> None:
    assert server_away(make_engine(f"sqlite:///{tmp_path / 'x.db'}")).away is None


@pytest.mark.parametrize(
    "url",
    [
        # libpq refuses it before it reaches a server: PQping says "no attempt"
        "{server}store?sslmode=bogus",
        # asked for a password it has not: the server's request to authenticate goes untraced
        # (PQconnectionNeedsPassword tells it)
        "{server}password?passfile=/nonexistent",
    ],
    ids=["options libpq refuses", "a password asked, none had"],
)
def test_a_url_refused_before_a_trace_can_tell_is_for_the_url_to_mend(
    refusing_server: str, url: str, monkeypatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = url.format(server=refusing_server)
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 2, result.output
    assert "try again" not in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("sqlstate", ["28P01", "28000"])
def test_a_refused_url_is_tried_once_more_not_twice(sqlstate: str) -> None:
    """A wrong password or a role that does not exist: the command's own attempt and one
    traced attempt, no ping besides, and no maintenance database asked to make a database
    that is there: each is a FATAL line in the server's log, and one more failure for a
    lockout counting them (audit 56g: it was five)."""
    exit_code, connections = _opened_counting_connections(sqlstate)
    assert exit_code == 2
    assert connections == 2


def test_where_libpq_cannot_trace_a_ping_tells_a_wait_from_a_refusal(
    refusing_server: str, monkeypatch
) -> None:
    """A libpq before 14, a system other than Linux: PQping alone, as before the trace."""
    from servicetrail.store import server_away as module

    monkeypatch.setattr(module, "_traceable", lambda: False)
    for sqlstate, away in (("57P03", True), ("28P01", False), ("53300", False)):
        engine = make_engine(refusing_server + sqlstate)
        assert (server_away(engine).away is not None) is away, sqlstate
        assert server_away(engine).maybe_no_database  # no code to tell otherwise


def test_a_server_without_the_ssl_a_url_requires_is_for_the_url_to_mend(
    refusing_server: str,
) -> None:
    """sslmode=require of a server that says "N" to SSL: libpq calls it no response, and it
    said "does not answer, try again" (exit 3), which no wait mends. libpq 18 traces the
    server's "N"; before 18 the exit stays 3."""
    from psycopg import pq

    if pq.version() < 180000:
        pytest.skip("libpq before 18 does not trace the server's answer to SSLRequest")
    url = refusing_server + "28P01?sslmode=require"
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 2, result.output
    assert "its server does not offer SSL, which sslmode=require asks for: " in result.stderr
    assert "try again" not in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("query", "connections"),
    [("passfile=/nonexistent", 2), ("password=x&require_auth=scram-sha-256", 3)],
    ids=["a password asked, none had", "require_auth refusing the method asked"],
)
def test_a_login_the_client_cannot_give_asks_no_maintenance_database(
    query: str, connections: int, monkeypatch
) -> None:
    """The server asked for a password the client has not, or for a method require_auth
    refuses: libpq leaves the request untraced, and a ping and both maintenance databases
    were asked too (five connections). libpq's PQconnectionNeedsPassword tells the first of
    the traced attempt; the ping, the second; no database can be made with either login."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    exit_code, made = _opened_counting_connections(f"password?{query}")
    assert exit_code == 2
    assert made == connections


def _opened_counting_connections(database: str) -> tuple[int, int]:
    """A command's exit code on a store at the played server, and how many connections it
    made there (a server of its own: the shared one's count is every test's)."""
    server = subprocess.Popen(
        [sys.executable, "-c", REFUSING_SERVER, "--tell-connections"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        url = f"postgresql://analyst@127.0.0.1:{server.stdout.readline().strip()}/{database}"
        result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    finally:
        server.kill()
        said, _ = server.communicate()
    assert "Traceback" not in result.output, result.output
    return result.exit_code, said.count("connection")


def test_gssapi_encryption_required_with_no_credentials_is_for_the_url_to_mend(
    refusing_server: str, monkeypatch
) -> None:
    """gssencmode=require with no Kerberos credentials: libpq fails it before it reaches a
    server, which PQping calls no response, and it said "try again" (exit 3)."""
    monkeypatch.setenv("KRB5CCNAME", "FILE:/nonexistent/servicetrail-test")
    url = refusing_server + "28P01?gssencmode=require"
    result = CliRunner().invoke(main, ["--db", url, "records", "--party", "NORTH"])
    assert result.exit_code == 2, result.output
    assert "try again" not in result.stderr and "Traceback" not in result.output
