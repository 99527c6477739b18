"""The loaders' progress bar (cli.progress), drawn by rich into a string: each pass of a
registry load shows in its own unit."""

from __future__ import annotations

import io

from rich.console import Console

from servicetrail.cli.progress import TerminalBar, terminal_progress
from servicetrail.ingest.summary import StagedProgress


def drawn(progress) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(progress.make_tasks_table(progress.tasks))
    return out.getvalue()


def test_the_bar_counts_bytes_then_a_pass_of_unknown_length_then_lines() -> None:
    progress = terminal_progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bar = TerminalBar(progress, 3_000_000)
    assert isinstance(bar, StagedProgress)  # what the loaders test for before staging
    bar(1_500_000)
    assert "loading" in drawn(progress) and "1.5/3.0 MB" in drawn(progress)

    bar.stage("reading ahead", None, "")
    shown = drawn(progress)
    assert "reading ahead" in shown and "MB" not in shown and "/" not in shown

    bar.stage("judging lines that waited", 12_000, "lines")
    bar(3_000)
    shown = drawn(progress)
    assert "judging lines that waited" in shown
    assert "3000/12000" in shown and "MB" not in shown
