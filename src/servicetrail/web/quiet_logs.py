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
    stranger's few bytes. Errors, with their tracebacks, are all said. `by_logger`: a logger's
    warnings counted as one, for a library that words each one afresh."""

    def __init__(self, every: float = 10.0, by_logger: bool = False) -> None:
        super().__init__()
        self.every, self.by_logger = every, by_logger
        self._last: dict[object, float] = {}
        self._unsaid: Counter[object] = Counter()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        now, key = time.monotonic(), record.name if self.by_logger else record.msg
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


# python-multipart's parser warns of each malformed form body it refuses (the client has its
# 400), in words of its own each time (the byte it met and where), on a logger with no handler
# (so Python's last resort wrote each to stderr): each post of a stranger's to the sign-in page
# wrote a line, past the quieting of uvicorn's (audit 55f: 60 posts, 60 lines)
MULTIPART_LOGGER = "python_multipart.multipart"
_QUIETED = {"uvicorn.error": False, MULTIPART_LOGGER: True}  # logger: by_logger


def quiet_repeated_warnings() -> None:
    """The filter on uvicorn's log of connections and requests, and on python-multipart's,
    once a process."""
    for name, by_logger in _QUIETED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietRepeats) for f in logger.filters):
            logger.addFilter(QuietRepeats(by_logger=by_logger))


def say_untold_warnings() -> None:
    """At the server's stop, the count of each warning held back since it was last said: a
    burst that no later repeat of it told was otherwise lost (review 27e). Said on uvicorn's
    log, each line its own (python-multipart's, counted by logger, would hold it back)."""
    said_on = logging.getLogger("uvicorn.error")
    for name, by_logger in _QUIETED.items():
        for quiet in [f for f in logging.getLogger(name).filters if isinstance(f, QuietRepeats)]:
            for message, count in quiet.untold():
                told = f"{message}: malformed form bodies refused" if by_logger else message
                # formatted here, no arguments: each line is its own, not one repeated template
                said_on.warning(f"{told} ({count} more since it was last said, to the stop)")
