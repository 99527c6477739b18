"""store.remembered: every cache the product keys by a store's URL is registered, so that
`forget_store` (a test's fresh copy of a store, StorePerExample) forgets all of them."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from servicetrail.store import access_partitions, partitions, watch_matcher
from servicetrail.store.remembered import forget_store, is_remembered

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "servicetrail"

_MAYBE_CACHE = re.compile(r"^\w+(: [^=]+)? = .*(\{\}|dict\(|set\(|defaultdict\()|^@.*cache\b", re.M)
# keyed by URL, but not anything remembered of the store's contents
NOT_A_STORE_CACHE = {
    # a spawned verify worker's engines, alive for one `log audit`; no parent forgets them
    ("servicetrail.store.log_audit", "_engines"),
}


def _module_containers(tree: ast.Module) -> set[str]:
    """Module-level names bound to a dict or set made empty (a cache filled at run time)."""
    names = set()
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            if isinstance(node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
        # `remembered_by_url({})` and the like: the container is the call's argument
        while isinstance(value, ast.Call) and value.args:
            value = value.args[0]
        empty = (isinstance(value, ast.Dict) and not value.keys) or (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in {"dict", "set", "defaultdict"}
        )
        if target is not None and empty:
            names.add(target)
    return names


def _is_cached(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("cache" in ast.unparse(d) for d in function.decorator_list)


def _mentions_url(function: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Attribute) and n.attr == "url")
        or (isinstance(n, ast.Name) and "url" in n.id.lower())
        or (isinstance(n, ast.arg) and "url" in n.arg.lower())
        for n in ast.walk(function)
    )


def url_keyed_caches() -> set[tuple[str, str]]:
    """(module, name) of each module-level cache used by a function that handles a URL."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        # most modules have no such cache, or name no URL: parsing them all took 2 s
        if "url" not in source.lower() or not _MAYBE_CACHE.search(source):
            continue
        tree = ast.parse(source, str(path))
        containers = _module_containers(tree)
        module = ".".join(("servicetrail", *path.relative_to(PACKAGE).with_suffix("").parts))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            # an lru_cache of a URL can forget no one store: never registered, so it fails
            # here, to be made a registered dict
            if _is_cached(function) and _mentions_url(function.args):
                found.add((module, function.name))
            used = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)} & containers
            if used and _mentions_url(function):
                found |= {(module, name) for name in used}
    return found


def test_every_cache_keyed_by_a_stores_url_is_registered() -> None:
    found = url_keyed_caches()
    # the scan sees the caches known today: a scan that found none would pass for nothing
    assert {
        ("servicetrail.store.partitions", "_known"),
        ("servicetrail.store.access_partitions", "_known"),
        ("servicetrail.store.watch_matcher", "_watch_cache"),
    } <= found
    unregistered = sorted(
        f"{module}.{name}"
        for module, name in found - NOT_A_STORE_CACHE
        if not is_remembered(getattr(importlib.import_module(module), name))
    )
    assert not unregistered, f"register with store.remembered.remembered_by_url: {unregistered}"


def test_forget_store_forgets_that_store_alone_given_its_password_or_not() -> None:
    caches = [partitions._known, access_partitions._known, watch_matcher._watch_cache]
    ours = "postgresql+psycopg://st:***@127.0.0.1:20901/st_forget_one"
    other = "postgresql+psycopg://st:***@127.0.0.1:20901/st_forget_other"
    for cache in caches:
        cache.update({ours: None, other: None})  # type: ignore[dict-item]
    try:
        forget_store("postgresql+psycopg://st:secret@127.0.0.1:20901/st_forget_one")
        assert [(ours in c, other in c) for c in caches] == [(False, True)] * len(caches)
    finally:
        for cache in caches:
            cache.pop(other, None)
