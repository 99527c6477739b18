"""DUIS XML to SAT records (SPEC section 4, shared/duis/README.md): real DCC samples and
hand-made messages written to the DUIS V5.4 schema, as a JSON Lines capture and as bare files."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from servicetrail.domain.ids import InvalidValue
from servicetrail.ingest.duis import duis_time

from tests.conftest import ON_SQLITE_ALONE
from tests.conftest import FIXTURES, SHARED_DUIS_SAMPLES, beside_the_checkout
from tests.intruder import intrude

UTC = timezone.utc
SAMPLES = FIXTURES / "duis"
EXTRA = FIXTURES / "duis_extra"
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
NS = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
SUPPLIER = "90-B3-D5-1F-30-01-00-00"  # the originator of most samples
CAPTURED = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)  # logged_at given for requests


def t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# file: (kind, request_id, srv, user_id, device_id, response_code, logged_at or None for "as
# logged")
REAL = {
    "12.2_DEVICE_PRE_NOTIFICATION_REQUEST_DUIS.XML": (
        "request",
        f"{SUPPLIER}:90-B3-D5-1F-30-00-00-02:1000",
        "12.2",
        SUPPLIER,
        "",
        "",
        None,
    ),
    "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML": (
        "request",
        f"{SUPPLIER}:00-07-81-D7-00-00-36-CE:1000",
        "4.1.1",
        SUPPLIER,
        "00-07-81-D7-00-00-36-CE",
        "",
        None,
    ),
    "ECS50_9.1_SUCCESS_REQUEST_DUIS.XML":  # written in lower case in the sample
    (
        "request",
        "00-DB-12-34-56-78-00-04:00-DB-12-34-56-78-90-A0:1000",
        "9.1",
        "00-DB-12-34-56-78-00-04",
        "00-DB-12-34-56-78-90-A0",
        "",
        None,
    ),
    "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML": (
        "request",
        f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1000",
        "11.2",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A0",
        "",
        None,
    ),
    "ECS52_11.2_SUCCESS_RESPONSE_DUIS.XML": (
        "response",
        f"{SUPPLIER}:BC-33-AC-00-FE-FA-55-3C:1660286628923",
        "11.2",
        SUPPLIER,
        "BC-33-AC-00-FE-FA-55-3C",
        "I0",
        t("2022-08-12T06:43:49.844Z"),
    ),
    "GCS13a_4.1.1_ERROR_REQUEST_DUIS.XML": (
        "request",
        f"{SUPPLIER}:00-DB-12-34-56-78-90-A1:1003",
        "4.1.1",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A1",
        "",
        None,
    ),
    # an E-code acknowledgement is a response (only I99 is an acknowledgement)
    "acknowledgement-error.xml": (
        "response",
        f"{SUPPLIER}:88-73-84-57-00-2F-96-6C:1658482675800",
        "11.2",
        SUPPLIER,
        "88-73-84-57-00-2F-96-6C",
        "E65",
        t("2022-07-22T09:37:56.134Z"),
    ),
    "read-inventory-response-5.4.xml":  # 8.2 is a non-device request: no device_id
    (
        "response",
        f"{SUPPLIER}:90-B3-D5-1F-30-00-00-02:1766940660265",
        "8.2",
        SUPPLIER,
        "",
        "I0",
        t("2025-12-28T16:51:01.185Z"),
    ),
    "readfw-response.xml": (
        "response",
        f"{SUPPLIER}:88-73-84-57-00-2F-96-1E:1660751141087",
        "11.2",
        SUPPLIER,
        "88-73-84-57-00-2F-96-1E",
        "I0",
        t("2022-08-17T15:45:42.790Z"),
    ),
}

EXTRA_EXPECTED = {
    "acknowledgement-i99.xml": (
        "acknowledgement",
        f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1000",
        "11.2",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A0",
        "I99",
        t("2025-03-04T07:00:01Z"),
    ),
    # from the Device (ResponseID originator) to the User (ResponseID target); its AlertCode
    "device-alert.xml": (
        "device_alert",
        f"00-DB-12-34-56-78-90-A0:{SUPPLIER}:1700000000001",
        "",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A0",
        "8F3E",
        t("2025-03-04T05:06:07Z"),
    ),
    "dcc-alert.xml":  # from the DCC, about the comms hub it names; its time had a +01:00 offset
    (
        "dcc_alert",
        f"90-B3-D5-1F-30-00-00-02:{SUPPLIER}:1700000000002",
        "",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A3",
        "N1",
        t("2025-03-04T05:00:00Z"),
    ),
    # a Device Alert, kept beside its command by the command's SRV and Request ID
    "future-dated-alert.xml": (
        "device_alert",
        f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1002",
        "1.1.1",
        SUPPLIER,
        "00-DB-12-34-56-78-90-A0",
        "8F66",
        t("2025-03-05T00:00:05Z"),
    ),
    "smets1-response.xml": (
        "response",
        f"{SUPPLIER}:00-DB-12-34-56-78-90-B1:1001",
        "4.1.1",
        SUPPLIER,
        "00-DB-12-34-56-78-90-B1",
        "I0",
        t("2025-03-04T08:00:00Z"),
    ),
}


def stored(engine) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        result = conn.execute(
            text(
                "SELECT r.id, r.logged_at, r.kind, r.request_id, r.srv, r.user_id, r.device_id, "
                "r.response_code, p.payload FROM sat_record r LEFT JOIN sat_payload p ON "
                "p.record_id = r.id"
            )
        )
        out = {}
        for row in result:
            item = dict(row._mapping)
            logged = item["logged_at"]
            item["logged_at"] = (
                logged.astimezone(UTC) if isinstance(logged, datetime) else t(logged)
            )
            for key in ("srv", "device_id", "response_code", "payload"):
                item[key] = item[key] or ""
            out[(item["request_id"], item["kind"])] = item
        return out


def check(item: dict, expected: tuple, logged_at: datetime) -> None:
    kind, request_id, srv, user_id, device_id, code, when = expected
    assert (
        item["kind"],
        item["request_id"],
        item["srv"],
        item["user_id"],
        item["device_id"],
        item["response_code"],
        item["logged_at"],
    ) == (kind, request_id, srv, user_id, device_id, code, when or logged_at)


def capture(path: Path, files: list[Path], logged_at: datetime = CAPTURED) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for p in files:
            f.write(
                json.dumps(
                    {"logged_at": logged_at.isoformat(), "duis": p.read_text(encoding="utf-8")}
                )
                + "\n"
            )
    return path


def test_fixtures_hold_the_real_samples():
    assert sorted(p.name for p in SAMPLES.iterdir()) == sorted(REAL)
    assert sorted(p.name for p in EXTRA.glob("*.xml")) == sorted(EXTRA_EXPECTED)


def test_real_samples_from_a_capture(cli, engine, tmp_path):
    files = sorted(SAMPLES.iterdir())
    path = capture(tmp_path / "capture.jsonl", files)
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"loaded {len(files)}, rejected 0, skipped 0 duplicates\n"
    got = stored(engine)
    assert len(got) == len(REAL)
    for f in files:
        expected = REAL[f.name]
        item = got[(expected[1], expected[0])]
        check(item, expected, CAPTURED)
        assert item["payload"] == f.read_text(
            encoding="utf-8"
        )  # the message as it came, signature included

    again = cli("ingest", path)
    assert again.exit_code == 0
    assert again.stdout == f"loaded 0, rejected 0, skipped {len(files)} duplicates\n"


def test_a_capture_stored_before_duis_identities_is_not_stored_again(cli, engine, tmp_path):
    """Records stored before migration 0004 have no identity (key '') and no digest, as 0004
    left them; a DUIS response's identity is now its ResponseID's, so the same capture loaded
    again after an upgrade found none of them and stored them again (audit 24a)."""

    files = sorted(SAMPLES.iterdir())
    path = capture(tmp_path / "capture.jsonl", files)
    assert cli("ingest", path).exit_code == 0
    intrude(engine, ("UPDATE sat_record SET identity_key = '', digest = NULL", {}))
    again = cli("ingest", path)
    assert again.exit_code == 0, again.output
    assert again.stdout == f"loaded 0, rejected 0, skipped {len(files)} duplicates\n"
    assert len(stored(engine)) == len(REAL)


def test_real_and_extra_messages_as_bare_files_in_a_folder(cli, engine, tmp_path):
    folder = tmp_path / "duis"
    shutil.copytree(SAMPLES, folder)
    for f in EXTRA.glob("*.xml"):
        shutil.copy(f, folder / f.name)
    result = cli("ingest", folder, "--logged-at", "2025-05-01T11:00:00+01:00")
    assert result.exit_code == 0, result.output
    total = len(REAL) + len(EXTRA_EXPECTED)
    assert result.stdout == f"loaded {total}, rejected 0, skipped 0 duplicates\n"
    got = stored(engine)
    assert len(got) == total
    for expected in {**REAL, **EXTRA_EXPECTED}.values():
        check(got[(expected[1], expected[0])], expected, CAPTURED)
    for name, expected in EXTRA_EXPECTED.items():
        assert got[(expected[1], expected[0])]["payload"] == (EXTRA / name).read_text(
            encoding="utf-8"
        )

    again = cli("ingest", folder, "--logged-at", "2025-05-01T10:00:00Z")
    assert again.stdout == f"loaded 0, rejected 0, skipped {total} duplicates\n"


def test_same_message_as_capture_and_as_file_is_one_record(cli, engine, tmp_path):
    request = SAMPLES / "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML"
    response = SAMPLES / "ECS52_11.2_SUCCESS_RESPONSE_DUIS.XML"
    assert cli("ingest", capture(tmp_path / "c.jsonl", [request, response])).exit_code == 0
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(request, bare)
    shutil.copy(response, bare)
    result = cli("ingest", bare, "--logged-at", CAPTURED.isoformat())
    assert result.stdout == "loaded 0, rejected 0, skipped 2 duplicates\n"
    assert len(stored(engine)) == 2


def test_bare_request_file_without_logged_at_takes_its_modification_time(cli, engine, tmp_path):
    path = tmp_path / "request.xml"
    shutil.copy(SAMPLES / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML", path)
    mtime = datetime(2024, 11, 5, 9, 30, 15, tzinfo=UTC)
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    [item] = stored(engine).values()
    assert item["logged_at"] == mtime


def test_a_modification_time_is_cut_to_the_microsecond_as_every_other_time(cli, engine, tmp_path):
    """Read as a float, 23:59:59.9999996 on a month's last day was rounded up into the next
    month (and its log), where the same instant given by --logged-at or a SAT line is cut to
    .999999 (audit 44a)."""
    path = tmp_path / "request.xml"
    shutil.copy(SAMPLES / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML", path)
    last_second = int(datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    nanoseconds = last_second * 1_000_000_000 + 999_999_600
    os.utime(path, ns=(nanoseconds, nanoseconds))
    assert cli("ingest", path).exit_code == 0
    [item] = stored(engine).values()
    assert item["logged_at"] == datetime(2025, 3, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_capture_time_is_ignored_for_responses(cli, engine, tmp_path):
    path = capture(
        tmp_path / "c.jsonl", [SAMPLES / "readfw-response.xml"], datetime(2030, 1, 1, tzinfo=UTC)
    )
    assert cli("ingest", path).exit_code == 0
    [item] = stored(engine).values()
    assert item["logged_at"] == t("2022-08-17T15:45:42.790Z")


def response(header: str, body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><sr:Response {NS} schemaVersion="5.4">'
        f"<sr:Header>{header}</sr:Header><sr:Body>{body}</sr:Body></sr:Response>"
    )


GOOD_HEADER = (
    f"<sr:RequestID>{SUPPLIER}:00-DB-12-34-56-78-90-A0:77</sr:RequestID>"
    "<sr:ResponseCode>I0</sr:ResponseCode><sr:ResponseDateTime>2025-03-04T09:00:00Z</sr:ResponseDateTime>"
)
GOOD_MESSAGE = (
    "<sr:ResponseMessage><sr:ServiceReference>11.2</sr:ServiceReference>"
    "<sr:ServiceReferenceVariant>11.2</sr:ServiceReferenceVariant></sr:ResponseMessage>"
)


@ON_SQLITE_ALONE
def test_bad_duis_messages_in_a_capture(cli, engine, tmp_path):
    request = (SAMPLES / "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML").read_text()
    lines = [
        json.dumps({"logged_at": "2025-05-01T10:00:00Z", "duis": request}),  # 1 good
        json.dumps({"duis": request}),  # 2 request, no time
        json.dumps({"logged_at": "yesterday", "duis": request}),  # 3 bad time
        json.dumps({"logged_at": "2025-05-01T10:00:00Z", "xml": request}),  # 4 no duis key
        json.dumps({"logged_at": "2025-05-01T10:00:00Z", "duis": 12}),  # 5 duis not text
        "<sr:Request>",  # 6 not JSON
        json.dumps(
            {
                "duis": response(
                    GOOD_HEADER.replace("2025-03-04T09:00:00Z", "2025-03-04T09:00:00"), GOOD_MESSAGE
                )
            }
        ),  # 7 no offset
        json.dumps(
            {"duis": response(GOOD_HEADER.replace(":77<", ":x<"), GOOD_MESSAGE)}
        ),  # 8 bad RequestID
        json.dumps(
            {
                "duis": response(
                    GOOD_HEADER.replace("<sr:ResponseCode>I0</sr:ResponseCode>", ""), GOOD_MESSAGE
                )
            }
        ),  # 9 no code
        json.dumps({"duis": response(GOOD_HEADER, "")}),  # 10 empty body
        json.dumps({"duis": response(GOOD_HEADER, "<!-- only a comment -->")}),  # 11 still empty
        json.dumps(
            {
                "logged_at": "2025-05-01T10:00:00Z",
                "duis": request.replace(
                    "<sr:ServiceReferenceVariant>11.2</sr:ServiceReferenceVariant>", ""
                ),
            }
        ),  # 12 request, no SRV
        json.dumps({"duis": response(GOOD_HEADER, GOOD_MESSAGE)}),  # 13 good
        # 14 two messages on one line: the first was dropped without a word (audit 43a)
        '{"logged_at": "2025-05-01T10:00:00Z", "duis": "<a/>", "duis": %s}' % json.dumps(request),
    ]
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 2, rejected 12, skipped 0 duplicates\n"
    rejects = [
        json.loads(line) for line in (tmp_path / "capture.rejects.jsonl").read_text().splitlines()
    ]
    assert [r["line"] for r in rejects] == [*range(2, 13), 14]
    assert [r["raw"] for r in rejects] == [*lines[1:12], lines[13]]
    reasons = [r["reason"] for r in rejects]
    for reason, word in zip(
        reasons,
        [
            "logged_at",
            "ISO-8601",
            "duis",
            "duis",
            "JSON",
            "offset",
            "Request ID",
            "ResponseCode",
            "Body",
            "Body",
            "ServiceReferenceVariant",
            '"duis" is given twice',
        ],
    ):
        assert word in reason, (word, reason)
    assert {(k, v["srv"]) for k, v in stored(engine).items()} == {
        ((f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1000", "request"), "11.2"),
        ((f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:77", "response"), "11.2"),
    }


@ON_SQLITE_ALONE
def test_capture_with_a_damaged_first_line_is_still_a_capture(cli, engine, tmp_path):
    """A capture cut mid-line at its start (a rotated log) must not be taken for SAT JSON Lines,
    which would reject every good message in it with a misleading reason."""
    request = (SAMPLES / "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML").read_text()
    damaged = (
        '8.2 Read Inventory</sr:ServiceReferenceVariant>", "logged_at": "2025-05-01T09:59:59Z"}'
    )
    path = tmp_path / "rotated.jsonl"
    path.write_text(
        damaged + "\n" + json.dumps({"logged_at": "2025-05-01T10:00:00Z", "duis": request}) + "\n"
    )
    result = cli("ingest", path)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n"
    [reject] = [
        json.loads(line) for line in (tmp_path / "rotated.rejects.jsonl").read_text().splitlines()
    ]
    assert reject["line"] == 1 and "JSON" in reject["reason"] and reject["raw"] == damaged
    [item] = stored(engine).values()
    assert (item["kind"], item["srv"]) == ("request", "11.2")


@ON_SQLITE_ALONE
def test_comments_and_processing_instructions_around_the_message(cli, engine, tmp_path):
    path = tmp_path / "commented.xml"
    path.write_text(
        response(GOOD_HEADER, "<!-- logged by gateway 7 --><?trace id=1?>" + GOOD_MESSAGE)
    )
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    [item] = stored(engine).values()
    assert (item["kind"], item["srv"], item["device_id"]) == (
        "response",
        "11.2",
        "00-DB-12-34-56-78-90-A0",
    )


def test_utf16_message_is_stored_as_readable_text(cli, engine, tmp_path):
    document = response(GOOD_HEADER, GOOD_MESSAGE).replace('encoding="UTF-8"', 'encoding="UTF-16"')
    path = tmp_path / "wide.xml"
    path.write_bytes(document.encode("utf-16"))
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    [item] = stored(engine).values()
    assert item["srv"] == "11.2"
    assert (
        "<sr:ResponseCode>I0</sr:ResponseCode>" in item["payload"] and "\x00" not in item["payload"]
    )


@ON_SQLITE_ALONE
def test_bad_xml_files_in_a_folder_named_in_the_reject_file(cli, engine, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(SAMPLES / "readfw-response.xml", folder)
    (folder / "broken.xml").write_text(response(GOOD_HEADER, GOOD_MESSAGE)[:-20])
    (folder / "norequestid.xml").write_text(
        response(
            "<sr:ResponseCode>I0</sr:ResponseCode><sr:ResponseDateTime>2025-03-04T09:00:00Z"
            "</sr:ResponseDateTime>",
            GOOD_MESSAGE,
        )
    )
    result = cli("ingest", folder)
    assert result.exit_code == 1
    assert result.stdout == "loaded 1, rejected 2, skipped 0 duplicates\n"
    rejects = [
        json.loads(line) for line in (tmp_path / "inbox.rejects.jsonl").read_text().splitlines()
    ]
    by_file = {Path(r["file"]).name: r for r in rejects}
    assert set(by_file) == {"broken.xml", "norequestid.xml"}
    assert "well-formed" in by_file["broken.xml"]["reason"]
    assert "RequestID" in by_file["norequestid.xml"]["reason"]
    assert by_file["norequestid.xml"]["raw"] == (folder / "norequestid.xml").read_text()

    target = tmp_path / "xml-rejects.jsonl"
    again = cli("ingest", folder, "--rejects", target)
    assert again.stdout == "loaded 0, rejected 2, skipped 1 duplicates\n"
    assert sorted(
        Path(json.loads(line)["file"]).name for line in target.read_text().splitlines()
    ) == ["broken.xml", "norequestid.xml"]


def test_real_messages_under_the_visibility_rule(cli, tmp_path):
    """A sample's sender sees its traffic in full; the Responsible Supplier of the target device
    sees the titles of the request (MP141) but never the device alert addressed to the sender."""
    (tmp_path / "users.csv").write_text(
        "user_id,party_id,party_name,role\n"
        f"{SUPPLIER},SAMPLES,Sample Supplier,IS\n90-B3-D5-1F-30-02-00-11,SOUTH,South Power,IS\n"
    )
    (tmp_path / "devices.csv").write_text(
        "device_id,device_type,smets\n00-DB-12-34-56-78-90-A0,ESME,2\n"
    )
    (tmp_path / "resp.csv").write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        "00-DB-12-34-56-78-90-A0,SOUTH,supplier,2025-01-01T00:00:00Z,\n"
    )
    for what, name in (
        ("users", "users.csv"),
        ("devices", "devices.csv"),
        ("responsibilities", "resp.csv"),
    ):
        assert cli("load", what, tmp_path / name).exit_code == 0
    files = [
        SAMPLES / "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML",
        EXTRA / "acknowledgement-i99.xml",
        EXTRA / "device-alert.xml",
        EXTRA / "dcc-alert.xml",
    ]
    assert cli("ingest", capture(tmp_path / "c.jsonl", files)).exit_code == 0

    own = [
        json.loads(line)
        for line in cli("records", "--party", "SAMPLES", "--format", "jsonl").stdout.splitlines()
    ]
    assert sorted(i["kind"] for i in own) == [
        "acknowledgement",
        "dcc_alert",
        "device_alert",
        "request",
    ]
    assert all(i["access"] == "own" and i["payload"] for i in own)
    request = next(i for i in own if i["kind"] == "request")
    assert request["srv_title"] == "Read Firmware Version" and request["device_type"] == "ESME"

    south = [
        json.loads(line)
        for line in cli("records", "--party", "SOUTH", "--format", "jsonl").stdout.splitlines()
    ]
    assert sorted(i["kind"] for i in south) == ["acknowledgement", "request"]
    assert all(i["access"] == "mp141" and "payload" not in i for i in south)


def independent_expectation(path: Path) -> tuple[str, str, str, str, str, datetime | None]:
    """What a SAT record of a sample must hold, read with the standard library alone."""
    root = ET.fromstring(path.read_bytes())
    request_id = (root.findtext(f"{SR}Header/{SR}RequestID") or "").strip().upper()
    originator, target, _ = request_id.split(":")
    device = (
        "" if target.startswith("90-B3-D5-1F-30-00-00-") else target
    )  # a DCC id: a non-device request
    if root.tag == f"{SR}Request":
        return (
            "request",
            request_id,
            root.findtext(f"{SR}Header/{SR}ServiceReferenceVariant").strip(),
            originator,
            device,
            None,
        )
    code = root.findtext(f"{SR}Header/{SR}ResponseCode").strip()
    srv = (root.findtext(f"{SR}Body/*/{SR}ServiceReferenceVariant") or "").strip()
    when = t(root.findtext(f"{SR}Header/{SR}ResponseDateTime").strip())
    return (
        ("acknowledgement" if code == "I99" else "response"),
        request_id,
        srv,
        originator,
        device,
        when,
    )


def test_shared_samples_folder(cli, engine, tmp_path):
    beside_the_checkout(SHARED_DUIS_SAMPLES)
    files = sorted(p for p in SHARED_DUIS_SAMPLES.iterdir() if p.suffix.lower() == ".xml")
    assert files
    folder = tmp_path / "samples"
    shutil.copytree(
        SHARED_DUIS_SAMPLES, folder
    )  # a reject file must never land in the reference folder
    result = cli("ingest", folder, "--logged-at", CAPTURED.isoformat())
    assert result.exit_code == 0, result.output
    assert result.stdout == f"loaded {len(files)}, rejected 0, skipped 0 duplicates\n"
    got = stored(engine)
    for path in files:
        kind, request_id, srv, user_id, device_id, when = independent_expectation(path)
        item = got[(request_id, kind)]
        assert (item["srv"], item["user_id"], item["device_id"], item["logged_at"]) == (
            srv,
            user_id,
            device_id,
            when or CAPTURED,
        ), path.name
        assert item["payload"] == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "written",
    [
        "2025-03-30T24:00:01Z",  # only 24:00:00 is a time of day past 23:59:59
        "2025-03-01T10:00:00+23:59",  # an offset beyond the schema's +-14:00 (audit 23c)
        "2025-03-01T10:00:00-14:01",
        "2025-03-30 01:00:00Z",
        "2025-03-30T01:00:00+0100",
        "2025-W13-7T01:00:00Z",
        "20250330T010000Z",
    ],
)
def test_a_time_that_is_no_xs_datetime_is_refused(written):
    """Python's fromisoformat reads these; the DUIS schema's xs:dateTime does not (audit,
    session 19)."""
    with pytest.raises(InvalidValue, match="xs:dateTime"):
        duis_time(written, "ResponseDateTime")


@pytest.mark.parametrize(
    "written, meant",
    [
        ("2025-03-30T01:00:00Z", "2025-03-30T01:00:00+00:00"),
        ("2025-03-30T02:00:00.123456789+01:00", "2025-03-30T01:00:00.123456+00:00"),
        ("2025-03-30T00:00:00-00:00", "2025-03-30T00:00:00+00:00"),
        # xs:dateTime's end of a day is the next day's first instant (audit 23c)
        ("2025-03-31T24:00:00Z", "2025-04-01T00:00:00+00:00"),
        ("2025-12-31T24:00:00.000+01:00", "2025-12-31T23:00:00+00:00"),
        ("2025-03-01T10:00:00+14:00", "2025-02-28T20:00:00+00:00"),
    ],
)
def test_an_xs_datetime_is_read_to_the_microsecond_in_utc(written, meant):
    assert duis_time(written, "ResponseDateTime").isoformat() == meant


REQUEST_ID = f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1001"


def one_request(header: str = "", body: str = "", **changes: str) -> str:
    """ECS52's 11.2 request with its RequestID, header or body changed."""
    document = (SAMPLES / "ECS52_11.2_SUCCESS_REQUEST_DUIS.XML").read_text()
    document = document.replace(f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:1000", REQUEST_ID)
    for old, new in changes.items():
        assert old in document, old
        document = document.replace(old, new)
    return document


@pytest.mark.parametrize(
    "header, field, meant",
    [
        (
            GOOD_HEADER.replace(":77<", ":7<!-- relayed -->7<"),
            "request_id",
            f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:77",
        ),
        (
            GOOD_HEADER.replace(":77<", ":7<?hop 2?>7<"),
            "request_id",
            f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:77",
        ),
        (GOOD_HEADER.replace(">I0<", ">E1<!---->9<"), "response_code", "E19"),
        (
            GOOD_HEADER.replace("09:00:00Z<", "09:00<!-- s -->:00Z<"),
            "logged_at",
            t("2025-03-04T09:00:00Z"),
        ),
    ],
)
@ON_SQLITE_ALONE
def test_a_comment_inside_a_value_is_no_part_of_it(cli, engine, tmp_path, header, field, meant):
    """The schema reads a value's text around a comment or processing instruction; `.text`
    stopped at the first, and `E1<!---->9` was stored as E1, a counter 7<!---->7 as 7 (audit
    23c): a wrong code shown to every MP141 viewer, a response tied to another request."""
    path = tmp_path / "commented.xml"
    path.write_text(response(header, GOOD_MESSAGE))
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    [item] = stored(engine).values()
    assert item[field] == meant


@pytest.mark.parametrize(
    "document, reason",
    [
        # two of an element the schema allows once: which one was meant is not ours to pick
        (
            response(
                GOOD_HEADER + f"<sr:RequestID>{SUPPLIER}:00-DB-12-34-56-78-90-FF:7</sr:RequestID>",
                GOOD_MESSAGE,
            ),
            "RequestID given twice",
        ),
        (
            response(
                GOOD_HEADER.replace(
                    "<sr:ResponseCode>I0</sr:ResponseCode>",
                    "<sr:ResponseCode>I0</sr:ResponseCode><sr:ResponseCode>E19</sr:ResponseCode>",
                ),
                GOOD_MESSAGE,
            ),
            "ResponseCode given twice",
        ),
        (
            response(GOOD_HEADER, GOOD_MESSAGE).replace(
                "</sr:Body>", f"</sr:Body><sr:Body>{GOOD_MESSAGE}</sr:Body>"
            ),
            "Body given twice",
        ),
        (response(GOOD_HEADER.replace(":77<", ":7<b>7</b><"), GOOD_MESSAGE), "holds an element"),
        (
            response(
                GOOD_HEADER.replace(f"{SUPPLIER}:00-DB-12-34-56-78-90-A0:77", ""), GOOD_MESSAGE
            ),
            "Request ID",
        ),
        (
            response(GOOD_HEADER.replace(f">{SUPPLIER}", f">\u00a0{SUPPLIER}"), GOOD_MESSAGE),
            "Request ID",
        ),
        (
            response(
                GOOD_HEADER,
                GOOD_MESSAGE.replace(
                    "</sr:ResponseMessage>",
                    "<sr:FutureDatedDeviceAlertMessage><sr:FutureDatedAlertCode>8F35"
                    "</sr:FutureDatedAlertCode><sr:GBCSPayload>AA==</sr:GBCSPayload>"
                    "</sr:FutureDatedDeviceAlertMessage></sr:ResponseMessage>",
                ),
            ),
            "8F66 or 8F67",
        ),
    ],
)
@ON_SQLITE_ALONE
def test_a_response_the_schema_rules_out_is_rejected(cli, engine, tmp_path, document, reason):
    path = tmp_path / "odd.xml"
    path.write_text(document.replace("\\u00a0", "\u00a0"))
    result = cli("ingest", path)
    assert result.exit_code == 1, result.output
    [reject] = [
        json.loads(line) for line in (tmp_path / "odd.rejects.jsonl").read_text().splitlines()
    ]
    assert reason in reject["reason"], reject["reason"]
    assert stored(engine) == {}


@ON_SQLITE_ALONE
def test_a_request_without_a_body_message_or_with_two_srvs_is_rejected(cli, engine, tmp_path):
    body_start = one_request().index("<sr:Body>")
    body_end = one_request().index("</sr:Body>") + len("</sr:Body>")
    without_body = one_request()[:body_start] + one_request()[body_end:]
    empty_body = one_request()[:body_start] + "<sr:Body/>" + one_request()[body_end:]
    two_srvs = one_request(
        **{
            "<sr:ServiceReferenceVariant>11.2</sr:ServiceReferenceVariant>": (
                "<sr:ServiceReferenceVariant>6.15.1</sr:ServiceReferenceVariant>"
                "<sr:ServiceReferenceVariant>11.2</sr:ServiceReferenceVariant>"
            )
        }
    )
    lines = [
        json.dumps({"logged_at": "2025-05-01T10:00:00Z", "duis": document})
        for document in (without_body, empty_body, two_srvs, one_request())
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("ingest", path)
    assert result.stdout == "loaded 1, rejected 3, skipped 0 duplicates\n", result.output
    reasons = [
        json.loads(line)["reason"]
        for line in (tmp_path / "requests.rejects.jsonl").read_text().splitlines()
    ]
    assert "Body" in reasons[0] and "Body" in reasons[1]
    assert "ServiceReferenceVariant given twice" in reasons[2]
    assert [item["request_id"] for item in stored(engine).values()] == [REQUEST_ID]


@pytest.mark.parametrize(
    "first_line", ["null", "[1]", '{"logged_at": "2025-05-01T10:00:00Z", "dius": "<x/>"}']
)
@ON_SQLITE_ALONE
def test_a_capture_whose_first_line_is_json_but_no_record_is_still_a_capture(
    cli, engine, tmp_path, first_line
):
    """The form was told by the first line that parsed as JSON: `null`, a list or a damaged
    record made the file SAT JSON Lines and every good message in it a reject (audit 23c)."""
    good = json.dumps({"logged_at": "2025-05-01T10:00:00Z", "duis": one_request()})
    path = tmp_path / "capture.jsonl"
    path.write_text(f"{first_line}\n{good}\n")
    result = cli("ingest", path)
    assert result.stdout == "loaded 1, rejected 1, skipped 0 duplicates\n", result.output
    assert [item["request_id"] for item in stored(engine).values()] == [REQUEST_ID]


@pytest.mark.parametrize("declared", ["UTF-16", "ISO-8859-1"])
def test_a_captured_document_is_read_as_the_text_it_is_whatever_it_declares(
    cli, engine, tmp_path, declared
):
    """A capture holds the document decoded; the encoding its declaration names is how it was
    once stored. Parsed by that name, UTF-16 failed and ISO-8859-1 would misread (audit 23c)."""
    document = response(
        GOOD_HEADER,
        GOOD_MESSAGE.replace("</sr:ResponseMessage>", "<!-- café --></sr:ResponseMessage>"),
    ).replace('encoding="UTF-8"', f'encoding="{declared}"')
    path = tmp_path / "capture.jsonl"
    path.write_text(json.dumps({"duis": document}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = cli("ingest", path)
    assert result.exit_code == 0, result.output
    [item] = stored(engine).values()
    assert item["srv"] == "11.2" and item["payload"] == document
