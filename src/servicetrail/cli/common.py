"""What every command shares with its terminal: the one way it fails (Failure), the
standard streams as it expects them, text made fit to print there, and `--db`."""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def db_option(command: F) -> F:
    """`--db URL`: before the command name (on the group) or after it (on every command that
    opens the store); the store's URL otherwise comes from the settings."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="Database URL (default: $SERVICETRAIL_DATABASE_URL, else sqlite:///servicetrail.db).",
    )(command)


def unused_db_option(command: F) -> F:
    """`--db URL` on a command that opens no store (it checks files offline): SPEC section 5
    gives `--db URL` to any command, so a script that adds it to each command it runs is not
    refused there (No such option, exit 2); the URL is used by nothing."""
    return click.option(
        "--db",
        metavar="URL",
        default=None,
        expose_value=False,
        help="Taken as every command takes it; this command reads no store.",
    )(command)


class Failure(click.ClickException):
    """The one way a command fails: click prints "Error: message" and exits with `code`
    (2: the request cannot be done as asked; 3: the store gave up on it; 1: it was done,
    but not all of it)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        # click declares exit_code per class and reads it from the instance it caught: one
        # type carrying any code sets it per instance
        self.exit_code = code  # type: ignore[misc]


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd's stop, `docker stop`, `timeout`), raised where the command stands as
    Ctrl-C's KeyboardInterrupt is, so that it stops as Ctrl-C stops it: a load says what it
    kept, and signs it. Left to the default, SIGTERM ended a load without a word, what it had
    kept in no signed checkpoint (audit 45b)."""


def stopped(interrupt: KeyboardInterrupt) -> Failure:
    """How a command stopped by a signal fails: 130 for Ctrl-C and 143 for SIGTERM, as a
    shell says them (128 + the signal), told apart from rejects and findings (1)."""
    if isinstance(interrupt, Terminated):
        return Failure("terminated", 128 + signal.SIGTERM)
    return Failure("interrupted", 128 + signal.SIGINT)


# the last of Ctrl-C and SIGTERM that this command met (sigterm_stops_as_ctrl_c)
_signalled: KeyboardInterrupt | None = None


def _stop(signum: int, frame: FrameType | None) -> None:
    global _signalled
    _signalled = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    raise type(_signalled)


def signalled() -> KeyboardInterrupt | None:
    """Ctrl-C or SIGTERM, if either came while this command ran: raised inside a function
    SQLite calls (a report's SRV titles), the KeyboardInterrupt came out as sqlite3's
    "user-defined function raised exception", its cause dropped: a traceback and exit 1
    (review 45f for SIGTERM, session 46 for Ctrl-C)."""
    return _signalled


# what Python gives each signal when nothing else was set before it
_PYTHONS_OWN: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
}


def left_to_the_server(*signals: signal.Signals) -> None:
    """Python's own handlers back, for a server that stops on them itself. uvicorn stops
    gracefully on SIGTERM, then raises it again to end by it (143 in a shell); raised as
    Terminated, a KeyboardInterrupt, uvicorn took it for Ctrl-C, and the server said nothing
    and exited 0 (review 45f). asyncio.Runner (`deliver`) turns Ctrl-C into a cancel of its
    task only over Python's own Ctrl-C handler."""
    with suppress(ValueError):  # not the main thread: not this thread's to set
        for each in signals:
            if signal.getsignal(each) is _stop:
                signal.signal(each, _PYTHONS_OWN[each])


@contextmanager
def sigterm_stops_as_ctrl_c() -> Iterator[None]:
    """While a command runs: SIGTERM stops it as Ctrl-C does, and either is noted as it comes
    (`signalled`). Neither where it was given a handler already (a program that runs the
    command in its own process, a shell that started it with Ctrl-C ignored), and each put
    back after (a test runner's)."""
    global _signalled
    _signalled = None
    try:
        for each, own in _PYTHONS_OWN.items():
            if signal.getsignal(each) is own:
                signal.signal(each, _stop)
    except ValueError:  # not the main thread: signals are not this thread's to handle
        yield
        return
    try:
        yield
    finally:
        left_to_the_server(*_PYTHONS_OWN)


def printable(text: str) -> str:
    """`text` for a terminal: what is not printable (control characters such as ESC, which a
    file's name may hold, direction and zero-width marks, bytes of a name that were not
    UTF-8) written as its escape, line breaks aside."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable() or c == "\n"
        else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


_stdout_closed = False


def standard_streams() -> None:
    """The three streams as every command expects them (audit 23a). A closed standard input
    reads as empty, as `< /dev/null` does (a password prompt met None and a traceback); a
    closed standard error or output takes what would be said there (progress met None, and
    the whole ingest failed unseen, exit 1), except what is shown once (`shown_once`).
    Output is UTF-8 whatever the locale, as records and reports always were (watch list and
    the access log failed on a Latin-1 terminal, after `watch add` had made the watch)."""
    global _stdout_closed
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (the process's stream)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    elif hasattr(sys.stderr, "reconfigure"):  # a stream a caller put there may not have it
        sys.stderr.reconfigure(errors="backslashreplace")
    _stdout_closed = sys.stdout is None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")


def shown_once() -> None:
    """Before making what is printed this once (a token, a webhook's secret): refused when
    standard output is closed, since it would be made and reach no one."""
    if _stdout_closed:
        raise Failure("standard output is closed: what this makes is shown only once there")


@contextmanager
def shown_before_kept(what: str) -> Iterator[Callable[[str], None]]:
    """Prints what is shown once, inside the transaction that keeps it (opened within this
    block), so that one that reached no one is not kept; when that transaction then fails
    (a full disk at the commit, a lost connection), says that what is on standard output
    was not kept. The error alone ("the store's disk is full; try again") left a printed
    token or watch that looked made, and a script that kept it kept one that does not
    exist (audit 54g)."""
    shown = False

    def show(text: str) -> None:
        nonlocal shown
        click.echo(text)
        sys.stdout.flush()
        shown = True

    try:
        yield show
    except Exception:
        if shown:
            click.echo(f"the {what} printed above was not kept: it does not exist", err=True)
        raise


def wait_while_read(seconds: float) -> None:
    """Wait, but end as a write would, quietly (BrokenPipeError), as soon as whoever read
    standard output has gone: a follow with nothing new writes nothing, and `watch events
    --follow | head -1` ran on until the next event after head had gone (review 47b)."""
    try:
        out = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file: a test's captured output
        time.sleep(seconds)
        return
    watcher = select.poll()
    watcher.register(out, 0)  # a pipe's writer is told POLLERR once its reader has gone
    if watcher.poll(seconds * 1000):  # POLLERR, POLLHUP (a socket, a terminal) or POLLNVAL
        raise BrokenPipeError(errno.EPIPE, "standard output's reader has gone")
