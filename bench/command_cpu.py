#!/usr/bin/env python3
"""A stand-in for the `servicetrail` binary that runs it and appends the CPU (user + system)
it took, its wall time and its first two arguments to $COMMAND_CPU_LOG, one line a start:
where a driver of the binary (the shared contract check) spends its CPU, command by command.

    COMMAND_CPU_LOG=/tmp/cpu.log python3 ../shared/contract/check_contract.py \\
        --bin bench/command_cpu.py --via api --duis-samples ../shared/duis/samples
    awk '{c[$3" "$4]+=$1; n[$3" "$4]++} END {for (k in c) print c[k], n[k], k}' /tmp/cpu.log

A server it starts is stopped by its driver's SIGTERM to the process group: that signal is
the server's to act on, and this waits for it to end before it writes its line.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVICETRAIL = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "servicetrail"


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: None)  # the group's stop is the command's
    began = time.monotonic()
    command = subprocess.Popen([str(SERVICETRAIL), *sys.argv[1:]])
    status = command.wait()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ.get("COMMAND_CPU_LOG", "command_cpu.log"), "a") as log:
        log.write(
            f"{used.ru_utime + used.ru_stime:.3f} {time.monotonic() - began:.2f} "
            f"{' '.join(sys.argv[1:3])}\n"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
