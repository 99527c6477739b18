"""FastAPI's route contexts built once per test worker, not once per app (tests/conftest.py).

FastAPI (0.165) builds what it needs to call a route of an included router (the pydantic
fields of its parameters, its dependencies, its handler) when an app first matches a request
against that router, and keeps it on the app's own inclusion of the router. The suite makes
an app for nearly every web test (`create_app(engine)`, each test's store its own), and each
app's first requests built those of every router they passed: the first `/login` of a new
app took 38-50 ms of CPU, 4-9 ms with them shared; ~35 ms a test, a third of the in-process
web modules' CPU (BENCHMARKS.md, session 53).

The routers are servicetrail's module-level ones and every app includes them alike, so an
inclusion equal to one built before takes that one's contexts. What they hold of an app is
where its dependency overrides are read, and no test overrides a dependency: one that did
would see its override ignored, and fail. `servicetrail serve` and the servers the suite
starts as processes build their own, as deployed. This uses FastAPI's internals, which are
not its public interface: should they change, nothing is shared and each app builds its own,
as before (tests/test_shared_routes.py says so).
"""

from __future__ import annotations

import dataclasses
from typing import Any


def share_route_contexts() -> bool:
    """Whether the contexts are now shared (False: FastAPI's internals are not as expected)."""
    try:
        from fastapi.routing import _IncludedRouter, _RouterIncludeContext
    except ImportError:
        return False
    built = getattr(_IncludedRouter, "effective_candidates", None)
    if (
        built is None
        or getattr(built, "shared", False)
        or not dataclasses.is_dataclass(_RouterIncludeContext)
        or "dependency_overrides_provider"
        not in {f.name for f in dataclasses.fields(_RouterIncludeContext)}
    ):
        return bool(getattr(built, "shared", False))
    # per router (its id) and its routes' version: the inclusions built, each with its contexts
    made: dict[tuple[int, Any], list[tuple[Any, list[Any]]]] = {}

    def effective_candidates(self: Any) -> list[Any]:
        router = self.original_router
        key = (id(router), router._get_routes_version())
        alike = dataclasses.replace(self.include_context, dependency_overrides_provider=None)
        for context, candidates in made.get(key, ()):
            if context == alike:
                return candidates
        candidates = built(self)
        made.setdefault(key, []).append((alike, candidates))
        return candidates

    effective_candidates.shared = True  # type: ignore[attr-defined]
    _IncludedRouter.effective_candidates = effective_candidates  # type: ignore[method-assign]
    return True
