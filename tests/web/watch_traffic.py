"""LOOKER's traffic for the watch tests: a request made to measure, and records appended and
matched against the watches at once."""

from __future__ import annotations

from servicetrail.domain.model import SatRecord
from servicetrail.store.watch_matcher import match_new_records
from servicetrail.store.writer import append_records
from tests import personas as P


LATER = P.t("2025-04-01T10:00:00Z")


def ingest_and_match(engine, *records: SatRecord) -> None:
    with engine.begin() as conn:
        append_records(conn, list(records))
    with engine.begin() as conn:
        match_new_records(conn)


def lk_request(n: int, srv: str = "4.1.1") -> SatRecord:
    return SatRecord(
        LATER.replace(second=n % 60),
        "request",
        f"{P.LK_OU}:{P.ESME_1}:{n + 300}",
        srv,
        P.LK_OU,
        P.ESME_1,
        "",
        "<the body>",
    )
