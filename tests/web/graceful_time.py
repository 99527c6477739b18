"""A `servicetrail serve` whose processes run some code of the test's first: a graceful time
of the test's choosing, long enough that no load makes a stop at once look like one after
it (tests/web/test_workers.py, tests/web/test_stopping.py)."""

from __future__ import annotations

import os
from pathlib import Path

# long enough that no load makes a stop at once look like one after the graceful time; a stop
# that waits for it fails the test after this long
LONG_GRACE = 30

GRACEFUL_TIME = """\
import os
import servicetrail.web.stopping
servicetrail.web.stopping.GRACEFUL_SECONDS = {seconds}
with open({told!r}, "a") as told:
    told.write(f"{{os.getpid()}}\\n")
"""


def graceful_time(folder: Path, seconds: int) -> dict[str, str]:
    """The environment for a server whose graceful time is `seconds`: a sitecustomize that
    every process of it runs before it imports the server (web.server reads the constant),
    and that writes its pid to `folder / "graceful"` (the supervisor's and each worker's)."""
    told = str(folder / "graceful")
    return run_first(folder, GRACEFUL_TIME.format(seconds=seconds, told=told))


def run_first(folder: Path, code: str) -> dict[str, str]:
    """The environment in which every Python process of a server runs `code` first, after
    the suite's own sitecustomize (tests/subprocesses), which this one shadows."""
    (folder / "sitecustomize.py").write_text("import cheap_hashing\n" + code)
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    }
