"""What a load tells as it runs and when it ends: its progress and its summary, the same for
the registry's loaders (ingest.registry_load) and the trail's (ingest.trail_load)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .rejects import RejectFile

Progress = Callable[[int], None]  # called with bytes read since the last call


@runtime_checkable
class StagedProgress(Protocol):
    """A progress display that also shows a registry load's passes besides reading the file:
    the look-ahead before it and the judging of the lines that waited after it, which left
    a bar at 0% or at 100% for as long as they took. After `stage`, calls count in the
    stage's `unit` ("bytes" or "lines"); a pass of unknown length has total None and unit
    "" and is not counted."""

    def __call__(self, done: int) -> None: ...

    def stage(self, description: str, total: int | None, unit: str) -> None: ...


def stage(progress: Progress | None, description: str, total: int | None, unit: str) -> None:
    if isinstance(progress, StagedProgress):
        progress.stage(description, total, unit)


@dataclass
class Summary:
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0
    corrected: int = 0
    superseded: int = 0  # registry rows skipped (among the duplicates) for a later line's word
    # registry lines that were waiting for the file's end, not yet judged, when the load stopped
    waiting: int = 0
    times_from_mtime: int = 0  # bare request files timed by their modification time
    sealed: bool = False  # an interrupted ingest signed what it kept (trail_load)
    not_sealed: str = ""  # why an interrupted ingest could not sign what it kept
    # new records of the batch whose commit a stop interrupted, when the store could not say
    # whether that commit happened (trail_load)
    in_doubt: int = 0
    skipped_files: list[Path] = field(default_factory=list)  # in folders, of neither form
    reject_files: list[Path] = field(default_factory=list)
    # the trail's: records loaded a month (`YYYY-MM`), and of those the months retention
    # removed while the run went on, with them (trail_load._gone_to_retention)
    loaded_months: Counter[str] = field(default_factory=Counter)
    retired: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        said = (
            f"loaded {self.loaded}, rejected {self.rejected}, skipped {self.duplicates} duplicates"
        )
        if self.times_from_mtime:
            said += f"; {self.times_from_mtime} times taken from file modification times"
        if self.retired:
            # still counted as loaded, so that the counts add up to the input's records
            months = ", ".join(f"{month}: {count}" for month, count in sorted(self.retired.items()))
            said += (
                f"; {sum(self.retired.values())} of those loaded are no longer stored: "
                f"retention removed their month{'s' if len(self.retired) > 1 else ''} "
                f"({months}) while this ran"
            )
        return said


def count_rejects(summary: Summary, rejects: RejectFile) -> Summary:
    rejects.close()
    summary.rejected += rejects.count
    if rejects.count and rejects.written_to not in summary.reject_files:
        summary.reject_files.append(rejects.written_to)
    return summary
