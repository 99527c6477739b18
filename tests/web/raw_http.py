"""Raw HTTP/1.1 by hand, for tests that speak to a server below any client library: where a
server listens, and a GET's head as bytes."""

from __future__ import annotations

from urllib.parse import urlsplit


def address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname, parts.port


def get(path: str, *headers: bytes) -> bytes:
    head = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n"
