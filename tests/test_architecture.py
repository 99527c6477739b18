"""The shape of the code that the rule's safety depends on (shared/notes/architecture.md):
domain/ is pure, and SAT records are read only through the store's rule-bound query layer."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "servicetrail"

# Modules that may name the SAT tables: their definition and migrations, the rule compiled to
# SQL, the one query builder (and the export built on it), the writer (idempotency by natural
# key) and partition DDL. Every other module reads records through store.queries.
MAY_TOUCH_SAT_TABLES = {
    "store/schema.py",
    "store/visibility_sql.py",
    "store/queries.py",
    "store/export.py",
    "store/writer.py",
    "store/partitions.py",
    "store/visibility_index.py",
    "store/items.py",
    "store/filters.py",
    "store/device_search.py",
    "store/index_search.py",
    "store/request_search.py",
    # watches and their webhook deliveries: the rule's own clauses with the viewer as a column,
    # for many Parties at once
    "store/watch_sql.py",
    "store/outbox_sql.py",
    # the verifiable logs: a record's leaf is made from its stored row (SPEC section 7)
    "store/log_records.py",
    # db check: the triggers that keep the trail append-only, by table name (it reads no row)
    "store/migrate.py",
}
SAT_TABLES = ("sat_record", "sat_payload", "sat_visibility")


@functools.cache
def _parsed() -> tuple[tuple[str, ast.Module], ...]:
    """Every module of the package, parsed once for the tests here (which only read them)."""
    return tuple(
        (path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    )


def modules(folder: Path = PACKAGE):
    inside = folder.relative_to(PACKAGE).as_posix() + "/"
    yield from ((n, t) for n, t in _parsed() if folder == PACKAGE or n.startswith(inside))


def test_domain_imports_only_the_standard_library_and_itself():
    offenders = []
    for name, tree in modules(PACKAGE / "domain"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module.split(".")[0] not in sys.stdlib_module_names:
                    offenders.append(f"domain/{name}: from {node.module}")
                if node.level > 1:  # reaches out of domain/ into store/, web/, ingest/ ...
                    offenders.append(f"domain/{name}: from {'.' * node.level}{node.module}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"domain/{name}: import {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] not in sys.stdlib_module_names
                ]
    assert offenders == []


def test_only_the_store_layer_names_the_sat_tables():
    offenders = []
    for name, tree in modules():
        if name in MAY_TOUCH_SAT_TABLES or name.startswith("store/migrations/"):
            continue
        for node in ast.walk(tree):
            named = (
                (isinstance(node, ast.Name) and node.id in SAT_TABLES)
                or (isinstance(node, ast.alias) and node.name in SAT_TABLES)
                or (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and any(table in node.value for table in SAT_TABLES)
                )
            )
            if named:
                offenders.append(f"{name}:{getattr(node, 'lineno', '?')}")
    assert offenders == [], "read SAT records through store.queries (the rule), not directly"


def test_the_interfaces_read_records_through_the_logged_reads():
    """The CLI, the API and the screen all import their reads from the same logged layer,
    which reads through store.queries (the rule) and writes the access log (SPEC section 8)."""
    for interface in ("cli/reads.py", "web/api.py", "web/pages.py"):
        source = (PACKAGE / interface).read_text()
        assert "from ..store.logged_reads import" in source, interface
    # each module of RECORD_READS is read there, by name: at its top or, for the reads only
    # some answers make, in the method that makes them (a CLI read imports only its own)
    read_there: set[str] = set()
    unseen = [ast.parse((PACKAGE / "store/logged_reads.py").read_text())]
    while unseen:
        node = unseen.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue  # for the annotations alone: nothing is read through them
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            named = [node.module] if node.module else [a.name for a in node.names]
            read_there |= {f"store.{module}" for module in named}
        unseen += ast.iter_child_nodes(node)
    assert set(RECORD_READS) <= read_there, set(RECORD_READS) - read_there


# The reads that return SAT records, by module: an interface that imported one could read
# without writing the access log; it reads through store.logged_reads instead.
RECORD_READS = {
    "store.queries": {
        "search_page",
        "iter_search",
        "get_visible",
        "explain",
        "exchange_of",
        "iter_own_report",
    },
    "store.triggers": {"triggers_of", "triggers_for"},
    "store.watch_events": {"events_after", "recent_events"},
    "store.export": {"own_report_csv", "OwnReport"},
    "store.outbox": {"lease_due"},
    "store.log_proofs": {"record_proof", "proof_with_record"},
}


def test_no_interface_reads_records_around_the_access_log():
    offenders = []
    for name, tree in modules():
        if not name.startswith(("web/", "cli/", "webhooks/")):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module if node.level >= 2 else ""
                offenders += [
                    f"{name}:{node.lineno} {module}.{alias.name}"
                    for alias in node.names
                    if alias.name in RECORD_READS.get(module, ())
                ]
                if module in ("store", "") and any(
                    alias.name in ("queries", "triggers", "export", "watch_events")
                    for alias in node.names
                ):
                    offenders.append(f"{name}:{node.lineno} a read module itself")
    assert offenders == []


def test_the_web_opens_its_read_connections_through_reading():
    """A connection closed without COMMIT rolls back, and psycopg forgets its prepared
    statements on a ROLLBACK (store.engine.reading; tests/web/test_reads_end_by_commit.py)."""
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in modules()
        if name.startswith("web/")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "connect"
        and not node.args
    ]
    assert offenders == []


# Run in one interpreter: the libraries servicetrail uses are imported once, then children are
# forked, each importing in turn every module not yet loaded in it (one already loaded waits
# for the next child). A module imported while it is not loaded is imported first of its
# import cycle: a module of the cycle that was loaded would have loaded it, by the cycle's
# module-level imports. So what a fresh interpreter for each module showed shows here; with
# no cycle a handful of children import all ~190 modules, where a child for each cost ~10 s
# of CPU (a fresh interpreter for each ~30 s, nearly all of it these libraries).
_IMPORT_EACH_FIRST = """
import importlib, os, sys, traceback
for library in sys.argv[2].split():
    try:
        importlib.import_module(library)
    except ImportError:
        pass
