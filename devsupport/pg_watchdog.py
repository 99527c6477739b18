"""Stops a throwaway PostgreSQL server once the process that started it is gone.

    pg_watchdog.py FOLDER STOP_COMMAND...

pg_ctl detaches the server, so a test run killed before its teardown (SIGKILL, a CI timeout,
Ctrl-C twice) left each worker's server running, with its /dev/shm folder, until someone
killed it by hand. Standard input is the read end of a pipe whose only writer is the owning
process: it reaches end-of-file when the owner closes it or dies, whatever killed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main() -> None:
    folder, stop = sys.argv[1], sys.argv[2:]
    while sys.stdin.buffer.read(4096):  # the owner never writes; a stray byte changes nothing
        pass
    if os.path.exists(os.path.join(folder, "data", "postmaster.pid")):  # not stopped by owner
        subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
