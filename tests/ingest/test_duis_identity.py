"""DUIS identity, conflicts and limits (SPEC section 4): what is a duplicate, what is a
conflict, what a bare file's time is, and that a bad document never costs its batch."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from lxml import etree
from sqlalchemy import text

from tests.ingest.duis_messages import DCC, ESME, NORTH_IS, READ, request, response, titles
from tests.intruder import intrude

R = f"{NORTH_IS}:{ESME}:500"


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM sat_record")).scalar_one()


def snapshot(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT r.id, r.kind, r.request_id, r.srv, r.response_code, p.payload FROM "
                    "sat_record r LEFT JOIN sat_payload p ON p.record_id = r.id ORDER BY r.id"
                )
            )
        ]


def rejects_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def capture(path: Path, documents: list[tuple[str | None, str]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"logged_at": when, "duis": doc} if when else {"duis": doc}) + "\n"
            for when, doc in documents
        )
    )
    return path


def stored_response(cli, tmp_path: Path) -> str:
    """A response to R (ResponseID ...:9, payload AAAA), ingested: its DUIS text."""
    first = response(
        R,
        f"{ESME}:{NORTH_IS}:9",
        "I0",
        "2025-03-04T09:00:05Z",
        titles("4.1.1", "<sr:GBCSPayload>AAAA</sr:GBCSPayload>"),
    )
    assert cli("ingest", capture(tmp_path / "a.jsonl", [(None, first)])).exit_code == 0
    return first


def test_a_conflicting_resend_exits_1_naming_the_stored_record_and_changes_nothing(
    cli, engine, tmp_path
):
    first = stored_response(cli, tmp_path)
    before = snapshot(engine)
    altered = first.replace("AAAA", "BBBB")  # same RequestID, ResponseID, time: other content
    other_response = first.replace(f"{NORTH_IS}:9<", f"{NORTH_IS}:10<").replace("AAAA", "CCCC")
    result = cli(
        "ingest",
        capture(tmp_path / "b.jsonl", [(None, first), (None, altered), (None, other_response)]),
    )
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 1 duplicates\n"
    [reject] = rejects_of(tmp_path / "b.rejects.jsonl")
    assert reject["line"] == 2 and f"stored record {before[0][0]}" in reject["reason"]
    assert json.loads(reject["raw"])["duis"] == altered
    after = snapshot(engine)
    assert (
        after[0] == before[0]
    )  # nothing stored changed; the second ResponseID is a record of its own
    assert len(after) == 2 and "CCCC" in after[1][5]


def test_a_pre_command_and_its_signed_command_are_two_records(cli, engine, tmp_path):
    pre = request(R, 4, "1.6", "<sr:UpdatePaymentMode><sr:Credit/></sr:UpdatePaymentMode>")
    signed = request(
        R,
        5,
        "1.6",
        "<sr:SignedPreCommand><sr:GBCSPayload>AAAA</sr:GBCSPayload></sr:SignedPreCommand>",
    )
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "pre.xml").write_text(pre)
    (folder / "signed.xml").write_text(signed)
    result = cli("ingest", "--logged-at", "2025-03-04T09:00:00Z", folder)  # one time for both
    assert result.stdout == "loaded 2, rejected 0, skipped 0 duplicates\n"
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT command_variant FROM sat_record")).scalars()) == [
            4,
            5,
        ]


def test_a_touched_bare_request_is_not_added_again_and_the_summary_says_whence_its_time(
    cli, engine, tmp_path
):
    path = tmp_path / "ECS17b_4.1.1_X.XML"
    path.write_text(request(R, 1, "4.1.1", READ))
    first = cli("ingest", path)
    assert (
        first.stdout
        == "loaded 1, rejected 0, skipped 0 duplicates; 1 times taken from file modification "
        "times\n"
    )
    os.utime(path, (1_900_000_000, 1_900_000_000))
    again = cli("ingest", path)
    assert (
        again.stdout
        == "loaded 0, rejected 0, skipped 1 duplicates; 1 times taken from file modification "
        "times\n"
    )
    given = cli("ingest", "--logged-at", "2026-01-01T00:00:00Z", path)
    assert given.stdout == "loaded 0, rejected 0, skipped 1 duplicates\n"
    # its identity is its Request ID, command variant and content (SPEC section 4), not its
    # file's name: a copy under another name was stored again (SPEC audit, session 17)
    copy = tmp_path / "copy of it.xml"
    copy.write_bytes(path.read_bytes())
    renamed = cli("ingest", "--logged-at", "2026-02-01T00:00:00Z", copy)
    assert renamed.stdout == "loaded 0, rejected 0, skipped 1 duplicates\n"
    assert count(engine) == 1


def test_a_bare_files_request_captured_again_at_another_time_is_a_duplicate(cli, engine, tmp_path):
    """Audit 29c: PostgreSQL looked for a capture's stored copies only in its batch's time
    range, and a request stored from a bare file sits at its file's time: the capture's copy
    a month away was stored again (SQLite looked at every time). Both ways round, once."""
    document = request(R, 1, "4.1.1", READ)
    path = tmp_path / "ECS17b_4.1.1_X.XML"
    path.write_text(document)
    assert cli("ingest", "--logged-at", "2026-03-01T00:00:00Z", path).exit_code == 0
    again = cli("ingest", capture(tmp_path / "c.jsonl", [("2026-01-01T00:00:00Z", document)]))
    assert again.stdout == "loaded 0, rejected 0, skipped 1 duplicates\n"
    assert count(engine) == 1


def test_a_bad_reject_name_keeps_every_dot_but_the_last(cli, engine, tmp_path):
    path = tmp_path / "ECS17b_4.1.1_X.XML"
    path.write_text(
        request(R, 1, "4.1.1", READ).replace(
            "4.1.1</sr:ServiceReferenceVariant>", "4.1.9</sr:ServiceReferenceVariant>"
        )
    )
    assert cli("ingest", path).exit_code == 1
    [reject] = rejects_of(tmp_path / "ECS17b_4.1.1_X.rejects.jsonl")
    assert reject["file"] == str(path) and reject["raw"] == path.read_text()
    assert "ServiceReferenceVariant" in reject["reason"]


def test_values_no_writer_can_hold_are_rejects_and_cost_their_batch_nothing(cli, engine, tmp_path):
    """On PostgreSQL a value wider than its column once failed the binary COPY of the whole
    batch (a traceback, and every good document of it lost); now each is a reject."""
    good = [
        (f"2025-03-04T09:00:0{i}Z", request(f"{NORTH_IS}:{ESME}:{600 + i}", 1, "4.1.1", READ))
        for i in range(3)
    ]
    hostile_srvs = [
        "9" * 5000,
        "<script>alert(1)</script>",
        '=HYPERLINK("http://x")',
        "4.1.99",
        "4.1.1\u00a0",
    ]
    bad = [
        (
            "2025-03-04T09:01:00Z",
            request(f"{NORTH_IS}:{ESME}:70{i}", 1, "4.1.1", READ).replace(
                ">4.1.1</sr:ServiceReferenceVariant>", f">{srv}</sr:ServiceReferenceVariant>"
            ),
        )
        for i, srv in enumerate(hostile_srvs)
    ]
    codes = ["E" + "9" * 40, "<b>", "=1+1", "i0", "I 0"]
    bad += [
        (
            None,
            response(f"{NORTH_IS}:{ESME}:71{i}", "", code, "2025-03-04T09:02:00Z", titles("4.1.1")),
        )
        for i, code in enumerate(codes)
    ]
    bad += [
        (
            None,
            response(
                f"{NORTH_IS}:{ESME}:72{i}",
                f"{ESME}:{NORTH_IS}:1",
                "I0",
                "2025-03-04T09:03:00Z",
                f"<sr:DeviceAlertMessage><sr:AlertCode>{code}</sr:AlertCode><sr:GBCSPayload>AA"
                "</sr:GBCSPayload></sr:DeviceAlertMessage>",
            ),
        )
        for i, code in enumerate(["ZZ", "8F6", "12345678901234567890"])
    ]
    bad += [
        ("2025-03-04T09:04:00Z", request(f"{NORTH_IS}:{ESME}:{counter}", 1, "4.1.1", READ))
        for counter in ("0007", str(2**64))
    ]
    documents = good[:1] + bad + good[1:]
    result = cli("ingest", capture(tmp_path / "mixed.jsonl", documents))
    assert result.exit_code == 1
    assert result.stdout == f"loaded 3, rejected {len(bad)}, skipped 0 duplicates\n"
    rejects = rejects_of(tmp_path / "mixed.rejects.jsonl")
    assert [r["line"] for r in rejects] == list(range(2, 2 + len(bad)))
    assert all(len(r["reason"]) < 300 and "\n" not in r["reason"] for r in rejects)
    assert all(
        r["raw"] == line
        for r, line in zip(rejects, (tmp_path / "mixed.jsonl").read_text().splitlines()[1:])
    )
    with engine.connect() as conn:
        assert sorted(conn.execute(text("SELECT request_id FROM sat_record")).scalars()) == sorted(
            f"{NORTH_IS}:{ESME}:{600 + i}" for i in range(3)
        )


def test_a_firmware_image_of_the_largest_size_duis_allows_is_ingested(
    cli, engine, tmp_path, duis_schema
):
    image = base64.b64encode(
        os.urandom(10_240_000)
    ).decode()  # 11.1's largest image, 13.7 MB of base64
    document = request(
        f"{NORTH_IS}:{DCC}:800",
        8,
        "11.1",
        f"<sr:UpdateFirmware><sr:FirmwareImage>{image}</sr:FirmwareImage><sr:FirmwareVersion>1"
        f"</sr:FirmwareVersion><sr:DeviceIDList>{ESME.lower()},{DCC}</sr:DeviceIDList>"
        "</sr:UpdateFirmware>",
    )
    assert duis_schema.validate(
        etree.fromstring(document.encode(), etree.XMLParser(huge_tree=True))
    )
    path = tmp_path / "firmware.xml"
    path.write_text(document)
    result = cli("ingest", "--logged-at", "2025-03-04T09:00:00Z", path)
    assert result.stdout == "loaded 1, rejected 0, skipped 0 duplicates\n", result.output
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT r.srv, r.subject_device_id, length(p.payload) FROM sat_record r "
                "JOIN sat_payload p ON p.record_id = r.id"
            )
        ).one()
    assert tuple(stored) == ("11.1", ESME, len(document))


def test_a_document_over_the_limit_is_rejected_with_its_raw_uncut(cli, engine, tmp_path):
    document = request(
        f"{NORTH_IS}:{DCC}:801",
        8,
        "11.1",
        "<sr:UpdateFirmware><sr:FirmwareImage>" + "A" * (16 * 1024 * 1024) + "</sr:FirmwareImage>"
        f"<sr:FirmwareVersion>1</sr:FirmwareVersion><sr:DeviceIDList>{ESME}</sr:DeviceIDList>"
        "</sr:UpdateFirmware>",
    )
    path = tmp_path / "too-big.xml"
    path.write_text(document)
    result = cli("ingest", "--logged-at", "2025-03-04T09:00:00Z", path)
    assert result.exit_code == 1
    [reject] = rejects_of(tmp_path / "too-big.rejects.jsonl")
    assert "limit" in reject["reason"] and reject["raw"] == document
    assert count(engine) == 0


def test_after_an_upgrade_from_0003_a_message_again_is_a_duplicate_and_a_new_one_a_record(
    cli, engine, tmp_path
):
    """Records stored before migration 0004 have no identity ('') nor digest, as 0004 left
    them: loaded again, the same message was stored a second time (audit 24a); matched by
    Request ID, kind and time alone, a second response of the same time with its own
    ResponseID was taken for a copy and lost (review 24d). Its payload tells them apart."""

    first = stored_response(cli, tmp_path)
    intrude(engine, ("UPDATE sat_record SET identity_key = '', digest = NULL", {}))
    other_response = first.replace(f"{NORTH_IS}:9<", f"{NORTH_IS}:10<").replace("AAAA", "CCCC")
    result = cli("ingest", capture(tmp_path / "b.jsonl", [(None, first), (None, other_response)]))
    assert result.exit_code == 0, result.output
    assert result.stdout == "loaded 1, rejected 0, skipped 1 duplicates\n"
    after = snapshot(engine)
    assert len(after) == 2 and "AAAA" in after[0][5] and "CCCC" in after[1][5]


def test_a_captures_time_that_is_no_string_is_refused_as_such(cli, engine, tmp_path):
    """Audit 29c: `"logged_at": 123` was refused as an "empty time", and 0 or false was read
    as no time at all, so a response with one loaded where one with 123 did not."""
    first = response(R, f"{ESME}:{NORTH_IS}:9", "I0", "2025-03-04T09:00:05Z", titles("4.1.1", ""))
    lines = [
        json.dumps({"logged_at": value, "duis": first.replace(":9<", f":{n}<")})
        for n, value in enumerate([123, 0, False, ["x"]], start=10)
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("ingest", tmp_path / "c.jsonl")
    assert result.stdout == "loaded 0, rejected 4, skipped 0 duplicates\n"
    reasons = [r["reason"] for r in rejects_of(tmp_path / "c.rejects.jsonl")]
    assert reasons == [
        f"a time is an ISO-8601 string, not {kind}" for kind in ("int", "int", "bool", "list")
    ]
    assert count(engine) == 0
