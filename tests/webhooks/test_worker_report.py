"""What the delivery worker tells its operator: bounded counts, and a warning a minute at most."""

from __future__ import annotations

from servicetrail.store.outbox import Outcome
from servicetrail.webhooks.worker_report import MOST_ERROR_KINDS, FailureLog, Stats


def test_failures_are_logged_once_a_minute_at_most(caplog) -> None:
    """A Party whose thirty receivers all fail made a warning a round, twenty a second: now
    one a minute, counting what failed since the last."""
    failures = FailureLog()
    with caplog.at_level("WARNING", logger="servicetrail.webhooks"):
        for round_ in range(50):
            failures.add([Outcome(w, round_, 0, "failed", "answered 503") for w in range(30)])
    assert len(caplog.records) == 1 and "30 webhook deliveries failed" in caplog.text
    failures.every = 0  # a minute later, as far as it knows
    with caplog.at_level("WARNING", logger="servicetrail.webhooks"):
        failures.add([Outcome(1, 99, 0, "failed", "answered 500")])
    assert len(caplog.records) == 2
    assert "1471 webhook deliveries failed" in caplog.records[1].getMessage()


def test_the_workers_error_counts_keep_a_bounded_number_of_kinds():
    """An error names its host: a Party making watches for ever new hosts grew the worker's
    counter without end (audit 21a). Past MOST_ERROR_KINDS kinds, the rest count together."""
    stats = Stats()
    for n in range(3 * MOST_ERROR_KINDS):
        stats.count_error(f"refused: the host 'receiver-{n}.invalid' does not resolve")
    stats.count_error("refused: the host 'receiver-0.invalid' does not resolve")
    assert len(stats.errors) == MOST_ERROR_KINDS + 1
    assert stats.errors["(other errors)"] == 2 * MOST_ERROR_KINDS
    assert sum(stats.errors.values()) == 3 * MOST_ERROR_KINDS + 1
