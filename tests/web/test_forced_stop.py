"""A Ctrl-C after a second one forced `serve` to stop (web.forced_stop): a key pressed three
times raised at once, cancelling the app's lifespan with a traceback, or came after the
server's end, where nothing caught it and the command was killed by SIGINT (review 47j).
Only a later one, when the shutdown looks stuck, breaks it. The live server's own stop is
tests/web/test_stopping.py; a signal's timing there is a race, here it is not."""

from __future__ import annotations

import signal

import pytest
import uvicorn

from servicetrail.web import forced_stop
from servicetrail.web.forced_stop import STUCK_SECONDS, Server


def _app(scope, receive, send):  # pragma: no cover - never served
    raise AssertionError


def test_ctrl_c_pressed_a_third_time_at_once_is_let_be_and_later_breaks_a_stuck_stop(
    monkeypatch,
):
    now = [1000.0]
    monkeypatch.setattr(forced_stop.time, "monotonic", lambda: now[0])
    server = Server(uvicorn.Config(_app))
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit
    now[0] += 0.05
    server.handle_exit(signal.SIGINT, None)  # the same key again: no KeyboardInterrupt
    now[0] += STUCK_SECONDS
    with pytest.raises(KeyboardInterrupt):
        server.handle_exit(signal.SIGINT, None)


def test_sigterm_then_ctrl_c_forces_the_stop_as_two_ctrl_c_do(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(forced_stop.time, "monotonic", lambda: now[0])
    server = Server(uvicorn.Config(_app))
    server.handle_exit(signal.SIGTERM, None)
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit
    server.handle_exit(signal.SIGINT, None)
