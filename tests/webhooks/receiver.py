"""A local webhook receiver for the tests: a real HTTP server on 127.0.0.1 that verifies every
delivery's signature with `standardwebhooks` (the specification's reference library, not
servicetrail's code) and answers as each test tells it to."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: dict | None
    error: str = ""
    # when it arrived (its body read), on the clock every receiver of the test shares: the
    # order of arrivals at different receivers, which a poll after the fact cannot tell
    at: float = field(default_factory=time.monotonic)


class Server(http.server.ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a worker's 15 connections at once to one
    # receiver got the rest accepted a second or three later (the client's SYN sent again),
    # which their attempts' time limit covers; a 14-s answer then timed out and was sent
    # again (finding 47i 4)
    request_queue_size = 128


@dataclass
class Receiver:
    """`answer(path, attempt_number_of_this_webhook_id)` -> (status, seconds to wait first)
    or (status, seconds to wait first, seconds to wait between the head and the body)."""

    secrets: dict[str, str] = field(default_factory=dict)  # path -> whsec_ secret
    answer: Callable[[str, int], tuple[float, ...]] = lambda path, n: (200, 0.0)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                secret = receiver.secrets.get(self.path)
                verified, error = None, ""
                try:
                    verified = Webhook(secret).verify(body, headers) if secret else None
                except Exception as e:  # noqa: BLE001 - recorded for the test to assert on
                    error = f"{type(e).__name__}: {e}"
                same = headers.get("webhook-id")
                attempt = 1 + sum(
                    1 for r in receiver.received if r.headers.get("webhook-id") == same
                )
                receiver.received.append(Received(self.path, headers, body, verified, error))
                status, wait, *body_after = receiver.answer(self.path, attempt)
                if wait:
                    time.sleep(wait)
                # a 204 or 304 has no body, nor a Content-Length (RFC 9110 sections 8.6,
                # 15.3.5): "ok" after one was read as the next answer's status line
                bodiless = int(status) in (204, 304)
                reply = b"" if bodiless else b"ok"
                try:
                    self.send_response(int(status))
                    if not bodiless:
                        self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    if body_after:
                        self.wfile.flush()
                        time.sleep(body_after[0])
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the deliverer stopped waiting (the slow receivers of the tests)

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self, path: str | None = None) -> list[dict]:
        """The verified deliveries' events (each a payload's `data`), in arrival order."""
        return [
            r.verified["data"]
            for r in self.received
            if r.verified and (path is None or r.path == path)
        ]

    def bodies(self) -> list[dict]:
        return [orjson.loads(r.body) for r in self.received]
