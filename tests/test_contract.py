"""The shared contract check (../shared/contract), run against this checkout's CLI and API.

It lives outside this repository, so it only runs where the shared folder sits beside it
(as on developer machines and in CI); the suite's own tests cover the same ground.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import beside_the_checkout

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT.parent / "shared" / "contract" / "check_contract.py"
SAMPLES = ROOT.parent / "shared" / "duis" / "samples"
BINARY = Path(sys.executable).with_name("servicetrail")
# The check's random scenario, in exchanges: its own default is 600. Each Party's listing is
# checked the same ways, with the same 213 checks (api) and 148 (cli), from 200 as from 600;
# the rule over many more is the property tests' (tests/store/test_visibility_property.py)
RANDOM_EXCHANGES = 200


# the check's own bound (600 s, below) is the test's: the suite's 300 s per test stopped the
# CLI check at a load of 21, where it runs ~200 commands of half a second's CPU each (52a)
@pytest.mark.timeout(660)
@pytest.mark.parametrize("via", ["cli", "api"])
def test_contract_check_passes(via: str, tmp_path: Path) -> None:
    beside_the_checkout(CHECK)
    run = subprocess.run(
        [
            sys.executable,
            str(CHECK),
            "--bin",
            str(BINARY),
            "--via",
            via,
            "--duis-samples",
            str(SAMPLES),
            "--random-records",
            str(RANDOM_EXCHANGES),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0 and last.endswith(" 0 failed"), (
        run.stdout[-3000:] + run.stderr[-2000:]
    )
