"""README.md is a newcomer's path, followed to the letter (audit 57c): the record ids its
walk-through names are records of the world its first commands build, and every command,
option and endpoint that SPEC names is there at a glance, spelt as SPEC spells it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import create_engine

from servicetrail.generate import SHOWCASE_DEVICE_ID, World
from servicetrail.generate.stream import messages
from servicetrail.generate.writers import responsibility_rows, user_rows
from servicetrail.web.app import create_app
from tests.conftest import beside_the_checkout

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_ids_the_walk_through_names_are_those_of_the_world_it_builds() -> None:
    """`generate out/ --records 20000` (the default seed), loaded in the README's order into a
    new store, gives the n-th line of sat.jsonl the id n: one ingest, nothing rejected. A change
    to the generator that moves these records makes the README's examples answer 404."""
    readme = _readme()
    assert "servicetrail generate out/ --records 20000 " in readme
    world = World(n_records=20_000)
    party_of = {user_id: party for user_id, party, _name, _role in user_rows(world)}
    wanted = (17012, 18984, 18986)
    named = {n: m for n, m in islice(enumerate(messages(world), 1), max(wanted)) if n in wanted}
    own, others, response = named[17012], named[18984], named[18986]
    # (time, _, kind, request_id, srv, user_id, device_id, ...): see generate.stream.Message
    assert own[2] == "request" and party_of[own[5]] == "KINTYREUTIL"
    assert others[2] == "request" and party_of[others[5]] == "WENSLEYFLEXXR"
    assert response[2] == "response" and response[3] == others[3]
    assert own[6] == others[6] == response[6] == SHOWCASE_DEVICE_ID
    # titles only to KINTYREUTIL: its Responsible Supplier when they were logged (rule 3)
    logged = datetime.fromtimestamp(others[0] / 1000, UTC)
    assert any(
        datetime.fromisoformat(start) <= logged
        and (not end or logged < datetime.fromisoformat(end))
        for device, party, relation, start, end in responsibility_rows(world)
        if (device, party, relation) == (SHOWCASE_DEVICE_ID, "KINTYREUTIL", "supplier")
    )
    for shown in (
        "triggers 18986 --party KINTYREUTIL",
        "/api/v1/records/18984/why",
        "/api/v1/records/18986/triggers",
    ):
        assert shown in readme
    assert "/api/v1/records/17012/proof" in (ROOT / "docs" / "verifying.md").read_text()


def test_every_command_option_and_endpoint_spec_names_is_at_a_glance() -> None:
    spec = beside_the_checkout(SPEC).read_text()
    readme = _readme()
    commands = set(re.findall(r"`servicetrail ([a-z][a-z-]*(?: [a-z][a-z|-]*)?)", spec))
    assert {"ingest", "records", "report own", "log verify-proof", "access-log"} <= commands
    cli = _section(readme, "Command line at a glance")
    assert not {c for c in commands if f"servicetrail {c}" not in cli}
    options = set(re.findall(r"(--[a-z][a-z-]+)", spec))
    assert not {o for o in options if o not in readme}
    endpoints = {
        f"{method} {path}"
        for method, path in re.findall(r"\b(GET|POST|DELETE)\s+(/api/v1/[^\s`?]*)", spec)
    }
    assert len(endpoints) >= 14, endpoints
    api = _section(readme, "HTTP API at a glance")
    assert not {e for e in endpoints if e.split()[1] not in api or e.split()[0] not in api}


def test_every_route_of_the_api_is_at_a_glance() -> None:
    """Each of the API's routes, method and path (`{id}` for any id), has its row in the
    table: GET /api/v1/watches/{id}/webhook came with one, a route may come without."""
    paths = create_app(create_engine("sqlite://")).openapi()["paths"]
    api = _section(_readme(), "HTTP API at a glance")
    listed = re.findall(r"\b(GET|POST|DELETE) (/api/v1/[^\s`?]*)", api)
    routes = {(m.upper(), p) for p, methods in paths.items() for m in methods}
    missing = {(m, p) for m, p in routes if (m, re.sub(r"\{\w+\}", "{id}", p)) not in set(listed)}
    assert len(routes) >= 14 and missing == set()


def _anchors(markdown: str) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_link_of_the_readme_and_docs_leads_somewhere() -> None:
    """Reference moved from README to docs/ (audit 57c): each relative link, and the heading
    it names, is there."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # another site
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (
                anchor and anchor not in _anchors(linked.read_text(errors="replace"))
            ):
                broken.append(f"{page.name}: {target}")
    assert not broken
