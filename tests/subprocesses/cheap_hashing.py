"""servicetrail's passwords hashed at argon2-cffi's cheapest cost in the servers and commands
the suite starts, as in the tests' own process (tests/conftest.py `passwords_hashed_cheaply`).
At the production cost each hash took ~0.12 s of CPU and 64 MiB, and a server verified the
suite's cheaply hashed accounts and then stored them again at that cost at their first
sign-in (store.accounts.kept_current): 10 s of CPU in the browser module's server alone
(session 51). tests/test_security.py starts its interpreter without this folder, to see the
production cost.

The hasher is swapped as `servicetrail.security` is first imported, so that a process that
never hashes (most of the commands) imports nothing more."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

MODULE = "servicetrail.security"


class _CheapHashing(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            from argon2 import PasswordHasher
            from argon2.profiles import CHEAPEST

            module._hasher = PasswordHasher.from_parameters(CHEAPEST)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _CheapHashing())
