"""The `servicetrail` command group itself, and the one place where an expected error of any
command becomes its message and exit code."""

from __future__ import annotations

import importlib
import os
import signal
import sqlite3
import sys
from contextlib import suppress
from typing import Any

import click

from .. import settings
from ..ingest.descriptors import remember_inherited_descriptors
from ..interruption import interruption_in
from ..store.postgresql_errors import psycopg_error
from .commands import OnceOnlyGroup
from .common import (
    Failure,
    db_option,
    printable,
    sigterm_stops_as_ctrl_c,
    standard_streams,
    stopped,
    signalled,
)

# What a command may meet that is the input's or the store's fault, never a bug, and the
# exit code it gets: 2 the request cannot be done as asked, 3 the store gave up on it. Named,
# not imported: an error of a module the command never imported cannot have been raised, and
# importing them all (the signing's cryptography, the accounts' argon2, the registry's
# reader...) cost every command's start what only some commands use.
EXPECTED: dict[str, int] = {
    "servicetrail.settings:SettingError": 2,
    "servicetrail.store.engine:StoreError": 2,
    "servicetrail.store.schema_watch:StoreUpgraded": 2,  # a restart mends it, not a retry
    "servicetrail.store.accounts:AccountError": 2,
    "servicetrail.security:WeakPassword": 2,
    "servicetrail.ingest.registry_csv:BadHeader": 2,
    "servicetrail.signing:SigningKeyError": 2,
    "servicetrail.ingest.sources:UnreadableInput": 2,
    "servicetrail.store.limits:SearchTooBroad": 3,
    "servicetrail.store.limits:StoreBusy": 3,
    # a file that cannot be read or written (no permission, an I/O error): the machine's, said
    # with the file's name, not a traceback
    "builtins:OSError": 2,
}


def _expected_code(error: BaseException) -> int | None:
    """The exit code EXPECTED gives `error`, or None when it is not one of them."""
    for name, code in EXPECTED.items():
        module, _, kind = name.partition(":")
        imported = sys.modules.get(module)
        if imported is not None and isinstance(error, getattr(imported, kind)):
            return code
    return None


