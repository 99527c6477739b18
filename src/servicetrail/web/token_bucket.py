"""A budget a second (web.gate: what carries no credential; web.first_lookups: the first
look-ups of credentials not yet seen)."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` a second, up to `burst` saved: `take` is 0 when one was taken, else the seconds
    until one will be there (the loop is one thread: no lock)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def give_back(self) -> None:
        """One taken and not used (another budget it also needed had none)."""
        self.tokens = min(self.burst, self.tokens + 1)
