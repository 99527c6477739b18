"""The loaders' progress bar on a terminal: bytes while a file is read, lines while a
registry load judges the lines that waited for the file's end, and an empty bar with a
running clock for a pass of unknown length (the look-ahead). Imported only when a terminal
draws one: rich costs the command line's start (see cli.serving.demo)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class _ByUnit(ProgressColumn):
    """One column drawn as the task's unit says: bytes, lines, or nothing."""

    def __init__(self, for_bytes: ProgressColumn, for_lines: ProgressColumn) -> None:
        super().__init__()
        self.for_bytes, self.for_lines = for_bytes, for_lines

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "bytes")
        if unit == "bytes":
            return self.for_bytes.render(task)  # type: ignore[return-value]
        if unit == "lines":
            return self.for_lines.render(task)  # type: ignore[return-value]
        return Text("")


class _LinesPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class TerminalBar:
    """A loader's progress (ingest.summary's StagedProgress) drawn by rich."""

    def __init__(self, bar: Progress, total_bytes: int) -> None:
        self.bar = bar
        self.task: TaskID = bar.add_task("loading", total=total_bytes, unit="bytes")

    def __call__(self, done: int) -> None:
        self.bar.advance(self.task, done)

    def stage(self, description: str, total: int | None, unit: str) -> None:
        # (rich keeps the task's total when given None: the bar stays empty, its counts
        # hidden by the unit)
        self.bar.reset(self.task, total=total, description=description, unit=unit)


def terminal_progress(**console: object) -> Progress:
    """The bar's columns; `console` for a test that draws it into a string."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        _ByUnit(DownloadColumn(), MofNCompleteColumn()),
        _ByUnit(TransferSpeedColumn(), _LinesPerSecond()),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        transient=True,
        **console,  # type: ignore[arg-type]
    )
