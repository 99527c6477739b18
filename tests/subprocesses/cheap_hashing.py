"""servicetrail's passwords hashed at argon2-cffi's cheapest cost in the servers and commands
the suite starts, as in the tests' own process (tests/conftest.py `passwords_hashed_cheaply`).
At the production cost each hash took ~0.12 s of CPU and 64 MiB, and a server verified the
suite's cheaply hashed accounts and then stored them again at that cost at their first
sign-in (store.accounts.kept_current): 10 s of CPU in the browser module's server alone
(session 51). tests/test_security.py starts its interpreter without this folder, to see the
production cost.

The hasher's maker is swapped as `servicetrail.security` is first imported, and makes it
as the first password is hashed, so that a process that never hashes (most of the commands,
`tokens` among them) imports nothing more, argon2 no more than it does deployed."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

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
            module._new_hasher = cheapest  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def cheapest() -> Any:
    from argon2 import PasswordHasher
    from argon2.profiles import CHEAPEST

    return PasswordHasher.from_parameters(CHEAPEST)


sys.meta_path.insert(0, _CheapHashing())
