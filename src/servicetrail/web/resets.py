"""A response cut off part way ends its connection with a reset, dropping what is not yet sent.

A report download or an event stream cut off (its token revoked, its client stalled past the
send timeout, the server stopping) ended with uvicorn closing the connection, and a close
first sends whatever the kernel still holds for the client: a socket's send buffer grows to
4 MB (Linux's tcp_wmem), so a slow client went on receiving some 3.5 MB of a report for 20 s
after its token was revoked (audit 61d). A close with SO_LINGER 0 resets the connection
instead, and the kernel drops what it held (BENCHMARKS.md, session 62, helper 62f).

The application then ends with its connection gone, as when a client leaves, so uvicorn does
not log "ASGI callable returned without completing response" as an ERROR for a cut-off made
on purpose (it did for each one): the application says why in a line of its own.

`serve`'s protocol (http_limits.CappedHeadProtocol) offers the reset to the application as
an ASGI scope extension. Under a server without it a cut-off ends as before: uvicorn closes
the connection, after what it holds, and says so.
"""

from __future__ import annotations

import functools
import socket
import struct
from contextlib import suppress
from typing import Any

import anyio
from starlette.types import Receive, Scope

RESET = "servicetrail.reset"
_NO_LINGER = struct.pack("ii", 1, 0)  # struct linger {l_onoff 1, l_linger 0}: close resets
DISCONNECT_PATIENCE = 5.0  # seconds for the server to see its reset connection go


def offer_reset(scope: Any, transport: Any) -> None:
    """Let the application answering `scope` (a server's HTTP scope, being made) reset the
    connection of `transport`."""
    scope.setdefault("extensions", {})[RESET] = functools.partial(_reset, transport)


def _reset(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # closed already (uvloop's socket then has no descriptor: ValueError): nothing to drop
        with suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER)
    transport.abort()


def offers_reset(scope: Scope) -> bool:
    """Whether the server of `scope` lets its application reset the connection."""
    return RESET in scope.get("extensions", {})


async def reset(scope: Scope, receive: Receive) -> bool:
    """Reset the connection of the response to `scope`, if its server offers it, and wait
    until the server has seen it go (uvicorn looks whether it has as the application ends);
    whether it was reset."""
    offered = scope.get("extensions", {}).get(RESET)
    if offered is None:
        return False
    offered()
    with anyio.move_on_after(DISCONNECT_PATIENCE):
        while (await receive())["type"] != "http.disconnect":
            pass
    return True
