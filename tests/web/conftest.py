"""Fixtures the web tests share: the app over the persona world (`world`, tests/conftest.py),
and API tokens.

A test module that needs another world (more records, other Parties) defines its own
`world`; `client` and `bearer` then serve that one. The browser modules share the store of
their story (tests/web/browser_story.py, `browser_store`), each a server of its own on a
copy (`server`), Chromium (`browser`) and a page that fails the test on a console error
(`page`)."""

from __future__ import annotations

import functools
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from tests import personas as P
from tests.conftest import sqlite_store_from
from tests.web.browser_story import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SERVICETRAIL,
    Server,
    build_store,
    free_port,
)


@pytest.fixture
def client(engine: Engine, world: P.World) -> Iterator[TestClient]:
    with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def bearer(engine: Engine, world: P.World) -> Callable[[str], dict[str, str]]:
    """The Authorization header of a Party's API calls: an account and a token of its own,
    made the first time the Party is asked for."""

    @functools.cache
    def make(party: str) -> dict[str, str]:
        username = f"user_{party.lower()}"
        with engine.begin() as conn:
            create_account(conn, username, party, "correct horse battery staple")
            return {"Authorization": f"Bearer {create_token(conn, username)}"}

    return make


@pytest.fixture
def auditor(engine: Engine, world: P.World) -> dict[str, str]:
    """The Authorization header of an auditor's account (of no Party)."""
    with engine.begin() as conn:
        create_account(conn, "the.auditor", None, "correct horse battery staple")
        return {"Authorization": f"Bearer {create_token(conn, 'the.auditor')}"}


@pytest.fixture(scope="session")
def browser_store(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> tuple[Path, list[int]]:
    """The browser modules' story, built once a worker with the command line (its file, and
    the ids of the records BRIGHT must not see): each browser module serves a copy of its own."""
    return build_store(tmp_path_factory.mktemp("browser-store"), sqlite_template)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, browser_store: tuple[Path, list[int]]
) -> Iterator[Server]:
    """`servicetrail serve` on a copy of the story's store, one a module: the modules sign in,
    read (logged) and add traffic, so none sees another's."""
    folder = tmp_path_factory.mktemp("browser")
    template, hidden_ids = browser_store
    db_url = sqlite_store_from(template, folder, "sat.db")
    port = free_port()
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [str(SERVICETRAIL), "--db", db_url, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # 60 s, as tests/web/live_server.py gives a server: 30 s ran out once on two cores at
        # load 11-15, the server's banner printed and /login not yet answered (session 66)
        started = time.monotonic()
        last: object = None
        while True:
            try:
                with urllib.request.urlopen(base + "/login", timeout=2) as answer:
                    if answer.status == 200:
                        break
                    last = answer.status
            except OSError as e:
                last = e
            waited = time.monotonic() - started
            if proc.poll() is not None or waited > 60:
                raise RuntimeError(
                    f"servicetrail serve did not start ({waited:.1f} s, last: {last!r}):\n"
                    + (folder / "server.log").read_text()
                )
            time.sleep(0.1)
        yield Server(base, hidden_ids, db_url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Chromium (apt-get install chromium) to run the "
            "browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    problems: list[str] = []
    # "ISO-8601" in any page a test opens, a console error and so a problem below: a
    # standard's number told analysts what a time field takes (audit of every screen, 63h)
    context.add_init_script(
        "addEventListener('DOMContentLoaded', () => { if (/ISO.?8601/i.test("
        "document.body.textContent)) console.error('ISO-8601 said on ' + location.href); })"
    )
    tab = context.new_page()
    # a CSP violation, a script error or a missing style sheet would show up here (a page's own
    # 401/422 status is part of the design, so documents are judged by the tests themselves)
    tab.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document"
            else None
        ),
    )
    # a request the page itself abandoned by navigating on (a favicon still loading) is no fault
    tab.on(
        "requestfailed",
        lambda r: (
            problems.append(f"failed {r.url}: {r.failure}")
            if r.resource_type != "document" and "ERR_ABORTED" not in (r.failure or "")
            else None
        ),
    )
    yield tab
    context.close()
    assert not problems, problems
