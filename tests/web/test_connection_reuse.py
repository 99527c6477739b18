"""A keep-alive connection is closed after MAX_REQUESTS_PER_CONNECTION requests, so that a few
long-lived connections cannot keep one `serve --workers N` process at a full core while
another idles: the last answer says `Connection: close`, and the client's next request
opens a new connection. Run against `servicetrail serve` on 127.0.0.1."""

from __future__ import annotations

import http.client

from servicetrail.web.http_limits import MAX_REQUESTS_PER_CONNECTION
from tests.web.live_server import live_server
from tests.web.test_header_cap import address


def test_a_connection_is_closed_after_its_share_of_requests_and_the_next_opens_anew(
    tmp_path,
) -> None:
    with live_server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path) as base:
        host, port = address(base)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        peers = []
        closing = []
        for _ in range(MAX_REQUESTS_PER_CONNECTION + 1):
            conn.request("GET", "/api/v1/records")  # no token: a 401, answered by the app
            response = conn.getresponse()
            response.read()
            assert response.status == 401
            closing.append((response.getheader("connection") or "").lower() == "close")
            if conn.sock is not None:
                peers.append(conn.sock.getsockname())
        conn.close()
    assert closing[: MAX_REQUESTS_PER_CONNECTION - 1] == [False] * (MAX_REQUESTS_PER_CONNECTION - 1)
    assert closing[MAX_REQUESTS_PER_CONNECTION - 1] is True
    assert closing[MAX_REQUESTS_PER_CONNECTION] is False  # the first answer on the new one
    assert len(set(peers)) == 2  # two connections, one after the other
