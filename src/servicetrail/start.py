"""The `servicetrail` program's first step: the command line is imported here, where a
Ctrl-C meanwhile is said as every command says it.

Python takes about half a second to import the command line; a Ctrl-C in that time came
out as a KeyboardInterrupt traceback (audit 46g), since the command's own handling
(cli.app) did not exist yet. This module imports nothing of its own before it."""

from __future__ import annotations

import gc
import signal
import sys


def main() -> None:
    try:
        from .cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        raise SystemExit(128 + signal.SIGINT) from None
    try:
        command()
    finally:
        # What the command made is left to the process's end, not collected: the interpreter's
        # exit ran full collections over every object the imports had made (SQLAlchemy's,
        # click's...), some 0.1 s of a 0.5 s command's CPU, for memory the system takes back
        # at once anyway. The exit's own work (atexit's, the standard streams' flush) stands.
        gc.freeze()
