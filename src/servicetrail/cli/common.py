"""What every command of the command line shares: parameter types, the store, failing, summaries."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine

from ..domain.ids import InvalidValue, eui64, whole_number
from ..domain.times import parse_time
from ..store.engine import StoreError, database_url, open_store

KINDS = ("users", "devices", "responsibilities")


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


class EuiParam(click.ParamType):
    name = "EUI-64"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return eui64(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


class CountParam(click.ParamType):
    """A count of 1 or more in the digits 0-9: click's INT takes anything int() does ('٣', '1_0')."""

    name = "N"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            count = whole_number(value)
        except InvalidValue:
            self.fail(f"{value!r} is not a whole number written in the digits 0-9", param, ctx)
        if count < 1:
            self.fail(f"{value} is not 1 or more", param, ctx)
        return count


TIME = TimeParam()
EUI = EuiParam()
COUNT = CountParam()


def with_db(command: Callable) -> Callable:
    """`--db URL` on every command, as well as before the command name."""

    @click.option("--db", "db_url", metavar="URL", default=None,
                  help="Database URL (default: $SERVICETRAIL_DATABASE_URL, else sqlite:///servicetrail.db).")
    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx: click.Context, db_url: str | None, **kwargs: Any) -> Any:
        ctx.obj = db_url or (ctx.obj if isinstance(ctx.obj, str) else None)
        return command(**kwargs)

    return wrapper


class Failure(click.ClickException):
    """The one way a command fails: click prints "Error: message" and exits with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = code


def engine(*, upgrade: bool = False) -> Engine:
    """The store at the current schema; `upgrade`: migrate one at an older schema (else refused)."""
    url = click.get_current_context().obj
    try:
        return open_store(url, upgrade=upgrade)
    except StoreError as e:
        raise Failure(str(e)) from None
    except Exception as e:  # an unreachable server or a bad URL: say which, without a stack
        raise Failure(f"cannot open the store at {database_url(url)}: {e}") from None


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def progress_for(paths: list[Path]):
    """A progress bar on a terminal; nothing when the output is a pipe or a file."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    total = sum(p.stat().st_size for path in paths for p in ([path] if path.is_file() else path.rglob("*"))
                if p.is_file())
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("loading", total=total)
        yield lambda done: bar.advance(task, done)


def report_summary(summary) -> None:
    click.echo(summary.line())
    if summary.corrected:
        click.echo(f"({summary.corrected} of those corrected an existing entry)", err=True)
    for path in summary.reject_files:
        click.echo(f"rejected records, with their line and reason: {path}", err=True)
    if summary.rejected:
        sys.exit(1)


def viewer_of(conn, party_id: str):
    from ..store.queries import viewer_for

    viewer = viewer_for(conn, party_id)
    if viewer is None:
        fail(f"unknown party {party_id!r}")
    return viewer


def output_to(path: Path | None):
    return open(path, "w", newline="", encoding="utf-8") if path else nullcontext(sys.stdout)
