"""The test modules' asserts rewritten once, before xdist starts its workers (tests/conftest.py).

pytest rewrites each test module's asserts as it imports it, and keeps the result in a
`__pycache__/*-pytest-*.pyc`, except where PYTHONDONTWRITEBYTECODE is set (CI, and this
machine): there every worker rewrote all ~140 modules, 5-6 s of CPU each of its ~10 s of
collection, four workers at once on two cores. Here the controller rewrites them once, in as
many processes as there are cores, into the files pytest reads whatever that setting (each
carries its source's hash: a module changed since is rewritten as before). It uses pytest's
own functions, which are not its public interface: should they change, nothing is written
and the workers rewrite for themselves, as they did.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

_config: pytest.Config | None = None


def rewrite_before_the_workers(config: pytest.Config, folder: Path) -> None:
    global _config
    if config.getoption("assertmode", "rewrite") != "rewrite":
        return
    modules = [str(p) for p in sorted(folder.rglob("*.py")) if _rewritten_by_pytest(p)]
    _config = config
    try:
        with ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("fork")
        ) as pool:
            list(pool.map(_rewrite, modules, chunksize=8))
    except Exception:  # noqa: BLE001 - a cache: the workers rewrite for themselves
        pass
    finally:
        _config = None


def _rewritten_by_pytest(path: Path) -> bool:
    return path.name == "conftest.py" or (
        path.name.startswith("test_") and "vendor" not in path.parts
    )


def _rewrite(module: str) -> None:
    from _pytest.assertion.rewrite import (
        PYC_TAIL,
        _read_pyc,
        _rewrite_test,
        _write_pyc,
        assertstate_key,
        get_cache_dir,
        try_makedirs,
    )

    assert _config is not None
    source = Path(module)
    cache = get_cache_dir(source)
    pyc = cache / (source.name[:-3] + PYC_TAIL)
    if _read_pyc(source, pyc) is not None or not try_makedirs(cache):
        return
    source_hash, code = _rewrite_test(source, _config)
    _write_pyc(_config.stash[assertstate_key], code, source_hash, pyc)
