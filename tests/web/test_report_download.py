"""The own-traffic report's download (issue 10, finding 5): its Content-Disposition is built
from the parsed times only, and a time with control or non-ASCII characters is a 422 naming
the parameter, never a dropped connection or a 500; and no byte of it is sent before its
access-log entry is stored. API and web screen, on both engines."""

from __future__ import annotations

import csv
import http.client
import io
import re
import socket

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from servicetrail.store.access_log import EntryFilter, iter_entries
from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P
from tests.live_server import LiveServer, wait_until
from tests.web.screen_sign_in import PASSWORD, form_token, sign_in

HEADER_SAFE = re.compile(r'attachment; filename="[A-Za-z0-9_.-]+"')
HOSTILE_TIMES = [
    "\x0b2025-01-01T00:00:00Z",  # a vertical tab: once copied into the header raw
    "\u30002025-01-01T00:00:00Z",  # an ideographic space: not Latin-1, once a 500
    "2025-01-01T00:00:00Z\x00garbage",  # fromisoformat stops at the NUL and took the rest
    "2025-01-01\x00T00:00:00Z",
    "2025-01-01T00:00:00Z\x1b[31m",
]


@pytest.fixture
@P.starts_with_personas
def client(engine):
    P.load_personas(engine)
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


def bearer(engine, username: str, party_id: str) -> dict[str, str]:
    with engine.begin() as conn:
        create_account(conn, username, party_id, PASSWORD)
        return {"Authorization": f"Bearer {create_token(conn, username)}"}


def signed_in(client: TestClient, engine, username: str, party_id: str) -> str:
    """Signs the client in; returns its session's CSRF token."""
    with engine.begin() as conn:
        create_account(conn, username, party_id, PASSWORD)
    assert sign_in(client, username).status_code == 303
    return form_token(client.get("/report"))


@pytest.mark.parametrize(
    ("asked", "named"),
    [
        (("2025-01-01T00:00:00+01:00", " 2025-02-01 "), "20241231T230000Z-20250201T000000Z"),
        # strftime's %Y gave `9990101T000000Z`, and for year 1 `10101T000000Z` (audit 21b)
        (("0999-01-01T00:00:00Z", "2026-01-01T00:00:00Z"), "09990101T000000Z-20260101T000000Z"),
    ],
)
def test_the_api_names_the_file_after_the_parsed_utc_times(client, engine, asked, named):
    response = client.get(
        "/api/v1/reports/own.csv",
        headers=bearer(engine, "np", P.NORTHPOWER),
        params={"from": asked[0], "to": asked[1]},
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        f'attachment; filename="servicetrail-own-NORTHPOWER-{named}.csv"'
    )


@pytest.mark.parametrize("hostile", HOSTILE_TIMES)
@pytest.mark.parametrize("name", ["from", "to"])
@ON_SQLITE_ALONE
def test_the_api_refuses_a_time_with_control_or_non_ascii_characters(client, engine, hostile, name):
    params = {"from": "2024-12-01T00:00:00Z", "to": "2025-03-01T00:00:00Z", name: hostile}
    response = client.get(
        "/api/v1/reports/own.csv", headers=bearer(engine, "np", P.NORTHPOWER), params=params
    )
    assert response.status_code == 422
    assert response.json()["parameter"] == name
    assert "content-disposition" not in response.headers


@pytest.mark.parametrize("hostile", HOSTILE_TIMES)
@ON_SQLITE_ALONE
def test_the_screen_never_puts_a_raw_time_in_the_header(client, engine, hostile):
    """The form forgives whitespace around a field (a vertical tab included); what is left
    must be a time, and the file is named after the parsed time either way."""
    csrf = signed_in(client, engine, "np", P.NORTHPOWER)
    answer = client.post("/report", data={"csrf_token": csrf, "from": hostile, "to": "2025-03-01"})
    if hostile.strip() != hostile:
        assert answer.status_code == 200
        assert answer.headers["content-disposition"] == (
            'attachment; '
            'filename="servicetrail-own-NORTHPOWER-20250101T000000Z-20250301T000000Z.csv"'
        )
    else:
        assert answer.status_code == 422
        assert (
            "text/html" in answer.headers["content-type"]
            and "content-disposition" not in answer.headers
        )


