"""Shared fixtures: a fresh store built by the migrations, the persona world in it, and the CLI
run in-process."""

from __future__ import annotations

import contextlib

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings as hypothesis_settings
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail import settings
from servicetrail.cli import main
from servicetrail.store.engine import open_store

from devsupport.pg_server import PgServer

HERE = Path(__file__).resolve().parent


def _helper_modules() -> list[str]:
    """The suite's modules that are neither tests nor conftests, by their import names:
    tests/live_server.py is `tests.live_server`. Only the packages' (a folder with an
    __init__.py): tests/subprocesses' run as top-level modules in other processes."""
    return sorted(
        ".".join(("tests", *path.relative_to(HERE).with_suffix("").parts))
        for path in HERE.rglob("*.py")
        if not path.name.startswith("test_")
        and path.name not in ("conftest.py", "__init__.py")
        and (path.parent / "__init__.py").exists()
    )


# pytest explains a failed assert (the values compared) in test modules and conftests alone:
# the helpers they share (tests/live_server.py, tests/web/browser_story.py, ...) said a bare
# AssertionError. Registered before any is imported, so they are rewritten too.
pytest.register_assert_rewrite(*_helper_modules())

from tests import personas as P  # noqa: E402 - after the registration above
from tests.worker_end import pytest_sessionfinish  # noqa: E402, F401 - a hook, registered here

# What only some tests or the session's fixtures use is imported where it is used: every
# pytest process imports this module, xdist's controller too, which runs no test; the web
# app's modules (FastAPI), lxml, argon2 and cryptography were 0.3 s of its CPU (session 63).
if TYPE_CHECKING:
    from lxml import etree


@pytest.fixture(autouse=True, scope="session")
def route_contexts_shared() -> None:
    """Before any test makes an app: FastAPI's route contexts built once a worker
    (tests/shared_routes.py)."""
    from tests.shared_routes import share_route_contexts

    share_route_contexts()


