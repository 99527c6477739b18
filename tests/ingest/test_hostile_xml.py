"""Hostile XML (SPEC section 4): a document with a DOCTYPE or an entity declaration is rejected,
not defused; nothing is fetched, expanded or stored, and it is quick. Also oversized documents,
XML that is not well-formed, and XML that is not DUIS."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import ON_SQLITE_ALONE
import pytest
from sqlalchemy import text

from servicetrail.ingest import duis

NS = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
SUPPLIER = "90-B3-D5-1F-30-01-00-00"


def response(gbcs: str = "3QAAAAAAAFUR", prolog: str = "", counter: int = 55) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<sr:Response {NS} '
        'schemaVersion="5.4"><sr:Header>'
        f"<sr:RequestID>{SUPPLIER}:00-DB-12-34-56-78-90-A1:{counter}</sr:RequestID>"
        "<sr:ResponseCode>I0</sr:ResponseCode><sr:ResponseDateTime>2025-02-01T10:00:00Z</sr:ResponseDateTime>"
        "</sr:Header><sr:Body><sr:ResponseMessage><sr:ServiceReference>4.1</sr:ServiceReference>"
        "<sr:ServiceReferenceVariant>4.1.1</sr:ServiceReferenceVariant>"
        f"<sr:GBCSPayload>{gbcs}</sr:GBCSPayload></sr:ResponseMessage></sr:Body></sr:Response>"
    )


def laughs(levels: int = 9) -> str:
    entities = '<!ENTITY a0 "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY a{i} "' + f"&a{i - 1};" * 10 + '">' for i in range(1, levels + 1)
    )
    return response(gbcs=f"&a{levels};", prolog=f"<!DOCTYPE sr:Response [{entities}]>")


HOSTILE = {
    "xxe-file": response(
        gbcs="&xxe;", prolog='<!DOCTYPE sr:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    ),
    "xxe-network": response(
        gbcs="&xxe;",
        prolog='<!DOCTYPE sr:Response [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/secret">]>',
    ),
    "billion-laughs": laughs(),
    "parameter-entity": response(
        prolog='<!DOCTYPE sr:Response [<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote;]>'
    ),
    "external-dtd": response(prolog='<!DOCTYPE sr:Response SYSTEM "http://127.0.0.1:9/duis.dtd">'),
    "harmless-looking-doctype": response(prolog="<!DOCTYPE sr:Response>"),
    "lower-case-doctype-after-comment": response(
        prolog='<!-- hello --><!doctype sr:Response [<!ENTITY x "y">]>'
    ),
}


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM sat_record")).scalar_one()


def payloads(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM sat_payload")).scalars())


def rejects_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", sorted(HOSTILE))
@ON_SQLITE_ALONE
def test_hostile_file_rejected_quickly_nothing_stored(cli, engine, tmp_path, name):
    path = tmp_path / f"{name}.xml"
    path.write_text(HOSTILE[name], encoding="utf-8")
    started = time.monotonic()
    result = cli("ingest", path)
    assert time.monotonic() - started < 10  # expanding it would take hours
    assert result.exit_code == 1
    assert result.stdout == "loaded 0, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / f"{name}.rejects.jsonl")
    assert "DOCTYPE" in reject["reason"]
    assert reject["raw"] == HOSTILE[name]  # as it came, not expanded
    assert count(engine) == 0


@pytest.mark.parametrize("name", sorted(HOSTILE))
@ON_SQLITE_ALONE
def test_hostile_capture_line_rejected_others_load(cli, engine, tmp_path, name):
    good = response(counter=1)
    path = tmp_path / "capture.jsonl"
    path.write_text(json.dumps({"duis": good}) + "\n" + json.dumps({"duis": HOSTILE[name]}) + "\n")
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = rejects_of(tmp_path / "capture.rejects.jsonl")
    assert reject["line"] == 2 and "DOCTYPE" in reject["reason"]
    assert count(engine) == 1
    assert payloads(engine) == [good]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@ON_SQLITE_ALONE
def test_doctype_in_another_encoding_is_still_rejected(cli, engine, tmp_path, encoding):
    """A byte-level look for '<!DOCTYPE' misses UTF-16; the parsed document must be checked too."""
    declared = {"utf-16": "UTF-16", "utf-16-be": "UTF-16BE", "utf-32": "UTF-32"}[encoding]
    for name in ("xxe-file", "billion-laughs"):
        document = HOSTILE[name].replace('encoding="UTF-8"', f'encoding="{declared}"')
        path = tmp_path / f"{name}.xml"
        path.write_bytes(document.encode(encoding))
        started = time.monotonic()
        result = cli("ingest", path)
        assert time.monotonic() - started < 10  # expanding it would take hours
        assert result.exit_code == 1, (name, result.output)
        reason = rejects_of(tmp_path / f"{name}.rejects.jsonl")[0]["reason"]
        # libxml2 may stop the bomb first (amplification limit); either way it is refused
        assert "DOCTYPE" in reason or (name == "billion-laughs" and "entity" in reason), reason
    assert count(engine) == 0
    assert not any("root:" in p for p in payloads(engine))


def test_entity_bomb_rejected_by_the_parser_function_itself():
    """Timed as this process's CPU: the parse is in it, and the bound is the work expanding
    would take (hours), which a loaded machine's wall time does not tell (session 52)."""
    started = time.process_time()
    with pytest.raises(ValueError, match="DOCTYPE"):
        duis.parse_document(laughs(12).encode(), None)
    assert time.process_time() - started < 1


