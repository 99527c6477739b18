"""The server's log of connections and requests, kept readable: each warning said at most once
in a while, with how many times it came since, and at the stop those never told."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter


class QuietRepeats(logging.Filter):
    """The server's warnings, each said at most once in `every` seconds, with how many times it
    came since: each slow connection, each upgrade to HTTP/2 asked for, each malformed request
    wrote its line (50,391 and 900 lines in two audit runs, 27b and 27e), for nothing but a
    stranger's few bytes. Errors, with their tracebacks, are all said."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self._last: dict[object, float] = {}
        self._unsaid: Counter[object] = Counter()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        now, key = time.monotonic(), record.msg
        with self._lock:
            if now - self._last.get(key, -self.every) < self.every:
                self._unsaid[key] += 1
                return False
            if len(self._last) > 1000:  # messages are templates: few; a bound all the same
                self._last.clear()
                self._unsaid.clear()
            self._last[key] = now
            more = self._unsaid.pop(key, 0)
        if more:
            record.msg = f"{record.msg} ({more} more since it was last said)"
        return True

    def untold(self) -> list[tuple[object, int]]:
        """The warnings held back since each was last said, with their counts, now forgotten."""
        with self._lock:
            held, self._unsaid = list(self._unsaid.items()), Counter()
        return held


def quiet_repeated_warnings() -> None:
    """The filter on uvicorn's log of connections and requests, once a process."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietRepeats) for f in logger.filters):
        logger.addFilter(QuietRepeats())


def say_untold_warnings() -> None:
    """At the server's stop, the count of each warning held back since it was last said: a
    burst that no later repeat of it told was otherwise lost (review 27e)."""
    logger = logging.getLogger("uvicorn.error")
    for quiet in [f for f in logger.filters if isinstance(f, QuietRepeats)]:
        for message, count in quiet.untold():
            # formatted here, no arguments: each line is its own, not one repeated template
            logger.warning(f"{message} ({count} more since it was last said, to the stop)")
