"""Which of this command's own streams a reject file's name stands for: `/dev/stderr`,
`/dev/fd/2`, `/proc/self/fd/2` (or the /proc name the loader's resolving makes of it), or a
link that leads through one. The rejects then go down that stream, whatever file or pipe it
ends at, instead of into a reject file of their own (ingest.rejects).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .descriptors import inherited

STANDARD_OUTPUT = 1
_STREAM_NAMES = {"/dev/stdout": STANDARD_OUTPUT, "/dev/stderr": 2}


def descriptor_named(text: str) -> int | None:
    """The descriptor that a name of this process's own streams names (/dev/stderr,
    /dev/fd/2, /proc/self/fd/2, /proc/<pid>/task/<tid>/fd/2), if it names one."""
    if text in _STREAM_NAMES:
        return _STREAM_NAMES[text]
    # the loader resolves a reject file's folder: /dev/fd/2 comes as /proc/<this pid>/fd/2
    pid = os.getpid()
    for folder in (
        "/dev/fd/",
        "/proc/self/fd/",
        f"/proc/{pid}/fd/",
        f"/proc/{pid}/task/{threading.get_native_id()}/fd/",
    ):
        number = text.removeprefix(folder)
        if text.startswith(folder) and number.isdigit() and number.isascii():
            return int(number)
    return None


def inherited_stream(path: Path) -> int | None:
    """The descriptor this process was started with that `path` names, if it names one."""
    number = descriptor_named(os.path.normpath(str(path)))
    return number if number is not None and inherited(number) else None


def stream_hop(path: Path) -> Path | None:
    """The name of one of this process's descriptors (`/dev/stderr`, `/dev/fd/2`,
    `/proc/self/fd/2`) that the link, or a link it leads through, is, if any: then the
    rejects go down that stream, whatever file or pipe it ends at. Rewritten as the file it
    ended at, a log that `2>>log` was adding to was refused and a pipe's `pipe:[...]` could
    not be opened (review 28d); opened anew, `2>log` had its first entries written over
    (28e). Each hop is followed as the kernel does, its folder's links first (28f)."""
    hop = Path(os.path.realpath(path.parent)) / path.name
    for _ in range(40):  # the kernel's own limit on links followed
        if descriptor_named(str(hop)) is not None:
            return hop
        if not hop.is_symlink():
            return None
        folder, name = os.path.split(os.path.join(os.path.realpath(hop.parent), os.readlink(hop)))
        hop = Path(os.path.realpath(folder)) / name
    return None
