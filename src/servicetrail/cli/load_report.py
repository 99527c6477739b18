"""What a load tells its user: a progress bar on a terminal, its summary and reject files,
and, when it stops part way, what it kept."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..ingest.summary import Summary
from .common import Failure, printable
from .common import stopped as stopped_by  # `stopped` is the load's error here


@contextmanager
def progress_for(paths: list[Path]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (cli.progress); nothing when the output is a pipe or a
    file."""
    if not sys.stderr.isatty():
        yield None
        return
    from .progress import TerminalBar, terminal_progress

    total = sum(
        p.stat().st_size
        for path in paths
        for p in ([path] if path.is_file() else path.rglob("*"))
        if p.is_file()
    )
    with terminal_progress() as bar:
        yield TerminalBar(bar, total)


@contextmanager
def kept_if_stopped(sealed_later: bool) -> Iterator[Summary]:
    """The summary a load counts into as its batches commit. A load that stops part way (a
    store that gave up, say) has committed its batches so far: they stay, and running the
    same command again adds only the rest. Say so, with the counts, before the error, so that
    nobody reads the failure as "nothing was loaded"."""
    summary = Summary()
    try:
        yield summary
    except (Exception, KeyboardInterrupt) as stopped:
        if (
            summary.loaded
            or summary.rejected
            or summary.duplicates
            or summary.waiting
            or summary.in_doubt
        ):
            later = (
                " (their logs are sealed by the next ingest or the server)"
                if sealed_later and not summary.sealed
                else ""
            )
            if summary.not_sealed:
                later = f" (not signed: {printable(summary.not_sealed)}){later}"
            if summary.waiting:
                # changes of supplier among them, half applied perhaps (docs/loading.md)
                later += (
                    f"; {summary.waiting} lines that waited for the file's end were not applied"
                )
            if summary.in_doubt:
                later += f"; the last batch of {summary.in_doubt}: not known whether it was stored"
            click.echo(
                f"stopped part way; kept from before: {summary.line()}{later}. Running the same "
                "command again adds only what is missing.",
                err=True,
            )
            for path in summary.reject_files:
                click.echo(
                    f"rejected records, with their line and reason: {printable(str(path))}",
                    err=True,
                )
        if isinstance(stopped, KeyboardInterrupt):
            raise stopped_by(stopped) from None
        raise


def report_summary(summary: Summary) -> None:
    click.echo(summary.line())
    if summary.corrected:
        click.echo(f"({summary.corrected} of those corrected an existing entry)", err=True)
    if summary.superseded:
        click.echo(
            f"({summary.superseded} of those skipped gave an interval that a later line of the "
            "file gives again, which was taken instead)",
            err=True,
        )
    if summary.skipped_files:  # not loaded, not rejected: said, never dropped in silence
        names = ", ".join(printable(str(p)) for p in summary.skipped_files[:5])
        more = len(summary.skipped_files) - 5
        click.echo(
            f"({len(summary.skipped_files)} file(s) in the folder(s) skipped, hidden, holding "
            "neither DUIS XML nor JSON Lines, or not regular files: "
            f"{names}{f' and {more} more' if more > 0 else ''})",
            err=True,
        )
    for path in summary.reject_files:
        click.echo(
            f"rejected records, with their line and reason: {printable(str(path))}", err=True
        )
    if summary.rejected:
        raise Failure(f"{summary.rejected} record(s) rejected", 1)
