"""More requests to ESME-1 in the persona world, each with a counter of its own."""

from __future__ import annotations

from tests import personas as P


def add_requests(engine, first: int, count: int) -> None:
    P.requests_to_esme_1(engine, range(first, first + count), counter_from=5000)
