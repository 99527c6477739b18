"""All 297 request templates of the DCC's own tooling (../shared/duis/templates), as bare XML
files in one folder: every one a record with the right title fields, none skipped, none twice
(the 12 that repeat another's bytes under another name are that one's duplicates).

The expectations are read from each file here with the standard library's ElementTree, not
by the parser under test. The templates are reference material beside the repository
(GPL-3.0, not copied into it); CI has them, as every developer's machine does."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import text

from servicetrail.domain.catalogue import CATALOGUE
from tests.conftest import SHARED_DUIS_SAMPLES

TEMPLATES = SHARED_DUIS_SAMPLES.parent / "templates"
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
EUI = re.compile(r"^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){7}$")

if not TEMPLATES.is_dir():  # the suite runs beside shared/, as CI and every developer's checkout do
    pytest.fail(f"the DUIS templates are missing from {TEMPLATES}", pytrace=False)


def expected(path: Path) -> dict:
    root = ET.parse(path).getroot()
    header = root.find(f"{SR}Header")
    request_id = header.findtext(f"{SR}RequestID").strip()
    originator, target, counter = request_id.split(":")
    srv = header.findtext(f"{SR}ServiceReferenceVariant").strip()
    non_device = CATALOGUE[srv].non_device
    named = next(
        (
            e.text.strip().upper()
            for e in root.find(f"{SR}Body").iter()
            if "DeviceID" in e.tag and e.text and EUI.match(e.text.strip())
        ),
        "",
    )
    return {
        "request_id": f"{originator.upper()}:{target.upper()}:{counter}",
        "srv": srv,
        "command_variant": int(header.findtext(f"{SR}CommandVariant")),
        "device_id": "" if non_device else target.upper(),
        "subject_device_id": named if non_device else "",
        "user_id": originator.upper(),
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy, ignore=shutil.ignore_patterns("LICENSE*", "*.md"))
    return copy


def stored(engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT request_id, srv, command_variant, device_id, subject_device_id, user_id,"
                " kind FROM sat_record"
            )
        )
        return [dict(r._mapping, subject_device_id=r.subject_device_id or "") for r in rows]


def test_all_297_templates_ingest_each_as_its_record_and_again_add_nothing(
    cli, engine, folder: Path
) -> None:
    """A bare file's request is identified by its Request ID, command variant and content
    (SPEC section 4): the 12 templates that repeat another's bytes under another name are
    duplicates of it."""
    files = sorted(folder.iterdir())
    assert len(files) == 297
    key = lambda r: sorted(r.items())  # noqa: E731
    # the title fields, and the bytes a payload is made of
    distinct = {(tuple(key(expected(f))), f.read_bytes()) for f in files}
    assert len(distinct) == 285
    first = cli("ingest", "--logged-at", "2025-06-01T09:00:00Z", folder)
    assert first.exit_code == 0, first.output
    assert first.stdout == "loaded 285, rejected 0, skipped 12 duplicates\n"
    rows = stored(engine)
    assert all(r.pop("kind") == "request" for r in rows)
    assert sorted(tuple(key(r)) for r in rows) == sorted(fields for fields, _ in distinct)
    # 53 distinct templates share one Request ID: each is its own record, told apart by content
    assert max(sum(r["request_id"] == other["request_id"] for other in rows) for r in rows) >= 53

    again = cli("ingest", "--logged-at", "2025-06-01T09:00:00Z", folder)
    assert again.stdout == "loaded 0, rejected 0, skipped 297 duplicates\n"
    for path in files:  # a new modification time does not make a request new
        os.utime(path, (1_800_000_000, 1_800_000_000))
    touched = cli("ingest", folder)
    assert touched.exit_code == 0
    assert touched.stdout == (
        "loaded 0, rejected 0, skipped 297 duplicates; "
        "297 times taken from file modification times\n"
    )
    assert len(stored(engine)) == 285
