"""A cap on the size of a request's head (request line and headers) for `servicetrail serve`.

uvicorn's httptools protocol, which the server uses for speed, buffers a request head of any
size (a 200 KB header was accepted), and h11's limit only applies while a head is still
arriving. This protocol answers 431 and closes the connection once a head grows past
SERVICETRAIL_MAX_HEADER_BYTES (settings): while it arrives (so an endless head is never buffered)
and when it is complete (a large head that arrived in one read).

It also sends a response's head and body in one write (`HeadWithBody`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .. import settings

# JSON with a message, as every other refusal of the API
_MESSAGE = (
    b'{"error":"request_head_too_large","message":"the request line and headers are over '
    b'the server\'s limit (SERVICETRAIL_MAX_HEADER_BYTES)"}'
)
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_MESSAGE)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _MESSAGE
)


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
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CappedHeadProtocol(HttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # browsers send a few KB (our cookies are under 200 bytes); the default 16 KiB is also
        # Node's and h11's limit
        self.max_head_bytes = settings.current().max_header_bytes
        self._in_head = False
        self._head_bytes = 0
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # whatever else the client sends on a refused connection is dropped
        super().data_received(data)
        if self._in_head and not self._refused:
            # counted after parsing, so only reads that leave a head unfinished count toward it
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        if self._refused:
            return  # a request pipelined behind the refused one is not served either
        self._in_head = False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse()
            return  # the application never sees the request
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope["method"] != "HEAD":  # HEAD: no body write
            self.cycle.transport = cast(asyncio.Transport, HeadWithBody(self.cycle.transport))

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def _refuse(self) -> None:
        self._refused = True
        self._in_head = False
        self.logger.warning("Request head over %d bytes refused with 431.", self.max_head_bytes)
        if not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()
