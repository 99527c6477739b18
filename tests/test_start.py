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


# What `records` imports as it starts, printed on the last line
_IMPORTED_BY_RECORDS = """
import sys
from servicetrail.cli import main
try:
    main(["records", "--help"])
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)))
"""


def test_a_command_imports_its_own_family_of_commands_alone() -> None:
    """Each `servicetrail` command starts in a fresh interpreter, and the suite starts
    hundreds: `records` imported the server, the loaders' DUIS reader (lxml), the accounts'
    argon2 and the audit's process pool, some 0.05 s of CPU a start (session 50); then
    cryptography and SQLAlchemy's PostgreSQL dialect (session 51)."""
    ran = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY_RECORDS], capture_output=True, text=True, timeout=60
    )
    imported = set(ran.stdout.splitlines()[-1].split())
    assert "servicetrail.cli.reads" in imported
    never = {
        "servicetrail.cli.serving",
        "servicetrail.cli.loading",
        "servicetrail.cli.logs",
        "servicetrail.cli.access",
        "servicetrail.cli.database",
        "servicetrail.web.server",
        "servicetrail.ingest.rejects",
        "servicetrail.store.log_audit",
        "servicetrail.store.log_roots",
        "lxml",
        "argon2",
        "multiprocessing",
        "cryptography",  # the signing's, imported where a key is made, read or checked
        "sqlalchemy.dialects.postgresql",  # for the tables' options (schema._partial)
    }
    assert imported & never == set()