assert not any(name.startswith(sys.argv[1]) for name in sys.modules)
waiting = sys.argv[3:]
while waiting:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        done = []
        for module in waiting:
            if module in sys.modules:
                continue
            try:
                importlib.import_module(module)
            except BaseException:
                error = traceback.format_exc().strip().splitlines()[-1]
                os.write(write, ("\\n".join(done) + f"\\n!{module}: {error}").encode())
                os._exit(1)
            done.append(module)
        os.write(write, "\\n".join(done).encode())
        os._exit(0)
    os.close(write)
    said = b""
    while chunk := os.read(read, 65536):
        said += chunk
    os.close(read)
    os.waitpid(child, 0)
    lines = said.decode().split("\\n")
    failed = [line[1:] for line in lines if line.startswith("!")]
    print(*failed, sep="\\n", end="\\n" if failed else "")
    settled = {line.lstrip("!").split(":")[0] for line in lines if line}
    if not settled:
        print(f"{waiting[0]}: the child said nothing")
        break
    waiting = [module for module in waiting if module not in settled]
"""


_LIBRARIES = (
    "sqlalchemy fastapi starlette pydantic lxml.etree click jinja2 orjson psycopg argon2"
    " cryptography uvicorn alembic aiohttp httptools uvloop rich"
)


def _import_each_first(package: str, modules: list[str], libraries: str = "", **env: str) -> str:
    """What fails of `modules` when each is imported first of its import cycle."""
    import os
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, package, libraries, *modules],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_every_module_imports_first_of_its_import_cycle() -> None:
    """An import cycle shows only when one module of it is imported first (`cli` and
    `web.commands` once failed so, unseen, because the suite always imported `cli` first)."""
    import pkgutil

    import servicetrail

    modules = sorted(
        m.name
        for m in pkgutil.walk_packages(servicetrail.__path__, "servicetrail.")
        if ".migrations." not in m.name
    )  # Alembic loads the revision files itself
    assert len(modules) > 40
    said = _import_each_first("servicetrail", modules, _LIBRARIES)
    assert said == "", said


def test_the_import_check_finds_a_cycle_from_whichever_module_it_breaks(tmp_path) -> None:
    """`first` imports `second`, which needs a name of `first` not yet defined: importing
    `first` before `second` fails (so does `third`, which imports `first`); importing `second`
    first does not, and loads `first` complete. The check still imports `first` first."""
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "third.py").write_text("from . import first\n")
    (package / "second.py").write_text("from .first import NAME\n")
    (package / "first.py").write_text("from . import second\nNAME = 1\n")
    said = _import_each_first(
        "cyclic", ["cyclic.third", "cyclic.second", "cyclic.first"], PYTHONPATH=str(tmp_path)
    )
    failed = [line.split(": ")[0] for line in said.splitlines()]
    assert failed == ["cyclic.third", "cyclic.first"], said
    assert said.count("partially initialized module 'cyclic.first'") == 2, said


def test_no_route_handler_is_longer_than_40_lines() -> None:
    """A route reads its input, calls the store and a presenter, and renders; past 40 lines it
    is doing the presenter's or the store's work itself. The body is measured, not the
    signature, which the formatter lays out one parameter a line."""
    long, routes = [], 0
    for name, tree in modules(PACKAGE / "web"):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                isinstance(d, ast.Call)
                and isinstance(d.func, ast.Attribute)
                and d.func.attr in ("get", "post", "put", "delete", "patch")
                for d in node.decorator_list
            ):
                routes += 1
                if node.end_lineno - node.body[0].lineno + 1 > 40:
                    long.append(f"{name}: {node.name}")
    assert routes >= 10 and long == []


def test_a_command_fails_one_way() -> None:
    """cli.common.Failure carries the exit code and cli.app turns the expected errors into it:
    no command exits by itself or raises click's own exceptions."""
    offenders = []
    for name, tree in modules(PACKAGE / "cli"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (
                (
                    node.attr == "exit"
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"
                )
                or node.attr in ("ClickException", "BadParameter", "UsageError", "Abort")
            ):
                if not (
                    name == "cli/common.py" and node.attr == "ClickException"
                ):  # Failure's base
                    offenders.append(f"{name}:{node.lineno} {node.attr}")
    assert offenders == []


# The rule's internals and the read path's forms: the interfaces read through store.queries
# (and the other public store modules), never around them.
RULE_INTERNALS = {
    "store.visibility_sql",
    "store.visibility_index",
    "store.items",
    "store.filters",
    "store.device_search",
    "store.index_search",
    "store.read_transaction",
    "store.schema",
}


def test_the_interfaces_use_neither_the_rules_internals_nor_private_store_names():
    offenders = []
    for name, tree in modules():
        if not name.startswith(("web/", "cli/")):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level < 2 or not node.module:
                continue
            module = node.module
            for alias in node.names:
                if module in RULE_INTERNALS or alias.name.startswith("_"):
                    offenders.append(f"{name}:{node.lineno} {module}.{alias.name}")
                if module == "domain.visibility" and alias.name in (
                    "decide",
                    "audiences_at",
                ):
                    offenders.append(
                        f"{name}:{node.lineno} {module}.{alias.name} (decisions come from "
                        "store.queries)"
                    )
    assert offenders == []


def _test_modules_imported(tests: Path) -> list[str]:
    """Every import, under `tests`, of a test module (`test_*`): by name, relative, or a
    module named from its package."""
    found = []
    for path in sorted(tests.rglob("*.py")):
        package = path.relative_to(tests.parent).parent.parts  # ("tests", "web")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = list(package[: len(package) - node.level + 1]) if node.level else []
                module = ".".join([*base, node.module] if node.module else base)
                named = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in named:
                parts = name.split(".")
                if parts[0] == "tests" and any(part.startswith("test_") for part in parts):
                    found.append(f"{path.relative_to(tests.parent)}:{node.lineno} {name}")
                    break
    return found


def test_no_test_module_imports_another_test_module():
    """32 imports took fixtures and helpers from another test module, which ran that module's
    import again as a helper's and tied the two together (session 67): what tests share is in
    a conftest.py or a helper module (tests/live_server.py, tests/web/browser_story.py)."""
    assert _test_modules_imported(Path(__file__).resolve().parent) == []


def test_the_test_import_check_finds_each_way_of_naming_a_test_module(tmp_path) -> None:
    folder = tmp_path / "tests" / "web"
    folder.mkdir(parents=True)
    (folder / "helpers.py").write_text(
        "import tests.web.test_a\n"
        "from tests.web.test_b import x\n"
        "from tests.web import test_c\n"
        "from .test_d import y\n"
        "from . import test_e\n"
        "from ..store.test_f import z\n"
        "from tests.web.live_server import live_server\n"
        "from tests import personas\n"
    )
    found = _test_modules_imported(tmp_path / "tests")
    assert [line.split(" ")[1] for line in found] == [
        "tests.web.test_a",
        "tests.web.test_b",
        "tests.web.test_c",
        "tests.web.test_d",
        "tests.web.test_e",
        "tests.store.test_f",
    ]
