"""The server's log kept readable against a stranger's malformed requests (web.quiet_logs)."""

from __future__ import annotations

import logging

import pytest
from python_multipart.multipart import MultipartParseError, MultipartParser

from servicetrail.web.quiet_logs import quiet_repeated_warnings

MULTIPART_LOGGER = "python_multipart.multipart"  # the library's, as its warnings name it


def test_malformed_multipart_bodies_are_said_once_not_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """python-multipart words each refusal afresh (the byte met, where), so each post to the
    sign-in page wrote its line to the server's log (audit 55f); counted by logger, one is said."""
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", MULTIPART_LOGGER)]
    before = [list(logger.filters) for logger in loggers]
    quiet_repeated_warnings()
    try:
        with caplog.at_level(logging.WARNING, logger=MULTIPART_LOGGER):
            for n in range(30):
                try:  # raised or not, as the library's version has it: its warning counts
                    MultipartParser(b"xx").write(b"--x%c\r\n" % (ord("a") + n % 26))
                except MultipartParseError:
                    pass
    finally:  # the process's other tests keep the loggers as they were
        for logger, filters in zip(loggers, before, strict=True):
            logger.filters[:] = filters
    said = [r for r in caplog.records if r.name == MULTIPART_LOGGER]
    assert len(said) == 1, [r.getMessage() for r in said]
