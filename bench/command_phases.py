#!/usr/bin/env python3
"""Where one `servicetrail` command's CPU goes, in-process: its imports (each module's own
execution, the modules it imports counted once, as theirs), opening the store (the engine,
the pragmas, the schema's revision check), the signing key's load, the access-log entry a
read writes, the seal of the signed logs as a read ends (less what those inside it are
counted as), and the rest, the command's own work. The interpreter's start before this
script runs is not in it: `python -c pass` measures that.

    PYTHONPATH=src .venv/bin/python bench/command_phases.py records --party P01 --limit 5

prints one line to standard error, in ms of CPU (user + system), after the command's own
output. Run it from the folder and with the settings the command runs with.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import time
from collections.abc import Callable
from typing import Any

CLOCK = time.process_time
SPENT: dict[str, float] = {}
_STACK: list[list[float]] = []  # [began, time of the phases inside it]


def _timed(label: str, run: Callable[[], Any]) -> Any:
    _STACK.append([CLOCK(), 0.0])
    try:
        return run()
    finally:
        began, inside = _STACK.pop()
        took = CLOCK() - began
        SPENT[label] = SPENT.get(label, 0.0) + took - inside
        if _STACK:
            _STACK[-1][1] += took


# module name -> (attribute, label): wrapped as the module ends its own execution, before any
# other module takes the name from it
WRAPPED = {
    "servicetrail.store.engine": [("open_store", "open store"), ("make_engine", "open store")],
    "servicetrail.signing": [("signer_for", "signing key")],
    "servicetrail.store.access_log": [
        ("append_entry", "access entry"),
        ("append_entries", "access entry"),
    ],
    "servicetrail.cli.store_access": [("_seal_the_logs", "seal")],
}


def _wrap(module: Any) -> None:
    for attribute, label in WRAPPED.get(module.__name__, []):
        original = getattr(module, attribute)

        def wrapper(*a: Any, _o: Any = original, _l: str = label, **k: Any) -> Any:
            return _timed(_l, lambda: _o(*a, **k))

        setattr(module, attribute, wrapper)


class _TimedLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        _timed("imports", lambda: self.loader.exec_module(module))
        _wrap(module)


class _TimedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _TimedLoader(spec.loader)
                return spec
        return None


def main() -> None:
    sys.meta_path.insert(0, _TimedFinder())
    began = CLOCK()
    sys.argv = ["servicetrail", *sys.argv[1:]]
    try:
        from servicetrail.start import main as command

        _timed("command", command)
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    total = CLOCK() - began
    SPENT["command"] = SPENT.get("command", 0.0)
    shown = " ".join(f"{k}={v * 1000:.0f}" for k, v in sorted(SPENT.items()))
    sys.stderr.write(f"phases ms: total={total * 1000:.0f} {shown} exit={code}\n")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
