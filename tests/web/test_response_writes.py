"""How `servicetrail serve` writes its answers (web.http_limits.HeadWithBody): a whole answer
in one send, its head and body together; a HEAD answer and a stream's head without waiting
for a body that will not come (the last run against the server itself on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import open_store
from servicetrail.web.http_limits import HeadWithBody
from tests import personas as P
from tests.web.live_server import live_server, free_port, live_server_process
from tests.web.raw_http import address, get


def persona_store_with_a_token(sqlite_url: str) -> str:
    """The personas' store, and an API token of SOUTHENERGY's."""
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "s_south", P.SOUTHENERGY, "correct horse battery")
        token = create_token(conn, "s_south")
    engine.dispose()
    return token


def answer_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        if name.lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no content-length in {head!r}")


def first_read(base: str, request: bytes, size: int = 1 << 20) -> bytes:
    """What one read of the answer gets: all that had arrived when the client first woke."""
    with socket.create_connection(address(base), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(size)


class Wire:
    """The transport's end of the socket: what each send would put on it."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sends.append(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.sends.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def test_an_answer_with_a_length_goes_out_with_its_body_in_one_send():
    wire = Wire()
    transport = HeadWithBody(wire)
    transport.write(HEAD)
    assert wire.sends == []  # held for its body
    transport.write(b"{}")
    assert wire.sends == [HEAD + b"{}"]
    assert transport.get_extra_info("peername") == "info peername"  # the rest is the transport's


def test_a_streams_head_goes_out_at_once_and_a_held_head_is_not_lost_on_close():
    wire = Wire()
    HeadWithBody(wire).write(CHUNKED)
    assert wire.sends == [CHUNKED]
    failed = Wire()  # an answer that failed after its head (uvicorn closes the connection)
    transport = HeadWithBody(failed)
    transport.write(HEAD)
    transport.close()
    assert failed.sends == [HEAD] and failed.closed


def test_a_head_answer_and_a_streams_head_are_sent_at_once(sqlite_url, tmp_path):
    token = persona_store_with_a_token(sqlite_url)
    with live_server(sqlite_url, tmp_path) as base:
        head = first_read(base, b"HEAD /static/app.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert answer_length(head) > 0  # what a GET would send, and no body

        made = urllib.request.Request(
            base + "/api/v1/watches",
            data=json.dumps({"name": "quiet"}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(made) as answer:
            watch = json.loads(answer.read())
        # no event will come: the stream's head must not wait for its first chunk
        with socket.create_connection(address(base), timeout=10) as sock:
            sock.sendall(
                get(
                    f"/api/v1/watches/{watch['id']}/stream",
                    f"Authorization: Bearer {token}".encode(),
                )
            )
            stream_head = sock.recv(65536)
        assert stream_head.startswith(b"HTTP/1.1 200 ")
        assert b"text/event-stream" in stream_head


def test_a_client_gone_with_answers_still_pipelined_leaves_no_traceback(sqlite_url, tmp_path):
    """Ten requests in one send, and the client leaves after the first answer begins: the
    answers behind it were written to the closed connection, and each put a traceback in
    the log (one client wrote 1.3 MB of them a second; audit of stalled clients, session 17).

    The server, its webhook worker's rounds run meanwhile with no delivery due, has not
    imported aiohttp (its compiled parser mapped into the process): every server's start
    did, 0.2 s of CPU, for a worker that may never send a webhook (session 59). Checked here,
    where a server runs anyway: a start of its own costs a test a second of CPU."""
    import time

    token = persona_store_with_a_token(sqlite_url)
    ask = get("/api/v1/records?limit=1000", f"Authorization: Bearer {token}".encode())
    with live_server_process(sqlite_url, tmp_path) as (server, base, log):
        for _ in range(3):
            with socket.create_connection(address(base), timeout=10) as sock:
                sock.sendall(ask * 10)
                assert sock.recv(100).startswith(b"HTTP/1.1 ")  # a 200, or a 429 of its bounds
        time.sleep(2)  # the answers behind it are written meanwhile
        with urllib.request.urlopen(
            urllib.request.Request(
                base + "/api/v1/records?limit=1", headers={"Authorization": f"Bearer {token}"}
            )
        ) as answer:
            assert answer.status == 200
        said = log.read_text()
        mapped = Path(f"/proc/{server.pid}/maps").read_text()
    assert "Traceback" not in said and "unhandled error" not in said, said[-3000:]
    assert "/aiohttp/" not in mapped


def test_unreadable_bytes_behind_a_request_being_answered_close_it_without_a_traceback(caplog):
    """The 400 for bytes no parser can read, pipelined behind a request still being answered,
    ended the stream under that answer, whose writes then failed into tracebacks (review,
    session 17). The real protocol under uvicorn, in front of a route that takes its time."""
    import asyncio
    import gc
    import logging
    import threading
    import time

    import uvicorn

    from servicetrail.web.http_limits import CappedHeadProtocol

    async def slow_route(scope, receive, send):
        await asyncio.sleep(0.3)
        head = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(
        slow_route,
        host="127.0.0.1",
        port=port,
        http=CappedHeadProtocol,
        lifespan="off",
        log_config=None,  # uvicorn's loggers then reach the root, which caplog reads
    )
    server = uvicorn.Server(config)
    running = threading.Thread(target=server.run, daemon=True)
    caplog.set_level(logging.WARNING)
    running.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage\r\n\r\n")
            time.sleep(0.8)  # the route's answer comes due meanwhile
            while sock.recv(65536):  # closed, without an answer cut into another
                pass
    finally:
        server.should_exit = True
        running.join(10)
    gc.collect()  # a task's exception nobody retrieved is logged when the task goes
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
