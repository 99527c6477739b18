"""The developer scripts the README and the helpers' notes point at still run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_pg_throwaway_starts_a_server_one_can_reach_and_stops_it(tmp_path: Path) -> None:
    env = {**os.environ, "PG_THROWAWAY_STATE": str(tmp_path / "state")}
    script = str(ROOT / "scripts" / "pg-throwaway")
    started = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().removeprefix("export PG_URL=")
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        # run again, it gives the same server: it started a second and forgot the first
        again = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and again.stdout == started.stdout, again.stderr
        # its state file lost, it is found by its folder's mark: it ran on unseen
        (tmp_path / "state").unlink()
        found = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
        assert found.returncode == 0 and found.stdout == started.stdout, found.stderr
        (tmp_path / "state").unlink()  # and `stop` finds it so too
    finally:
        stopped = subprocess.run(
            [script, "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "state").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_every_dependency_has_a_pinned_version_for_a_clean_clone() -> None:
    """scripts/bootstrap installs within constraints.txt; a dependency missing from it would
    float to whatever is newest on the day CI runs."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pinned[name]), (requirement, pinned[name])
