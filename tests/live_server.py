"""The app under a real uvicorn server on 127.0.0.1, in a thread of the test process, for
tests that need real sockets (slow readers, disconnects) and still want to look inside the
server: its engine's pool and its Party limits."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from servicetrail import settings
from servicetrail.web.app import create_app
from tests import personas as P

# a request's answer is waited for this long, not a client's 5 or 10 s: at load 15-28 on two
# cores a fresh server's first POST of a watch took over 5 s (session 57; 3.4 s at load 20,
# with 0.12 s of this process's CPU: the rest the machine's queue and a new PostgreSQL
# backend's), and a HEAD of a stream and an in-process 404 took over 5 and 10 s at load 15 (61g)
PATIENCE = 30

# httpx builds a TLS context for each client it makes (httpx.get and httpx.stream make one a
# call), loading certifi's CA certificates: 30-40 ms of CPU each, some 300 clients a run,
# though every server of the suite speaks plain HTTP. The suite's clients share this one
# (`verify=TLS_CONTEXT`), still a verifying context were one ever to meet TLS.
TLS_CONTEXT = ssl.create_default_context()


def new_watch(base: str, headers: dict[str, str], name: str = "s") -> dict[str, Any]:
    """A watch made through the API of the server at `base`, as the User of `headers`."""
    answer = httpx.post(
        base + "/api/v1/watches",
        json={"name": name},
        headers=headers,
        timeout=PATIENCE,
        verify=TLS_CONTEXT,
    )
    return answer.json()


class LiveServer:
    """`http`: uvicorn's protocol; `serve`'s own (web.http_limits.CappedHeadProtocol) for a
    test of what it adds. `send_buffer`: a small one fills at once, without megabytes of
    data to send (a socket's grows to 4 MB on the loopback)."""

    def __init__(self, app: FastAPI, http: Any = "auto", send_buffer: int = 0) -> None:
        self.app = app
        self._socket = socket.socket()
        if send_buffer:  # the connections' kernel send buffer (inherited), fixed: a slow path
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, http=http
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        # 60 s, as `servicetrail serve`'s fixtures give: a loaded machine's start is slow
        started = time.monotonic()
        while not self._server.started:
            waited = time.monotonic() - started
            if waited > 60 or not self._thread.is_alive():
                raise RuntimeError(
                    f"the test server did not start in {waited:.1f} s: its thread "
                    + ("still running" if self._thread.is_alive() else "ended")
                )
            time.sleep(0.02)
        return self

    def __exit__(self, *_) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._socket.close()

    def get(self, path: str, token: str, timeout: float = 10.0) -> tuple[int, bytes, float]:
        """(status, body, seconds) of one GET on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            start = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            body = response.read()
            return response.status, body, time.perf_counter() - start
        finally:
            conn.close()

    def stalled_get(
        self, path: str, token: str, receive_buffer: int = 4096, first_read: int = 100
    ) -> tuple[socket.socket, bytes]:
        """A client that asks for `path`, reads `first_read` bytes and then reads no more: its
        socket is returned open, with a receive buffer of `receive_buffer` bytes."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"{token}\r\n\r\n".encode()
        )
        return sock, sock.recv(first_read)


@contextmanager
def uvicorns_errors(caplog) -> Iterator[None]:
    """uvicorn's own log (its loggers do not reach the root under the live server's log
    configuration) into `caplog` as well."""
    uvicorns = logging.getLogger("uvicorn.error")
    uvicorns.addHandler(caplog.handler)
    try:
        yield
    finally:
        uvicorns.removeHandler(caplog.handler)


def how_it_ends(sock: socket.socket) -> str:
    """How a client's connection ends once it reads on to the end: "reset" or "closed"."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "closed"


def wait_until(condition, seconds: float, every: float = 0.02) -> bool:
    """Whether `condition()` became true within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


@pytest.fixture
@P.starts_with_personas
def streaming_server(engine, monkeypatch) -> Iterator[LiveServer]:
    """The app with the persona world, under a live server whose streams look for new events
    every 0.05 s: a watch's stream read as it is sent (the stream's tests, the access log's
    entries of streams)."""
    monkeypatch.setenv("SERVICETRAIL_STREAM_POLL_SECONDS", "0.05")
    settings.reload()
    P.load_personas(engine)
    with LiveServer(create_app(engine)) as live:
        yield live
