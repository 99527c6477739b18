"""A cap on the size of a request's head (request line and headers) for `servicetrail serve`.

uvicorn's httptools protocol, which the server uses for speed, buffers a request head of any
size (a 200 KB header was accepted), and h11's limit only applies while a head is still
arriving. This protocol answers 431 and closes the connection once a head grows past
SERVICETRAIL_MAX_HEADER_BYTES (settings): while it arrives (so an endless head is never buffered)
and when it is complete (a large head that arrived in one read).

Neither does uvicorn bound the time a client takes to send a request: a connection that sent
half a head, or promised a body and stopped, was held open for ever, and any stranger could
hold thousands without signing in. This protocol gives a request's head SERVICETRAIL_READ_TIMEOUT
seconds to arrive whole, and its body as long again in all (a body is at most
SERVICETRAIL_MAX_BODY_BYTES; timed per piece, a body sent a byte now and then held its
connection for days); past that, 408 and the connection is closed. A connection that never
sends a byte is closed as silently as uvicorn closes one idle between requests. A body over
SERVICETRAIL_MAX_BODY_BYTES is answered 413 and the connection closed: before it is read
when it declares its length, as soon as it passes the cap when it is chunked (after a
lingering read of what the client still sends: `_close_lingering`).

It also bounds the connections open at once, a client's (SERVICETRAIL_MAX_CLIENT_CONNECTIONS;
a client as `client_address` counts it) and the process's (`open_files`), closes a keep-alive
connection after MAX_REQUESTS_PER_CONNECTION requests, and sends a response's head and body
in one write (`HeadWithBody`), lets the application reset a connection (web.resets), and
gives the application each header's value without the white space that ends it (`on_header`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .. import settings
from .client_address import client_key, is_trusted_proxy
from .headers import SECURITY_HEADERS
from .open_files import most_connections
from .resets import offer_reset


# every other answer's security headers (web.headers), but a CSP that allows nothing: these
# fixed answers have no style sheet or script; and not kept by any cache (audit 36d: they
# carried only the CSP and nosniff)
_GUARDS = b"".join(
    name + b": " + value + b"\r\n"
    for name, value in SECURITY_HEADERS
    if name != b"content-security-policy"
) + (
    b"content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n"
    b"cache-control: no-store\r\n"
)


def _closing_answer(status: bytes, headers: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + headers
        + b"content-length: "
        + str(len(body)).encode()
        + b"\r\n"
        + _GUARDS
        + b"connection: close\r\n\r\n"
        + body
    )


def _json(status: bytes, error: str, message: str) -> bytes:
    """JSON with a message, as every other refusal of the API."""
    body = b'{"error":"%s","message":"%s"}' % (error.encode(), message.encode())
    return _closing_answer(status, b"content-type: application/json\r\n", body)


def _page(status: bytes, title: str, sentence: str) -> bytes:
    """The same refusal for a person at a browser: no store is read and no template rendered
    before a request is whole, so the page is plain and fixed (and allowed nothing by its CSP)."""
    body = (
        f'<!doctype html><html lang="en-GB"><head><meta charset="utf-8">'
        f"<title>{title} - servicetrail</title></head><body><main><h1>{title}</h1>"
        f'<p>{sentence}</p><p><a href="/">Back to the trail</a></p></main></body></html>'
    ).encode()
    return _closing_answer(
        status,
        b"content-type: text/html; charset=utf-8\r\n",
        body,
    )


_BODY_HEADERS = (b"content-length", b"transfer-encoding")  # names as uvicorn keeps them: lower
_TOO_LARGE = _json(
    b"431 Request Header Fields Too Large",
    "request_head_too_large",
    "the request line and headers are over the server's limit (SERVICETRAIL_MAX_HEADER_BYTES)",
)
_UNREADABLE = _json(
    b"400 Bad Request",
    "bad_request",
    "the request is not well-formed HTTP/1.1 (its request line, a header or its framing)",
)
_BODY_TOO_LARGE = _json(
    b"413 Content Too Large",
    "request_body_too_large",
    "the request body is over the server's limit (SERVICETRAIL_MAX_BODY_BYTES)",
)
_TOO_SLOW = _json(
    b"408 Request Timeout",
    "request_timeout",
    "the request did not arrive in time: its head must arrive whole, and each piece of its "
    "body follow the last, within the server's limit (SERVICETRAIL_READ_TIMEOUT)",
)
# the screen's addresses get a page instead (a 400's request line may be unreadable: JSON)
_PAGES = {
    _TOO_LARGE: _page(
        b"431 Request Header Fields Too Large",
        "Request too large",
        "The address or the headers your browser sent are larger than the server accepts: "
        "a search with a very long value, or too many cookies for this site. Shorten the "
        "search; if that is not it, clear this site's cookies, then sign in again.",
    ),
    _BODY_TOO_LARGE: _page(
        b"413 Content Too Large",
        "Form too large",
        "What you sent is larger than the server accepts. Nothing was saved.",
    ),
    _TOO_SLOW: _page(
        b"408 Request Timeout",
        "Request timed out",
        "Your request did not arrive in time. Nothing was saved; try again.",
    ),
}
_API_PATHS = (b"/api/", b"/openapi")


# what a refused client may still send (and have dropped) before its connection is closed
# under it: a form a few times over the body cap, as curl or a browser sends it whole
LINGER_BYTES = 8 * 1024 * 1024


class HeadWithBody:
    """The transport as one response sees it: uvicorn writes a response's head, then its body,
    each with its own send(), and on loopback each send runs TCP's whole path and wakes the
    client. One send for both is a system call and a wake-up fewer an answer (too small to show
    above the device-search benchmark's spread: BENCHMARKS.md, session 10). Only a head with a
    content-length is held, for its body follows at once; a chunked one (a stream, whose first
    chunk may be long in coming) is sent as it comes."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._first = True

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            # the client has gone (answers pipelined behind the one it left during): uvloop
            # raises on a closed transport, and each answer put a traceback in the log
            return
        if self._first:
            self._first = False
            if b"\r\ncontent-length: " in data:
                self._head = data
                return
        if self._head is None:
            self._transport.write(data)
            return
        self._transport.writelines([self._head, data])  # one send (a writev), not two
        self._head = None

    def close(self) -> None:  # an answer that failed after its head: the head goes, as before
        if self._head is not None and not self._transport.is_closing():
            self._transport.write(self._head)
        self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# Connections open per client address in this process. A stranger's two processes holding
# 9,990 half-sent heads each took every file descriptor the server had (20,000), and most
# other clients' requests then failed to connect (audit of stalled clients, session 17).
_connections: Counter[str] = Counter()
# and in all, up to open_files.most_connections()
_open = [0]  # connections open in this process (the loop's thread alone changes it)


# A keep-alive connection is closed after this many requests (its last answer says
# `Connection: close`; HTTP clients open a new one). With `serve --workers N` a connection
# stays with the worker process that accepted it: a few long-lived connections (a proxy's
# upstream pool, a Party's client) could hold one worker at a full core while another idled
# (three clients measured 71% against 29% of the samples at 10M records). A new connection
# is taken by a worker free to accept it, so the load spreads again. nginx's keepalive_requests
# does the same, at 1000, and so does its close: lingering (below), since a client may have
# sent more requests behind the last one, and closed with them unread the connection was reset,
# and answers still in the server's send buffer were lost (review 22e). Not nginx's 1,000:
# clients that start together reconnect together, and one worker took a whole burst of
# connections (with no limit, all four clients' in 2 rounds of 3; at 1,000, 75-88% of a
# watch list's requests), while at 100 every round split within 50-64%, at no measurable cost in
# searches/s or CPU (BENCHMARKS.md, session 57, helper 57j).
MAX_REQUESTS_PER_CONNECTION = 100


class _LingerOnClose:
    """The transport of a connection's last answer: uvicorn closes it once the answer is
    written, and here that close is the lingering close (CappedHeadProtocol._last_answered)."""

    def __init__(self, transport: Any, protocol: CappedHeadProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol._last_answered()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CappedHeadProtocol(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "unknown"
        self._client = client_key(host)
        proxied = self.config.proxy_headers and is_trusted_proxy(
            host, self.config.forwarded_allow_ips
        )
        # behind a trusted proxy every client arrives from the proxy's address, and the
        # proxy's connections are everyone's (web.gate still tells clients apart, by the
        # address the proxy forwards)
        if (
            not proxied and _connections[self._client] >= settings.current().max_client_connections
        ) or _open[0] >= most_connections():
            self._client = ""
            transport.abort()  # no answer: the client's own connections are what it waits on
            return
        _connections[self._client] += 1
        _open[0] += 1
        super().connection_made(transport)
        # browsers send a few KB (our cookies are under 200 bytes); the default 16 KiB is also
        # Node's and h11's limit
        self.max_head_bytes = settings.current().max_header_bytes
        # Starlette reads a whole form into memory (up to 1000 fields of 1 MiB each) before
        # any route runs, sign-in's included: a stranger's 300 MB form took 300 MB
        self.max_body_bytes = settings.current().max_body_bytes
        self._body_bytes = 0
        self.read_timeout = settings.current().read_timeout
        self._in_head = False
        self._head_bytes = 0
        self._refused = False
        self._dropped_bytes = 0
        self._served = 0
        self._read_deadline: asyncio.TimerHandle | None = None
        self._wait(self._head_late)  # a connection that never sends a request is not held either

    def data_received(self, data: bytes) -> None:
        if not self._client:
            return
        if self._refused:
            # whatever else the client sends on a refused connection is dropped, up to a cap:
            # reading a fast sender's stream for the whole linger cost a core
            self._dropped_bytes += len(data)
            if self._dropped_bytes > LINGER_BYTES:
                self.transport.close()
            return
        super().data_received(data)
        if self._in_head and not self._refused:
            # counted after parsing, so only reads that leave a head unfinished count toward it
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse()
            elif self._read_deadline is None:
                # the whole head within the limit, however slowly it trickles. Armed only when
                # a read leaves a head unfinished: most heads come in one read, and uvicorn's
                # keep-alive timer, which covers the wait before them, is cancelled by their
                # first byte
                self._wait(self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._client:  # refused in connection_made: nothing of it was set up
            return
        _connections[self._client] -= 1
        _open[0] -= 1
        if not _connections[self._client]:
            del _connections[self._client]
        self._stop_waiting()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        offer_reset(self.scope, self.transport)  # for a download or stream cut off
        self._in_head = True
        self._head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        # A field's value has no trailing white space (RFC 9110 5.5); httptools drops the
        # leading but keeps the trailing, so `Last-Event-ID: 2 ` was a 422 where h11 resumes
        super().on_header(name, value.rstrip(b" \t"))

    def on_headers_complete(self) -> None:
        if self._refused:
            return  # a request pipelined behind the refused one is not served either
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse()
            return  # the application never sees the request
        declared = dict(self.headers).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            self._refuse(body=True)
            return  # answered before a byte of the body is read
        self._stop_waiting()
        super().on_headers_complete()
        self._served += 1
        if self.cycle is not None and self._served >= MAX_REQUESTS_PER_CONNECTION:
            self.cycle.keep_alive = False  # uvicorn says `Connection: close` and closes after it
            self.cycle.transport = cast(asyncio.Transport, _LingerOnClose(self.transport, self))
        self._body_bytes = 0
        if any(name in _BODY_HEADERS for name, _ in self.headers):
            self._wait(self._body_late)
        if self.cycle is not None and self.cycle.scope["method"] != "HEAD":  # HEAD: no body write
            self.cycle.transport = cast(asyncio.Transport, HeadWithBody(self.cycle.transport))

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:  # a chunked body, which declares no length
            self._stop_waiting()
            self._cut_body(_BODY_TOO_LARGE)
            return
        super().on_body(body)  # the whole body within the time limit: a piece does not extend it

    def on_message_complete(self) -> None:
        if not self._refused:
            self._stop_waiting()
            super().on_message_complete()
            if self.cycle is not None and self.cycle.response_complete:
                # answered before its body ended (a refusal): the body's bytes cancelled
                # uvicorn's keep-alive timer, so the wait for a next request is bounded here
                self._wait(self._head_late)

    # --- the read timeout ----------------------------------------------------------------

    def _wait(self, late: Any) -> None:
        self._stop_waiting()
        self._read_deadline = self.loop.call_later(self.read_timeout, late)

    def _stop_waiting(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _head_late(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing() or self._refused:
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if not self._in_head or answering:
            # nothing of a request came; or the late head is pipelined behind a request still
            # being answered, which an answer of ours would cut into: closed without one
            self.transport.close()
            return
        self._refused = True
        self._in_head = False
        self.logger.warning("Request head not whole within %g s: 408.", self.read_timeout)
        self.transport.write(self._as_asked(_TOO_SLOW))
        self.transport.close()

    def _body_late(self) -> None:
        self._read_deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        if self.flow.read_paused:
            # the server stopped reading (the application has not taken what it was sent), not
            # the client: its time does not count
            self._wait(self._body_late)
            return
        if cycle.response_started:  # answered (a 404, a 429) before its body came: no 408
            self.logger.warning(
                "Request body stalled for %g s after its answer: connection closed.",
                self.read_timeout,
            )
        else:
            self.logger.warning("Request body stalled for %g s: 408.", self.read_timeout)
        self._cut_body(_TOO_SLOW)

    def _cut_body(self, answer: bytes) -> None:
        """End a request whose body is being read: the application, waiting for the body, is
        told the client has gone, and whatever it still sends is dropped."""
        self._refused = True
        cycle = self.cycle
        answered = cycle is not None and cycle.response_started
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered and not self.transport.is_closing():
            self.transport.write(self._as_asked(answer))
            if answer is _BODY_TOO_LARGE:
                self._close_lingering()
                return
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser cannot read (bytes a request line may not hold, a bad
        Content-Length, ...): 400 in JSON with a message like every other refusal, where
        uvicorn answers plain text."""
        self._stop_waiting()
        self._refused = True
        self._answer_and_close(_UNREADABLE)

    def _refuse(self, body: bool = False) -> None:
        """Answer a request the application never sees (its head, or the body it declares,
        over the cap: 431 or 413), and close its connection."""
        self._refused = True
        self._in_head = False
        self._stop_waiting()
        answer, part, cap = (
            (_BODY_TOO_LARGE, "body", self.max_body_bytes)
            if body
            else (_TOO_LARGE, "head", self.max_head_bytes)
        )
        self.logger.warning("Request %s over %d bytes refused.", part, cap)
        self._answer_and_close(answer)

    def _answer_and_close(self, answer: bytes) -> None:
        """A refusal's answer, then the lingering close; but behind a request still being
        answered, which an answer of ours would cut into (and whose own answer, after our end
        of the stream, failed into a traceback), closed without one, as a late head is."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
        elif not self.transport.is_closing():
            self.transport.write(self._as_asked(answer))
            self._close_lingering()

    def _as_asked(self, answer: bytes) -> bytes:
        """A refusal in JSON for the API's addresses, as a page for the screen's (what a
        browser shows its user). The path comes first in a request, so it has begun to arrive by
        the time a head or body is refused."""
        path = bytes(getattr(self, "url", b"") or b"")
        if path.startswith(_API_PATHS):
            return answer
        return _PAGES.get(answer, answer)

    def _last_answered(self) -> None:
        """The connection's last answer is written: what the client sent behind it (pipelined
        requests, the rest of a body answered early) is read and dropped, unanswered, as
        after a refusal; the client, told `Connection: close`, sends them again on another."""
        self._refused = True
        self.pipeline.clear()
        if not self.transport.is_closing():
            self._close_lingering()

    def _close_lingering(self) -> None:
        """Close after a refusal the client may still be sending into (its head or body):
        what it sends is read and dropped until it closes, for the read timeout at most, as
        nginx's lingering close does. Closed at once with bytes unread, or more arriving, the
        connection was reset: the client's send failed before it read the answer (curl and
        browsers send a whole body first), and over a network the reset may overtake it."""
        transport = self.transport
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()  # the answer, then the end of ours once it is sent
        self.flow.resume_reading()  # paused by a body the application had not taken
        self._stop_waiting()
        self._read_deadline = self.loop.call_later(self.read_timeout, transport.close)