# The properties here are about values, not speed: Hypothesis's wall-clock checks (an
# example's 200 ms deadline, "input generation is slow") failed tests on a loaded machine for
# the load alone (test_checkpoint's canonical JSON under `nice -n 19`, audit 54f). A test that
# sets its own settings still overrides these.
hypothesis_settings.register_profile(
    "servicetrail", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("servicetrail")

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DUIS_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "duis" / "samples"
DUIS_SCHEMA = FIXTURES / "duis-schema" / "DUIS Schema V5.4.xsd"


def beside_the_checkout(path: Path) -> Path:
    """A file or folder of ../shared that a test needs. The suite runs beside ../shared, as
    CI and every developer's checkout do: without it the test fails, never skips."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run the suite beside ../shared", pytrace=False)
    return path


@pytest.fixture(autouse=True, scope="session")
def signing_key_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sealing creates the logs' signing key on first use, by default in the working folder
    for PostgreSQL: the tests' key lives in a temporary folder instead (a test of the default
    location unsets the variable). It is made now, as a deployment's server has made it: a
    CLI read without the key says its access-log entry waits, and the tests that expect
    nothing on stderr passed only after another test had sealed first."""
    from servicetrail.signing import load_signer

    key = tmp_path_factory.mktemp("signing") / "servicetrail.key"
    # an empty value is unset, as servicetrail reads it (review 31a)
    os.environ["SERVICETRAIL_SIGNING_KEY"] = os.environ.get("SERVICETRAIL_SIGNING_KEY") or str(key)
    settings.reload()
    load_signer(Path(os.environ["SERVICETRAIL_SIGNING_KEY"]), "tests")


# A folder whose sitecustomize every Python process the suite starts runs first (on
# PYTHONPATH, set by passwords_hashed_cheaply): its processes hash passwords cheaply too.
SUBPROCESS_SITE = Path(__file__).parent / "subprocesses"


def without_the_subprocess_site(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process that must see servicetrail as it is deployed (argon2's
    production cost): SUBPROCESS_SITE taken off its PYTHONPATH."""
    kept = [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != SUBPROCESS_SITE
    ]
    return {k: v for k, v in env.items() if k != "PYTHONPATH"} | (
        {"PYTHONPATH": os.pathsep.join(kept)} if kept else {}
    )


@pytest.fixture(autouse=True, scope="session")
def passwords_hashed_cheaply() -> Iterator[None]:
    """argon2 at its production cost takes ~0.12 s of CPU and 64 MiB a hash, and the suite
    makes thousands of accounts: passwords are hashed with argon2-cffi's own profile for
    tests, in this process and in the servers and commands it starts (SUBPROCESS_SITE). A hash
    carries its parameters, so it still verifies anywhere; tests/test_security.py pins the
    production cost, in a process started without SUBPROCESS_SITE."""
    from argon2 import PasswordHasher
    from argon2.profiles import CHEAPEST

    from servicetrail import security

    production, path = security._hasher, os.environ.get("PYTHONPATH")
    security._hasher = PasswordHasher.from_parameters(CHEAPEST)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUBPROCESS_SITE), path]))
    yield
    security._hasher = production
    if path is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = path


@pytest.fixture(autouse=True, scope="session")
def refusals_paced_briefly() -> Iterator[None]:
    """The gate holds a 429 of the bounds inside for a second before it goes out (web.gate);
    the suite answers hundreds, so in this process the pause is short. Servers started as
    subprocesses keep the second; tests/web/test_gate.py pins it."""
    from servicetrail.web import gate

    production = gate.REFUSAL_PAUSE
    gate.REFUSAL_PAUSE = 0.02
    yield
    gate.REFUSAL_PAUSE = production


@pytest.fixture(autouse=True)
def settings_of_the_environment() -> Iterator[None]:
    """Every test starts from the settings its environment gives: one that changed them
    (`use_settings`) leaves nothing behind once monkeypatch has restored the environment."""
    yield
    settings.reload()


@pytest.fixture
def use_settings(monkeypatch: pytest.MonkeyPatch):
    """Settings changed the way an operator changes them, through the environment:
    `use_settings(SERVICETRAIL_BATCH=500)`; worker processes started after it see them too."""

    def use(**variables: object) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, str(value))
        settings.reload()

    return use


@pytest.fixture(scope="session")
def duis_schema() -> etree.XMLSchema:
    """DUIS Schema V5.4 (with the MMC and XML-DSig schemas it imports), parsed once per worker."""
    from lxml import etree

    document = etree.parse(str(DUIS_SCHEMA))
    # libxml2 silently skips an xs:import whose schemaLocation holds spaces ("MMC Schema V5.4.xsd"),
    # and the schema then fails to build; the same location percent-encoded is found
    for imported in document.getroot().iter("{http://www.w3.org/2001/XMLSchema}import"):
        imported.set("schemaLocation", quote(imported.get("schemaLocation")))
    return etree.XMLSchema(document)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL server per test worker, with a template database that the
    migrations built; each test clones it (CREATE DATABASE ... TEMPLATE) in milliseconds."""
    server = PgServer(in_memory=True).start()
    try:  # a template that fails to build (a migration's bug) leaves no server running
        server.admin("CREATE DATABASE st_template")
        template = open_store(server.url("st_template"))
        template.dispose()
        yield server
    finally:
        server.stop()


def wants_the_personas(request: pytest.FixtureRequest) -> bool:
    """Whether the test, or a fixture of it, begins by writing the persona world into the
    test's own store (one marked `personas.starts_with_personas`): its store is then cloned
    from a template that holds that world already, and `load_personas` only reads the ids
    back."""
    if getattr(getattr(request.node, "function", None), "starts_with_personas", False):
        return True
    info = getattr(request.node, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        getattr(defs[-1].func, "starts_with_personas", False)
        for name, defs in info.name2fixturedefs.items()
        if defs and name in request.fixturenames
    )


@pytest.fixture(scope="session")
def pg_personas_template(pg_server: PgServer) -> str:
    """A template database holding the persona world as `load_personas` writes it."""
    pg_server.admin("CREATE DATABASE st_personas TEMPLATE st_template")
    built = open_store(pg_server.url("st_personas"))
    P.load_personas(built)
    built.dispose()
    return "st_personas"


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    if wants_the_personas(request):
        url = pg_server.new_database(template=request.getfixturevalue("pg_personas_template"))
        P.cloned_with_personas(url)
    else:
        url = pg_server.new_database(template="st_template")
    yield url
    P.forget_the_personas(url)
    pg_server.drop_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store the migrations built, once per test worker: each test copies the file
    (the migrations took 50-150 ms a store)."""
    template = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    open_store(f"sqlite:///{template}").dispose()
    return template


def sqlite_store_from(template: Path, folder: Path | str, name: str = "test.db") -> str:
    """The URL of a new SQLite store in `folder`: a copy of the migrated template, for a
    test (or a Hypothesis example) that needs a fresh store of its own."""
    shutil.copyfile(template, Path(folder) / name)
    return f"sqlite:///{Path(folder) / name}"


class StorePerExample:
    """One engine for every example of a Hypothesis test, on a store copied afresh from a
    migrated template for each (`fresh`): an engine of its own per example compiled each of
    the store's statements again (SQLAlchemy caches them per engine), some 40% of a
    visibility property's example on SQLite (session 60). The store is the template's copy
    as before; only the engine, its pool emptied, carries over. On SQLite the copy is a file
    at one path; on PostgreSQL a database of one name, dropped and made again from the
    template. What the process remembers of a store by its URL (the months it believes made,
    the watch matcher's watches) is forgotten with each copy."""

    def __init__(
        self, template: Path | str, *, folder: Path | None = None, server: PgServer | None = None
    ) -> None:
        self.template, self.server, self.engine = template, server, None
        if server is None:
            assert folder is not None
            self.path = folder / "example.db"
            self.url = f"sqlite:///{self.path}"
        else:
            self.url = server.url(server.new_database_name())

    def fresh(self) -> Engine:
        if self.engine is not None:
            self.engine.dispose()
        if self.server is None:
            for leftover in ("-wal", "-shm"):
                Path(f"{self.path}{leftover}").unlink(missing_ok=True)
            shutil.copyfile(self.template, self.path)
        else:
            self.server.drop_database(self.url)
            self.server.new_database(template=str(self.template), url=self.url)
        if self.engine is None:
            self.engine = open_store(self.url)
            return self.engine
        from servicetrail.store import access_partitions
        from servicetrail.store.remembered import forget_store

        # what the process remembers of the store at this URL is of the last example's
        forget_store(self.engine.url)
        if self.server is not None:  # as open_store does for a store made from a template
            access_partitions.ensure_access_months(self.engine, [datetime.now(timezone.utc)])
        return self.engine

    def __enter__(self) -> StorePerExample:
        return self

    def __exit__(self, *_: object) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.server is not None:
            self.server.drop_database(self.url)


# the settings' health checks for a test on StorePerExample: its fixture is the test's, and
# each example's store is made afresh by `fresh()`
PER_EXAMPLE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.fixture
def sqlite_per_example(tmp_path: Path, sqlite_template: Path) -> Iterator[StorePerExample]:
    """A migrated SQLite store made afresh for each example by `fresh()` (StorePerExample)."""
    with StorePerExample(sqlite_template, folder=tmp_path) as stores:
        yield stores


@pytest.fixture
def pg_per_example(pg_server: PgServer) -> Iterator[StorePerExample]:
    """A migrated PostgreSQL store made afresh for each example by `fresh()`."""
    with StorePerExample("st_template", server=pg_server) as stores:
        yield stores


@pytest.fixture(scope="session")
def sqlite_personas_template(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Path:
    """The migrated SQLite template with the persona world written into it by `load_personas`."""
    folder = tmp_path_factory.mktemp("sqlite-personas")
    built = open_store(sqlite_store_from(sqlite_template, folder, "personas.db"))
    P.load_personas(built)
    with built.connect() as conn:  # all of it in the file that is copied, none in its -wal
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    built.dispose()
    assert (
        not (folder / "personas.db-wal").exists() or not (folder / "personas.db-wal").stat().st_size
    )
    return folder / "personas.db"


@pytest.fixture
def sqlite_url(
    tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    if wants_the_personas(request):
        url = sqlite_store_from(request.getfixturevalue("sqlite_personas_template"), tmp_path)
        P.cloned_with_personas(url)
    else:
        url = sqlite_store_from(sqlite_template, tmp_path)
    yield url
    P.forget_the_personas(url)


ENGINES = ("sqlite", "postgresql")

# For a test of what lies above the store (HTTP and form parsing, the CLI's arguments, a page's
# words, a refusal made before any statement), whose outcome no engine can change: it runs on
# SQLite alone, as the tests that say so one by one do. Its PostgreSQL twin paid for a server's
# database and the same check again (session 68).
ON_SQLITE_ALONE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest) -> str:
    """A new, empty store for each test, on each engine: every test that asks for a store
    runs on SQLite and on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=ENGINES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all (not cloned from the migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server = request.getfixturevalue("pg_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    built = open_store(db_url)  # the schema comes from the Alembic migrations, never create_all
    yield built
    built.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """A PostgreSQL store alone, for what only PostgreSQL has (roles and row-level security,
    partitions, its planner)."""
    built = open_store(pg_url)
    yield built
    built.dispose()


@pytest.fixture
@P.starts_with_personas
def world(engine: Engine) -> P.World:
    """The persona world (tests/personas.py) in the test's store, which most tests read: its
    store is cloned from the template that holds it. A module that needs another world (more
    records, other Parties) defines its own `world`."""
    return P.load_personas(engine)


@contextlib.contextmanager
def reader_role_renamed_away(engine: Engine) -> Iterator[None]:
    """The store's reader role renamed away for the block (a role is the server's, and each
    test worker's server is its own), so that PostgreSQL says it does not exist."""
    with engine.begin() as conn:
        role = conn.execute(text("SELECT servicetrail_reader_role()")).scalar_one()
        conn.execute(text(f"ALTER ROLE {role} RENAME TO servicetrail_reader_away"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER ROLE servicetrail_reader_away RENAME TO {role}"))


class Cli:
    """Runs `servicetrail ...` in-process against the test's store."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        self.db_url = db_url
        self.cwd = cwd

    def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            main, ["--db", self.db_url, *map(str, args)], input=input, catch_exceptions=False
        )


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    return Cli(db_url, tmp_path)


# Whole modules that hold the suite's longest tests (measured with --durations=0), longest
# first. xdist's worksteal hands each worker a contiguous share of the collection at the start
# and lets an idle one take the back half of the fullest queue: all of these at the front of
# the first share ran one after another on one worker (some 400 s), the others stealing
# around them. So each share starts with some of them, dealt in turn (session 58).
LONGEST_FIRST = (
    "tests/test_contract.py",
    "tests/test_generate.py",
    "tests/ingest/test_crash_safety.py",
    "tests/webhooks/test_kill.py",
    "tests/web/test_header_cap.py",
    "tests/ingest/test_streaming.py",
    # four Hypothesis tests, 79 s under six workers (22/21/18/18 s in CI's last run), more
    # than the visibility property's three: collected in place, they began 57% into the
    # second of six shares, the registry_bulk's 250 tests behind them (session 67)
    "tests/ingest/test_registry_batches_property.py",
    "tests/store/test_visibility_property.py",
    "tests/store/test_watch_property.py",
    "tests/test_architecture.py",
    # then modules that mostly wait (leases, timeouts, servers stopping: test_delivery ran
    # 183 s at -n 0 on 33 s of CPU), dealt to the fronts too: at the collection's end they were
    # the run's last minute, both cores two-thirds idle (session 60, vmstat beside a timeline)
    "tests/webhooks/test_delivery.py",
    "tests/web/test_workers.py",
    "tests/web/test_request_reading.py",
    "tests/web/test_sign_in_throttle.py",
    "tests/web/test_stalled_downloads.py",
    "tests/web/test_stopping.py",
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """In xdist's controller, before its workers start (its own hook runs last): the test
    modules' asserts rewritten once for all of them (tests/rewritten_once.py)."""
    config = session.config
    if config.pluginmanager.hasplugin("dsession") and not hasattr(config, "workerinput"):
        from tests.rewritten_once import rewrite_before_the_workers

        rewrite_before_the_workers(config, Path(__file__).parent)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Deals the modules of LONGEST_FIRST, in that order, to the fronts of the shares xdist's
    worksteal will hand its workers (snake order: the longest of each round beside the
    shortest of the next), each module's tests kept together and in their own order (their
    module-scoped fixtures are made once); every other test keeps its collected order."""
    root = Path(__file__).resolve().parents[1]
    modules: dict[str, list[pytest.Item]] = {module: [] for module in LONGEST_FIRST}
    rest: list[pytest.Item] = []
    for item in items:
        module = item.path.resolve().relative_to(root).as_posix()
        modules.get(module, rest).append(item)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    fronts: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for n, module in enumerate(LONGEST_FIRST):
        turn, place = divmod(n, workers)
        fronts[place if turn % 2 == 0 else workers - 1 - place].extend(modules[module])
    dealt: list[pytest.Item] = []
    left = len(items)
    for worker, front in enumerate(fronts):
        share = left // (workers - worker)  # as worksteal splits its pending tests
        filler = max(0, share - len(front))
        dealt += front + rest[:filler]
        rest = rest[filler:]
        left -= len(front) + filler
    items[:] = dealt + rest
