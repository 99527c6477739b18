"""A download that stalls: a large own report in a store, and a client that asks for it and
reads no more than its first bytes."""

from __future__ import annotations

import socket

from servicetrail.domain.model import SatRecord
from servicetrail.domain.times import parse_time
from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.engine import open_store
from servicetrail.store.writer import append_records
from tests import personas as P


def bearer(engine, party: str) -> str:
    with engine.begin() as conn:
        create_account(conn, party.lower(), party, "correct horse battery")
        return create_token(conn, party.lower())


def _a_report_too_large_to_read(sqlite_url) -> str:
    """A 4 MB own report of LOOKER's in the store; the token that downloads it."""
    engine = open_store(sqlite_url)
    P.load_personas(engine)
    payload = "<sr:Request>" + "x" * 2000 + "</sr:Request>"  # 2,000 rows: a 4 MB report
    start = parse_time("2025-06-01T00:00:00Z")
    with engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    start.replace(minute=n // 60, second=n % 60),
                    "request",
                    f"{P.LK_OU}:{P.PPMID_1}:{5000 + n}",
                    "11.2",
                    P.LK_OU,
                    P.PPMID_1,
                    "",
                    payload,
                )
                for n in range(2000)
            ],
        )
    token = bearer(engine, P.LOOKER)
    engine.dispose()
    return token


def _stalled_download(base: str, token: str) -> socket.socket:
    """The report asked for, and no more of it read than its first bytes: under way (its 200
    has come), and it cannot end while the client reads no more. Nothing more is waited for:
    the 0.5 s slept here only gave the server longer to fill the buffers before the stop."""
    client = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sendall(
        b"GET /api/v1/reports/own.csv?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z "
        b"HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    assert client.recv(100).startswith(b"HTTP/1.1 200")
    return client
