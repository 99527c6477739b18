"""What a delivery worker tells its operator: counts of what came of its attempts (for
`servicetrail deliver`'s summary and the tests) and, at most once a minute, a warning naming
the watches whose deliveries failed."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from ..store.outbox import Outcome

log = logging.getLogger("servicetrail.webhooks")

MOST_ERROR_KINDS = 100


@dataclass
class Stats:
    delivered: int = 0
    failed: int = 0
    gone: int = 0
    given_up: int = 0
    # leased, then not to be sent: hidden by a registry correction, or its watch deleted or
    # its receiver gone (410 to another worker) before it was sent
    hidden: int = 0
    # given a slot, then not sent: its worker's loop stalled until its lease had too little
    # left (due again when the lease ends)
    late: int = 0
    errors: Counter[str] = field(default_factory=Counter[str])

    def count_error(self, error: str) -> None:
        """Counted by its first words, of MOST_ERROR_KINDS kinds at most: an error names its
        host, and a Party that made watches for ever new hosts grew the counter for the life
        of the worker (audit 21a)."""
        kind = error[:60]
        if kind not in self.errors and len(self.errors) >= MOST_ERROR_KINDS:
            kind = "(other errors)"
        self.errors[kind] += 1


FAILURES_LOGGED_EVERY_SECONDS = 60.0


class FailureLog:
    """The operator's word on failing deliveries: a receiver that is down, or a name that does
    not resolve, is retried for days, and would otherwise not be heard of (audit 22d). One
    warning a minute at most, naming each watch that failed since the last one (up to
    MOST_ERROR_KINDS of them) with its count and latest error: one a round came to 20 lines a
    second for a Party whose 30 receivers all failed (review 22e)."""

    def __init__(self, every: float = FAILURES_LOGGED_EVERY_SECONDS) -> None:
        self.every = every
        self._failed: dict[int, tuple[int, str]] = {}
        self._last = -every

    def add(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if o.status == "failed":
                count, _ = self._failed.get(o.watch_id, (0, ""))
                self._failed[o.watch_id] = (count + 1, o.detail or o.error)
        now = time.monotonic()
        if self._failed and now - self._last >= self.every:
            shown = sorted(self._failed.items())[:MOST_ERROR_KINDS]
            log.warning(
                "%d webhook deliveries failed, to be retried: %s",
                sum(count for count, _ in self._failed.values()),
                "; ".join(f"watch {w}: {count} ({error[:120]})" for w, (count, error) in shown),
            )
            self._failed, self._last = {}, now