class Servicetrail(OnceOnlyGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a command's name -> ("module:attribute" in this package, imported when first asked
        # for, and the first sentence of its help, listed by --help): cli/__init__.py says why
        self.lazy_commands: dict[str, tuple[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module, _, attribute = self.lazy_commands[cmd_name][0].partition(":")
            found = getattr(importlib.import_module(f".{module}", __package__), attribute)
            self.add_command(found, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """--help's list, each command said by its listed first sentence unless imported."""
        listed = {
            name: self.commands.get(name) or click.Command(name, help=self.lazy_commands[name][1])
            for name in self.list_commands(ctx)
        }
        click.Group(commands=listed).format_commands(ctx, formatter)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as e:
            # click's "Did you mean 'records'?" looks among the commands imported: all of them
            raise click.exceptions.NoSuchCommand(
                e.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standard_streams()
        with sigterm_stops_as_ctrl_c():
            try:
                return super().main(*args, **kwargs)
            except BrokenPipeError:
                # click says a command's refusal or failure once it has ended, and let this out
                # when standard error's reader had gone (`records --party X 2>&1 | true`): the
                # interpreter's exit 1, where `ls /nowhere 2>&1 | true` is the shell's 141
                raise SystemExit(_reader_gone(sys.stdout, sys.stderr).exit_code) from None

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:  # `servicetrail --help | head -1`: printed while parsing
            raise _reader_gone() from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            done = super().invoke(ctx)
            sys.stdout.flush()  # what is left to write, while a reader gone is still ours
        except BrokenPipeError:
            raise _reader_gone() from None
        except UnicodeEncodeError as e:
            if not _undecoded(e):
                raise
            # bytes that were not UTF-8 on the command line or standard input (Python keeps
            # them as lone surrogates), met where text is stored or compared (audit 23a)
            raise Failure(
                f"{printable(e.object[max(e.start - 20, 0) : e.end + 20])}: not UTF-8 text "
                "(an argument or the standard input holds bytes that are not UTF-8)",
                2,
            ) from None
        except KeyboardInterrupt as e:
            # click's own answer, "Aborted!" and exit 1, read as rejects or findings (audit 45b)
            raise stopped(e) from None
        except Exception as e:
            interrupt = interruption_in(e) or signalled()
            if interrupt is not None:
                # Ctrl-C inside a library's clean-up (SQLAlchemy's commit, between the
                # database's COMMIT and its own bookkeeping) came out as an AssertionError,
                # with a traceback and exit 1 (the fresh-clone suite, session 37)
                raise stopped(interrupt) from None
            if _not_utf8(e):
                raise Failure(
                    "the store holds text that is not UTF-8, which servicetrail never writes: "
                    "it was written behind servicetrail's back ('servicetrail log verify' names "
                    f"where): {printable(str(_raw(e)))}",
                    2,
                ) from None
            if _read_only(e):
                raise Failure(
                    "the store is read-only: a read of SAT records writes its access-log entry "
                    "first (SPEC section 8); 'log verify' checks a read-only copy",
                    2,
                ) from None
            if psycopg_error(_raw(e), "InsufficientPrivilege"):
                # as a role that has the tables' grants but is not the store's owner, a read's
                # access-log entry was refused by row-level security (audit 29a)
                said = str(_raw(e)).partition("\n")[0]
                raise Failure(
                    f"PostgreSQL refused it ({printable(said)}): servicetrail runs as the "
                    "role that owns the store, the one that built it",
                    2,
                ) from None
            # imported here: it imports SQLAlchemy, which `--help` and `generate` never need
            from ..store.limits import store_busy

            known = store_busy(e) or e  # SQLite's lock not had in time, raised by any write
            code = _expected_code(known)
            if code is None and _the_databases(e):
                # a store changed behind servicetrail's back (a trigger of an intruder's that
                # refuses the access log's writes; audit 46d) or failing: the database's words
                said = str(_raw(e)).strip().partition("\n")[0]
                raise Failure(f"the store refused it: {printable(said)}", 2) from None
            if isinstance(known, BrokenPipeError):
                raise _reader_gone() from None  # met inside a library's call, wrapped
            if code is None:
                raise
            raise Failure(printable(_said(known)), code) from None
        # a stop raised where Python could not pass it on (inside a garbage collector's
        # callback: "Exception ignored in ..."), and the command ran on to its end: it exited
        # 0 as if never stopped (review 46f). What it did stands; its exit says it was stopped
        swallowed = signalled()
        if swallowed is not None:
            raise stopped(swallowed)
        return done


def _reader_gone(*streams: Any) -> click.exceptions.Exit:
    """How a command whose standard output's reader has gone (`records | head -1`) ends:
    without a word, and with 141, the status a shell gives `seq 1000000 | head -1`'s seq, a
    coreutils filter killed by SIGPIPE, as Ctrl-C and SIGTERM are said 130 and 143 (stopped).
    Said as an exit status, not by dying of the signal: a command's clean-up still runs (a
    load signs what it kept). Not 0, which says all was written; click's own answer was 1, a
    command's failure (audit 57h). What is left in the buffers of `streams` (standard output
    unless named) goes nowhere, so the interpreter's last flush does not complain (Python's
    own advice, "Note on SIGPIPE")."""
    for stream in streams or (sys.stdout,):
        with suppress(OSError, ValueError):  # a test's captured output has no descriptor
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, stream.fileno())
            os.close(nowhere)
    return click.exceptions.Exit(128 + signal.SIGPIPE)


def _raw(error: Exception) -> BaseException | None:
    # SQLAlchemy's wrapping, if it is imported: a command that never opened the store (--help,
    # generate) cannot have raised it, and need not import it (0.25 s of a start's CPU)
    wrapped: Any = sys.modules.get("sqlalchemy.exc")
    if wrapped is not None and isinstance(error, wrapped.DBAPIError):
        return error.orig  # the access log's is raw
    return error


def _the_databases(error: Exception) -> bool:
    """An error the database raised (through SQLAlchemy, or from the driver itself, as the
    access log's writer calls it), not one of ours."""
    raw = _raw(error)
    if isinstance(raw, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return False  # the driver's own complaint at how it was called: a bug, a traceback
    if psycopg_error(raw, "InterfaceError") or (
        psycopg_error(raw, "ProgrammingError") and getattr(raw, "sqlstate", None) is None
    ):
        return False  # the same of psycopg's, raised before the server saw anything
    return isinstance(raw, sqlite3.Error) or psycopg_error(raw, "Error")


def _read_only(error: Exception) -> bool:
    """SQLite's refusal to write a store opened read-only (`?mode=ro`, `immutable=1`, a
    read-only file): a traceback (review 23f)."""
    raw = _raw(error)
    return isinstance(raw, sqlite3.OperationalError) and "readonly database" in str(raw)


def _not_utf8(error: Exception) -> bool:
    """SQLite's "Could not decode to UTF-8 column ..." for bytes an intruder stored as text:
    a traceback from any command that read them (audit 27a)."""
    raw = _raw(error)
    return isinstance(raw, sqlite3.OperationalError) and "Could not decode to UTF-8" in str(raw)


def _undecoded(error: UnicodeEncodeError) -> bool:
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in error.object[error.start : error.end])


def _said(error: Exception) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


@click.group(
    cls=Servicetrail,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@db_option
@click.version_option(package_name="servicetrail")
@click.pass_context
def main(ctx: click.Context, db_url: str | None) -> None:
    """servicetrail: the DCC Service Audit Trail with SEC MP141 visibility.

    Load the registry (users, devices, responsibilities), ingest DUIS traffic, and see
    what each Party may see: its own traffic in full, and as Responsible Supplier or
    Network Operator the titles of every request and response to its devices.
    """
    settings.reload()  # this invocation's environment, checked before any command runs
    remember_inherited_descriptors()  # before the store opens one: see ingest.descriptors
    ctx.obj = db_url
