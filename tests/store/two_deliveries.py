"""A watch with a webhook, and two deliveries of it waiting."""

from __future__ import annotations

from collections.abc import Iterable

from servicetrail.domain.watches import watch_spec
from servicetrail.store.watch_matcher import catch_up
from servicetrail.store.watches import create_watch
from servicetrail.webhooks.signing import new_secret
from tests import personas as P


def lk_requests(engine, numbers: Iterable[int]) -> None:
    """Lookat's requests to ESME 1, a second apart, stored: records SOUTHENERGY's watch matches."""
    P.requests_to_esme_1(engine, numbers, counter_from=700)


def two_deliveries(engine) -> int:
    with engine.begin() as conn:
        made = create_watch(
            conn,
            P.SOUTHENERGY,
            watch_spec({"name": "w", "webhook": {"url": "https://hooks.example.com/w"}}),
            new_secret(),
        )
    lk_requests(engine, (1, 2))
    catch_up(engine)
    return int(made["id"])
