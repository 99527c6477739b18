"""LOOKER's requests to ESME-1, appended and matched, for the access log's tests and others
that need a Party's reads to have something to return."""

from __future__ import annotations

from servicetrail.store.watch_matcher import catch_up
from tests import personas as P


LATER = P.t("2025-04-01T10:00:00Z")


def lk_requests(engine, count: int, first: int = 0) -> None:
    """LOOKER's requests to ESME-1: MP141 titles for its supplier, SOUTHENERGY, by then."""
    P.requests_to_esme_1(engine, range(first, first + count), counter_from=700, at=LATER)
    catch_up(engine)
