"""The program's first step (servicetrail.start): Ctrl-C while Python still imports the
command line is said as every command says it, not as a traceback (audit 46g)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Ctrl-C's KeyboardInterrupt, raised where Python's own handler raises it when the key comes
# in the middle of the imports: inside the import of the command line's modules
_INTERRUPTED_WHILE_IMPORTING = """
import importlib.abc, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "servicetrail.cli.app":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
from servicetrail.start import main
main()
"""


def test_ctrl_c_while_the_command_line_is_imported_is_said_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_WHILE_IMPORTING, "records", "--party", "X"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (130, "Error: interrupted\n")


def test_the_program_starts_there() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"servicetrail": "servicetrail.start:main"}


def test_it_runs_the_command_line() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", "from servicetrail.start import main; main()", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and "version" in ran.stdout
