#!/usr/bin/env python3
"""How much of an own-traffic report a slow client still gets once its token is revoked
(audit 61d). A raw client (32 KB receive buffer, 8 KB every 0.05 s: 160 KB/s) downloads the
whole report of ACCOUNT's Party from a running `servicetrail serve` on PORT; 3 s in, the
account's tokens are revoked (`servicetrail tokens revoke`, the store of
SERVICETRAIL_DATABASE_URL). Prints the bytes received after, how long they took, and whether
the body ended whole (its chunked ending) or was cut off, and whether by a reset.

    .venv/bin/python bench/download_revoked.py PORT ACCOUNT [PATH]

PATH: another address read the same way, a watch's event stream say (62f); the report's by
default.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

SERVICETRAIL = str(Path(sys.executable).parent / "servicetrail")
REPORT = "/api/v1/reports/own.csv?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"


def receive(client: socket.socket) -> bytes | None:
    """The next piece; b"" at the connection's end, None at its reset (since 62f)."""
    try:
        return client.recv(8192)
    except ConnectionResetError:
        return None


def main(port: int, account: str, path: str = REPORT) -> None:
    made = subprocess.run(
        [SERVICETRAIL, "tokens", "create", account], capture_output=True, text=True, check=True
    )
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)  # before it connects
    client.connect(("127.0.0.1", port))
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        f"{made.stdout.strip()}\r\nConnection: close\r\n\r\n".encode()
    )
    start, revoked_at, total, after, tail = time.monotonic(), 0.0, 0, 0, b""
    while piece := receive(client):
        total += len(piece)
        tail = (tail + piece)[-7:]
        if revoked_at:
            after += len(piece)
        elif time.monotonic() - start > 3:
            subprocess.run(
                [SERVICETRAIL, "tokens", "revoke", "--account", account],
                capture_output=True,
                check=True,
            )
            revoked_at = time.monotonic()
        time.sleep(0.05)
    reset = piece is None
    client.close()
    ended = "whole" if tail.endswith(b"\r\n0\r\n\r\n") else "cut off"
    ended += " (the connection reset)" if reset else ""
    took = time.monotonic() - revoked_at if revoked_at else 0.0
    print(f"{total:,} bytes; {after:,} after the revocation, for {took:.1f} s; the body {ended}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:4])