def test_oversized_documents_refused_before_parsing(cli, engine, tmp_path, use_settings):
    use_settings(SERVICETRAIL_MAX_DUIS_BYTES=2000)
    small = response(counter=1)
    big = response(gbcs="A" * 5000, counter=2)
    huge = response(gbcs="B" * 3_000_000, counter=3)
    assert len(small.encode()) <= 2000 < len(big.encode())
    folder = tmp_path / "drop"
    folder.mkdir()
    for name, document in (("small.xml", small), ("big.xml", big), ("huge.xml", huge)):
        (folder / name).write_text(document)
    started = time.monotonic()
    result = cli("ingest", folder)
    assert time.monotonic() - started < 10  # expanding it would take hours
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 2, skipped 0 duplicates\n"
    rejects = {Path(r["file"]).name: r for r in rejects_of(tmp_path / "drop.rejects.jsonl")}
    assert set(rejects) == {"big.xml", "huge.xml"}
    assert all("2000-byte limit" in r["reason"] for r in rejects.values())
    # each as it came, whole: the over-size one copied from its file, not held
    assert rejects["big.xml"]["raw"] == big and rejects["huge.xml"]["raw"] == huge
    assert payloads(engine) == [small]

    capture = tmp_path / "capture.jsonl"
    capture.write_text(json.dumps({"duis": big}) + "\n")
    over = cli("ingest", capture)
    assert (
        over.exit_code == 1
        and "2000-byte limit" in rejects_of(tmp_path / "capture.rejects.jsonl")[0]["reason"]
    )
    assert count(engine) == 1


@pytest.mark.parametrize(
    "document, reason",
    [
        (response()[:-30], "well-formed"),
        ("<sr:Response", "well-formed"),
        ("", "well-formed"),
        ("this is not xml at all", "well-formed"),
        (response().replace("</sr:Header>", ""), "well-formed"),
        (response().replace("</sr:Header>", "\x00</sr:Header>"), "well-formed"),  # 35c
        ('<?xml version="1.0"?><invoice><total>12</total></invoice>', "not a DUIS"),
        (response().replace(NS, 'xmlns:sr="http://example.com/not-duis"'), "not a DUIS"),
        ('<Response schemaVersion="5.4"><Header/></Response>', "not a DUIS"),
    ],
)
@ON_SQLITE_ALONE
def test_not_well_formed_or_not_duis(cli, engine, tmp_path, document, reason):
    path = tmp_path / "odd.xml"
    path.write_text(document)
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [reject] = rejects_of(tmp_path / "odd.rejects.jsonl")
    assert reason in reject["reason"] and reject["line"] == 1
    assert len(reject["reason"].splitlines()) == 1  # SPEC: a one-line reason
    assert count(engine) == 0


@ON_SQLITE_ALONE
def test_a_multitude_of_tiny_elements_is_refused_before_parsing(cli, engine, tmp_path):
    """16 MiB of `<a/>` would parse into millions of elements and hundreds of MB; a firmware
    image of the same size (one text node) is welcome (tests/ingest/test_duis_identity.py)."""
    path = tmp_path / "swarm.xml"
    path.write_bytes(
        b'<sr:Request xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
        + b"<a/>" * 200_000
        + b"</sr:Request>"
    )
    result = cli("ingest", "--logged-at", "2025-01-01T00:00:00Z", path)
    assert result.exit_code == 1
    [reject] = [
        json.loads(line) for line in (tmp_path / "swarm.rejects.jsonl").read_text().splitlines()
    ]
    assert "elements" in reject["reason"] and reject["raw"] == path.read_text()


def test_a_limit_far_above_any_file_reads_a_document_as_it_is(cli, engine, tmp_path, use_settings):
    """Audit 29c: a bare file was read with one read() of the limit plus one byte, which
    allocates that much first: SERVICETRAIL_MAX_DUIS_BYTES=64000000000, a value the setting
    takes, ended every ingest of a 6 KB file in a MemoryError traceback."""
    use_settings(SERVICETRAIL_MAX_DUIS_BYTES=10**15)
    (tmp_path / "one.xml").write_text(response(counter=1))
    result = cli("ingest", tmp_path / "one.xml")
    assert result.exit_code == 0, result.output
    assert result.stdout == "loaded 1, rejected 0, skipped 0 duplicates\n"
    assert count(engine) == 1