def test_a_party_id_stored_before_ids_were_checked_still_gets_its_report(client, engine):
    """A store loaded by an earlier version may hold a Party ID such as 'ıNC' (dotless i):
    its report downloads, under a header-safe file name."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO party (party_id, name) VALUES (:p, 'Legacy Inc')"), {"p": "\u0131NC"}
        )
    headers = bearer(engine, "legacy", "\u0131NC")
    response = client.get(
        "/api/v1/reports/own.csv",
        headers=headers,
        params={"from": "2025-01-01", "to": "2025-02-01"},
    )
    assert response.status_code == 200
    assert HEADER_SAFE.fullmatch(response.headers["content-disposition"])
    assert response.text.splitlines()[0].startswith("id,")


def test_the_form_lists_the_columns_the_file_has(client, engine):
    csrf = signed_in(client, engine, "np", P.NORTHPOWER)
    page = client.get("/report").text
    answer = client.post(
        "/report", data={"csrf_token": csrf, "from": "2024-01-01", "to": "2027-01-01"}
    )
    header = answer.text.splitlines()[0]
    assert f"Columns: {header.replace(',', ', ')}." in page  # execution_at and all


def report_entries(engine) -> list:
    with engine.connect() as conn:
        return [e for e in iter_entries(conn, EntryFilter()) if e.action == "report"]


@P.starts_with_personas
def test_no_byte_of_a_report_is_sent_before_its_access_log_entry_is_stored(engine):
    """SPEC section 8: a read's entry is stored before its first byte is sent. Another
    connection holds the access log's writes (SQLite's write lock; a lock on the table on
    PostgreSQL) while the report is asked for: nothing may arrive, not even the status line,
    until the entry can be stored; bytes let out as they were spooled went ahead of their
    entry (audit 27c)."""
    world = P.load_personas(engine)
    own = [r for r in world.records.values() if r.user_id in world.user_ids[P.NORTHPOWER]]
    token = bearer(engine, "np.analyst", P.NORTHPOWER)["Authorization"]
    postgres = engine.dialect.name == "postgresql"
    with LiveServer(create_app(engine)) as server, engine.connect() as locker:
        if postgres:
            locker.execute(text("LOCK TABLE access_log IN SHARE MODE"))
        else:
            locker.exec_driver_sql("BEGIN IMMEDIATE")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"GET /api/v1/reports/own.csv?from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z"
                b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token.encode() + b"\r\n\r\n"
            )
            if postgres:  # the report is spooled whole, and its entry waits for the lock
                # pg_stat_activity is read once a transaction unless its snapshot is cleared
                # (each look clears it for the next): a first look before the request reached
                # its wait saw none for the whole 4 s, the locker's transaction being one
                assert wait_until(
                    lambda: locker.execute(
                        text(
                            "SELECT pg_stat_clear_snapshot(), count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    ).one()[1],
                    4,
                )
            # (SQLite: a report of the personas is spooled in far less than this wait)
            sock.settimeout(0.5 if postgres else 2)
            with pytest.raises(TimeoutError):
                sock.recv(1, socket.MSG_PEEK)
            assert report_entries(engine) == []
            locker.rollback()  # the entry can be stored now, and then the report sent
            sock.settimeout(10)
            assert sock.recv(1, socket.MSG_PEEK)
            [entry] = report_entries(engine)  # stored before that first byte was sent
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            assert answer.status == 200
            rows = list(csv.DictReader(io.StringIO(answer.read().decode())))
    assert len(rows) == len(own) == entry.records_returned > 0


@P.starts_with_personas
def test_a_report_the_server_has_no_room_for_is_a_503_saying_so(pg_engine, monkeypatch):
    """The report is spooled to the server's temporary folder before its first byte is sent:
    a full folder (a stalled client holds its report's spool) made every report a 500 and a
    traceback (audit 30a). The folder's room is cut here by this process's file size limit
    (PostgreSQL's own files are another process's); the answer is a 503 saying why, and
    nothing is logged as read."""
    import resource

    engine = pg_engine
    P.load_personas(engine)
    with engine.begin() as conn:  # a report larger than the limit below
        from datetime import timedelta

        from servicetrail.domain.model import SatRecord
        from servicetrail.store.writer import append_records

        append_records(
            conn,
            [
                SatRecord(
                    P.t("2025-05-01T00:00:00Z") + timedelta(minutes=n),
                    "request",
                    P._rid(P.NP_IS, P.ESME_1, 700 + n),
                    "11.2",
                    P.NP_IS,
                    P.ESME_1,
                    "",
                    "x" * 20_000,
                )
                for n in range(10)
            ],
        )
    headers = bearer(engine, "np", P.NORTHPOWER)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
        try:
            answer = client.get(
                "/api/v1/reports/own.csv",
                headers=headers,
                params={"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            )
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert answer.status_code == 503, answer.text
    assert "no room to prepare this report" in answer.json()["message"]
    assert answer.headers.get("Retry-After")
    assert report_entries(engine) == []
