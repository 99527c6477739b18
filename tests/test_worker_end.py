"""An xdist worker's end is over before execnet's 5 s are (tests/worker_end.py): a run of its
own, one worker, whose only test leaves garbage that is slow to finalise once the worker has
reported its session finished."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# told, in the worker, when xdist has reported the session finished (its own hook wrapper
# sends the report after its yield; this one's is outside it): what is left to collect then
GARBAGE_COLLECTION_SEEN = """
import gc, json, os
import pytest

reported = False

def pytest_configure(config):
    gc.disable()  # the garbage is collected by whoever asks for it, not by chance before

@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    global reported
    yield
    if hasattr(session.config, "workerinput"):
        reported = True
        with open("left-to-collect", "w") as left:
            left.write(str(len(gc.get_objects())))
"""

# a finaliser that, run after the report, takes longer than execnet's 5 s: as a whole
# suite's collection of its garbage took at a load of 15
SLOW_GARBAGE = """
import time
import garbage_collection_seen

class Garbage:
    def __init__(self):
        self.itself = self

    def __del__(self):
        late = garbage_collection_seen.reported
        with open("finalised", "w") as finalised:
            finalised.write("after the report" if late else "before the report")
        if late:
            time.sleep(7)

def test_leaves_garbage():
    Garbage()
"""


def test_a_workers_garbage_is_collected_before_it_reports_and_not_interrupted(tmp_path):
    """Collected by pytest's end after the report, the garbage's finaliser was still running
    when execnet sent the worker a SIGINT: a KeyboardInterrupt "ignored in" it, printed as
    a PytestUnraisableExceptionWarning, and a whole run's objects left to traverse again."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "garbage_collection_seen.py").write_text(GARBAGE_COLLECTION_SEEN)
    (tmp_path / "test_slow_garbage.py").write_text(SLOW_GARBAGE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env |= {
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "xdist.plugin", "-p",
         "garbage_collection_seen", "-p", "tests.worker_end", "-n", "1", "-p", "no:cacheprovider"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "KeyboardInterrupt" not in said, said
    assert (tmp_path / "finalised").read_text() == "before the report"
    assert int((tmp_path / "left-to-collect").read_text()) < 1000
