"""SPEC section 4.1, row by row: each DUIS shape the DCC sends, as a schema-valid document,
ingested through the CLI and read back through the API by the Parties MP141 concerns.

The documents are written here by hand (not by the generator under test) and every one is
validated against the vendored DUIS 5.4 schema before it is used."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from servicetrail.store.accounts import create_account, create_token
from servicetrail.web.app import create_app
from servicetrail.domain.ids import InvalidValue
from servicetrail.ingest.duis import parse_document
from tests.ingest.duis_messages import DCC, ESME, NORTH_IS, READ, request, response, titles
from tests.intruder import intrude

LOOK_OU = "90-B3-D5-1F-30-03-00-00"  # LOOK: an Other User, responsible for nothing
S1_ESME = "00-DB-12-34-56-78-90-B1"  # SMETS1
CHF = "00-DB-12-34-56-78-90-A3"
SIGNATURE = (
    '<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/'
    'xml-exc-c14n#"/><ds:SignatureMethod '
    'Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>'
    '<ds:Reference URI=""><ds:Transforms><ds:Transform '
    'Algorithm="http://www.w3.org/2000/09/xmldsig#'
    'enveloped-signature"/></ds:Transforms><ds:DigestMethod '
    'Algorithm="http://www.w3.org/2001/04/xmlenc#'
    'sha256"/><ds:DigestValue>ZGVmYXVsdA==</ds:DigestValue></ds:Reference></ds:SignedInfo>'
    '<ds:SignatureValue>ZGVmYXVsdA==</ds:SignatureValue></ds:Signature>'
)


def smets1(outer: str, device: str, user: str, inner_header: str, inner_body: str) -> str:
    return (
        f"<sr:SMETS1ResponseMessage>{outer}<sr:SMETS1SignedResponse "
        "schemaVersion=\"5.4\"><sr:SMETS1Response>"
        f"<sr:Header><ra:BusinessOriginatorID>{device}</ra:BusinessOriginatorID>"
        f"<ra:BusinessTargetID>{user}</ra:BusinessTargetID><ra:OriginatorCounter>9</ra:OriginatorCounter>"
        f"{inner_header}</sr:Header><sr:Body>{inner_body}</sr:Body></sr:SMETS1Response>{SIGNATURE}"
        "</sr:SMETS1SignedResponse></sr:SMETS1ResponseMessage>"
    )


R_LOOK = f"{LOOK_OU}:{ESME}:11"  # LOOK reads NORTH's meter
R_FD = f"{NORTH_IS}:{ESME}:12"  # NORTH's future-dated critical command, pre-command then signed
R_S1 = f"{LOOK_OU}:{S1_ESME}:13"
R_DECOM = f"{LOOK_OU}:{DCC}:14"  # LOOK asks the DCC to decommission NORTH's meter
R_CANCEL = f"{NORTH_IS}:{ESME}:15"
R_FAIL = f"{NORTH_IS}:{ESME}:16"

# name: (logged_at for a request or None, document, the item SPEC 4.1 makes of it, for its own User)
SHAPES = {
    "request": (
        "2025-03-04T09:00:00Z",
        request(R_LOOK, 1, "4.1.1", READ),
        dict(
            kind="request",
            srv="4.1.1",
            device_id=ESME,
            request_id=R_LOOK,
            response_code="",
            user_id=LOOK_OU,
            command_variant=1,
            execution_at=None,
            subject_device_id="",
        ),
    ),
    "pre-command request": (
        "2025-03-04T09:10:00Z",
        request(
            R_FD,
            4,
            "1.6",
            "<sr:UpdatePaymentMode><sr:ExecutionDateTime>2025-03-10T00:00:00Z"
            "</sr:ExecutionDateTime><sr:Credit/></sr:UpdatePaymentMode>",
        ),
        dict(
            kind="request",
            srv="1.6",
            device_id=ESME,
            request_id=R_FD,
            command_variant=4,
            execution_at="2025-03-10T00:00:00Z",
            user_id=NORTH_IS,
        ),
    ),
    "signed command": (
        "2025-03-04T09:12:00Z",
        request(
            R_FD,
            5,
            "1.6",
            "<sr:SignedPreCommand><sr:ExecutionDateTime>2025-03-10T00:00:00Z"
            "</sr:ExecutionDateTime><sr:GBCSPayload>3QAAAAAAAFURAAAAAN8JAgAA</sr:GBCSPayload>"
            "</sr:SignedPreCommand>",
        ),
        dict(
            kind="request",
            srv="1.6",
            device_id=ESME,
            request_id=R_FD,
            command_variant=5,
            execution_at="2025-03-10T00:00:00Z",
        ),
    ),
    "cancellation": (
        "2025-03-05T08:00:00Z",
        request(
            R_CANCEL,
            4,
            "1.6",
            "<sr:UpdatePaymentMode><sr:ExecutionDateTime>3000-12-31T00:00:00Z"
            "</sr:ExecutionDateTime><sr:Credit/></sr:UpdatePaymentMode>",
        ),
        dict(
            kind="request",
            request_id=R_CANCEL,
            command_variant=4,
            execution_at="3000-12-31T00:00:00Z",
        ),
    ),
    "non-device request": (
        "2025-03-04T09:20:00Z",
        request(
            R_DECOM,
            8,
            "8.3",
            f"<sr:DecommissionDevice><sr:DeviceID>{ESME.lower()}</sr:DeviceID>"
            "</sr:DecommissionDevice>",
        ),
        dict(
            kind="request",
            srv="8.3",
            device_id="",
            request_id=R_DECOM,
            command_variant=8,
            subject_device_id=ESME,
            user_id=LOOK_OU,
        ),
    ),
    "acknowledgement": (
        None,
        response(R_LOOK, "", "I99", "2025-03-04T09:00:01Z", titles("4.1.1")),
        dict(
            kind="acknowledgement",
            srv="4.1.1",
            device_id=ESME,
            request_id=R_LOOK,
            response_code="I99",
            user_id=LOOK_OU,
            command_variant=None,
        ),
    ),
    "synchronous rejection": (
        None,
        response(R_FAIL, f"{DCC}:{NORTH_IS}:5", "E4", "2025-03-04T09:30:00Z", titles("4.1.1")),
        dict(
            kind="response",
            srv="4.1.1",
            device_id=ESME,
            request_id=R_FAIL,
            response_code="E4",
            user_id=NORTH_IS,
        ),
    ),
    "response": (
        None,
        response(
            R_LOOK,
            f"{ESME}:{LOOK_OU}:11",
            "I0",
            "2025-03-04T09:00:05Z",
            titles("4.1.1", "<sr:GBCSPayload>3QAAAAAAAFURAAAAAN8J</sr:GBCSPayload>"),
        ),
        dict(
            kind="response",
            srv="4.1.1",
            device_id=ESME,
            request_id=R_LOOK,
            response_code="I0",
            user_id=LOOK_OU,
        ),
    ),
    "response without RequestID": (
        None,
        response(
            "",
            f"{ESME}:{NORTH_IS}:77",
            "I0",
            "2025-03-04T10:00:00Z",
            titles("4.1.1", "<sr:GBCSPayload>3QAAAAAAAFUR</sr:GBCSPayload>"),
        ),
        dict(
            kind="response",
            srv="4.1.1",
            device_id=ESME,
            request_id="",
            response_code="I0",
            user_id=NORTH_IS,
        ),
    ),
    "device alert": (
        None,
        response(
            "",
            f"{ESME}:{NORTH_IS}:78",
            "I0",
            "2025-03-04T11:00:00Z",
            "<sr:DeviceAlertMessage><sr:AlertCode>8f3e</sr:AlertCode>"
            "<sr:GBCSPayload>3QAAAAAAAFUR</sr:GBCSPayload></sr:DeviceAlertMessage>",
        ),
        dict(
            kind="device_alert",
            srv="",
            device_id=ESME,
            request_id=f"{ESME}:{NORTH_IS}:78",
            response_code="8F3E",
            user_id=NORTH_IS,
        ),
    ),
    "future-dated outcome": (
        None,
        response(
            R_FD,
            f"{ESME}:{NORTH_IS}:79",
            "I0",
            "2025-03-10T00:00:05Z",
            titles(
                "1.6",
                "<sr:FutureDatedDeviceAlertMessage><sr:FutureDatedAlertCode>8F66</sr:FutureDatedAlertCode>"
                "<sr:GBCSPayload>3QAAAAAA</sr:GBCSPayload><sr:InstructionNumber>1</sr:InstructionNumber>"
                "<sr:TotalCommandInstructions>1</sr:TotalCommandInstructions>"
                "</sr:FutureDatedDeviceAlertMessage>",
            ),
        ),
        dict(
            kind="device_alert",
            srv="1.6",
            device_id=ESME,
            request_id=R_FD,
            response_code="8F66",
            user_id=NORTH_IS,
        ),
    ),
    "DCC alert": (
        None,
        response(
            "",
            f"{DCC}:{NORTH_IS}:80",
            "I0",
            "2025-03-04T12:00:00Z",
            f"<sr:DCCAlertMessage><sr:DCCAlertCode>N12</sr:DCCAlertCode><sr:DCCAlert><sr:CommandFailure>"
            f"<sr:CommandRequestID>{R_FAIL}</sr:CommandRequestID><sr:DeviceID>{ESME}</sr:DeviceID>"
            "</sr:CommandFailure></sr:DCCAlert></sr:DCCAlertMessage>",
        ),
        dict(
            kind="dcc_alert",
            srv="",
            device_id=ESME,
            request_id=f"{DCC}:{NORTH_IS}:80",
            response_code="N12",
            user_id=NORTH_IS,
        ),
    ),
    # the leak of issue 9: a RequestID in the outer header made it a visible response
    "SMETS1 alert": (
        None,
        response(
            R_S1,
            f"{S1_ESME}:{LOOK_OU}:81",
            "I0",
            "2025-03-04T13:00:00Z",
            smets1(
                "",
                S1_ESME,
                LOOK_OU,
                "<ra:GBCSHexadecimalMessageCode>8F1C</ra:GBCSHexadecimalMessageCode>",
                '<sr:DeviceAlertMessage><ra:GBCSData format="plain" sequence="0" '
                'name="DeviceAlert" type="gbcs">'
                "3QAAAAAA</ra:GBCSData></sr:DeviceAlertMessage>",
            ),
        ),
        dict(
            kind="device_alert",
            srv="",
            device_id=S1_ESME,
            request_id=f"{S1_ESME}:{LOOK_OU}:81",
            response_code="8F1C",
            user_id=LOOK_OU,
        ),
    ),
    "SMETS1 response": (
        None,
        response(
            R_S1,
            f"{S1_ESME}:{LOOK_OU}:82",
            "I0",
            "2025-03-04T13:00:01Z",
            smets1(
                "<sr:ServiceReference>4.1</sr:ServiceReference><sr:ServiceReferenceVariant>4.1.1"
                "</sr:ServiceReferenceVariant>",
                S1_ESME,
                LOOK_OU,
                "",
                '<sr:ResponseMessage><ra:GBCSData format="plain" sequence="0" name="x" '
                'type="gbcs">3QAA</ra:GBCSData>'
                "</sr:ResponseMessage>",
            ),
        ),
        dict(
            kind="response",
            srv="4.1.1",
            device_id=S1_ESME,
            request_id=R_S1,
            response_code="I0",
            user_id=LOOK_OU,
        ),
    ),
    "SMETS1 response, SRV inside": (
        None,
        response(
            f"{LOOK_OU}:{S1_ESME}:17",
            f"{S1_ESME}:{LOOK_OU}:83",
            "I0",
            "2025-03-04T13:00:02Z",
            smets1(
                "",
                S1_ESME,
                LOOK_OU,
                "<ra:ServiceReference>4.1</ra:ServiceReference><ra:ServiceReferenceVariant>"
                "4.1.1</ra:ServiceReferenceVariant>",
                "<sr:ResponseMessage/>",
            ),
        ),
        dict(
            kind="response",
            srv="4.1.1",
            device_id=S1_ESME,
            request_id=f"{LOOK_OU}:{S1_ESME}:17",
            user_id=LOOK_OU,
        ),
    ),
}
# who may see each shape, besides its own User (SPEC 3): NORTH, the supplier, sees titles of others'
# requests, acknowledgements and responses on its meters, never alerts, never non-device requests
NORTH_SEES_AS_MP141 = {
    "request",
    "acknowledgement",
    "response",
    "SMETS1 response",
    "SMETS1 response, SRV inside",
}


def test_every_shape_is_schema_valid(duis_schema) -> None:
    for name, (_, document, _) in SHAPES.items():
        parsed = etree.fromstring(document.encode())
        assert duis_schema.validate(parsed), (name, duis_schema.error_log.last_error)


@pytest.fixture
def loaded(cli, engine, tmp_path: Path):
    (tmp_path / "users.csv").write_text(
        "user_id,party_id,party_name,role\n"
        f"{NORTH_IS},NORTH,North Energy,IS\n{LOOK_OU},LOOK,Look Ltd,OU\n"
    )
    (tmp_path / "devices.csv").write_text(
        f"device_id,device_type,smets\n{ESME},ESME,2\n{S1_ESME},ESME,1\n{CHF},CHF,2\n"
    )
    (tmp_path / "resp.csv").write_text(
        "device_id,party_id,relation,valid_from,valid_to\n"
        f"{ESME},NORTH,supplier,2025-01-01T00:00:00Z,\n"
        f"{S1_ESME},NORTH,supplier,2025-01-01T00:00:00Z,\n"
    )
    for what, name in (
        ("users", "users.csv"),
        ("devices", "devices.csv"),
        ("responsibilities", "resp.csv"),
    ):
        assert cli("load", what, tmp_path / name).exit_code == 0
    capture = tmp_path / "capture.jsonl"
    capture.write_text(
        "".join(
            json.dumps({"logged_at": when, "duis": doc} if when else {"duis": doc}) + "\n"
            for when, doc, _ in SHAPES.values()
        )
    )
    result = cli("ingest", capture)
    assert result.stdout == f"loaded {len(SHAPES)}, rejected 0, skipped 0 duplicates\n", (
        result.output
    )
    with engine.begin() as conn:
        tokens = {}
        for party in ("NORTH", "LOOK"):
            create_account(conn, party.lower(), party, "correct horse battery staple")
            tokens[party] = {"Authorization": f"Bearer {create_token(conn, party.lower())}"}
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        yield client, tokens


def _all(client, headers, **params) -> list[dict]:
    reply = client.get("/api/v1/records", headers=headers, params={"limit": 1000, **params})
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


def _find(items: list[dict], expected: dict) -> dict:
    matching = [
        i
        for i in items
        if all(
            i.get(k) == v
            for k, v in expected.items()
            if k in ("kind", "request_id", "command_variant", "response_code", "user_id")
        )
    ]
    assert len(matching) == 1, (expected, matching)
    return matching[0]


def test_each_shape_becomes_the_record_of_its_row(loaded) -> None:
    client, tokens = loaded
    own = _all(client, tokens["NORTH"], scope="own") + _all(client, tokens["LOOK"], scope="own")
    assert len(own) == len(SHAPES)
    for name, (_, _, expected) in SHAPES.items():
        got = _find(own, expected)
        for field, value in expected.items():
            assert got[field] == value, (name, field, got[field], value)
        assert got["access"] == "own" and "payload" in got


def test_the_supplier_sees_titles_of_others_requests_and_responses_and_never_their_alerts(
    loaded,
) -> None:
    client, tokens = loaded
    others = _all(client, tokens["NORTH"], scope="others")
    shown = {
        name
        for name, (_, _, expected) in SHAPES.items()
        if expected.get("user_id", NORTH_IS) != NORTH_IS
        and any(
            i["request_id"] == expected.get("request_id")
            and i["kind"] == expected["kind"]
            and i.get("response_code", "") == expected.get("response_code", i.get("response_code"))
            for i in others
        )
    }
    assert shown == NORTH_SEES_AS_MP141
    assert all(i["access"] == "mp141" for i in others)
    for item in others:  # titles only: no payload, nor what is read from the body
        assert not {"payload", "execution_at", "subject_device_id"} & set(item)
        assert item["kind"] in ("request", "acknowledgement", "response")
    request = _find(others, SHAPES["request"][2])
    assert request["command_variant"] == 1  # a title field: every viewer sees it


def test_another_users_smets1_alert_is_not_found_by_the_supplier(loaded) -> None:
    client, tokens = loaded
    alert = _find(_all(client, tokens["LOOK"], scope="own"), SHAPES["SMETS1 alert"][2])
    assert client.get(f"/api/v1/records/{alert['id']}", headers=tokens["LOOK"]).status_code == 200
    hidden = client.get(f"/api/v1/records/{alert['id']}", headers=tokens["NORTH"])
    missing = client.get("/api/v1/records/999999", headers=tokens["NORTH"])
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_a_non_device_request_is_found_by_its_sender_through_the_device_it_names(loaded) -> None:
    client, tokens = loaded
    by_device = _all(client, tokens["LOOK"], device_id=ESME.lower(), scope="own")
    assert R_DECOM in {i["request_id"] for i in by_device}
    assert R_DECOM in {
        i["request_id"] for i in _all(client, tokens["LOOK"], device_id=ESME)
    }  # scope all
    # it never widens MP141: the meter's supplier does not see it, by Device or at all
    assert R_DECOM not in {i["request_id"] for i in _all(client, tokens["NORTH"], device_id=ESME)}
    assert R_DECOM not in {i["request_id"] for i in _all(client, tokens["NORTH"])}


def test_the_future_dated_exchange_keeps_its_variants_and_outcome_together(loaded) -> None:
    client, tokens = loaded
    exchange = _all(client, tokens["NORTH"], request_id=R_FD)
    assert [(i["kind"], i["command_variant"], i["response_code"]) for i in exchange] == [
        ("device_alert", None, "8F66"),
        ("request", 5, ""),
        ("request", 4, ""),
    ]
    # LOOK, an Other User, sees none of it
    assert _all(client, tokens["LOOK"], request_id=R_FD) == []


def test_the_command_line_shows_each_party_what_the_api_does(loaded, cli) -> None:
    client, tokens = loaded
    for party in ("NORTH", "LOOK"):
        result = cli("records", "--party", party, "--format", "jsonl")
        assert result.exit_code == 0, result.output
        from_cli = [json.loads(line) for line in result.stdout.splitlines()]
        assert from_cli == _all(client, tokens[party])


def test_log_verify_names_a_derived_field_that_is_not_what_its_payload_says(
    loaded, cli, engine, monkeypatch
) -> None:
    """execution_at and subject_device_id are derived from the payload (SPEC 4.1) and held
    by no leaf: an intruder's new future date or Device passed `log verify` (audit 27a). They
    are derived again from the payload, which the leaf commits to."""
    from sqlalchemy import text

    assert cli("log", "verify").stdout == ""  # every shape's fields are its payload's
    # a size limit set lower since ingest refuses no stored payload (review 27e: every larger
    # one was a "changed" record)
    monkeypatch.setenv("SERVICETRAIL_MAX_DUIS_BYTES", "100")
    assert cli("log", "verify").stdout == ""
    monkeypatch.delenv("SERVICETRAIL_MAX_DUIS_BYTES")
    with engine.connect() as conn:
        dated, named = (
            conn.execute(text(f"SELECT min(id) FROM sat_record WHERE {where}")).scalar_one()
            for where in ("execution_at IS NOT NULL", "subject_device_id IS NOT NULL")
        )
        moved = conn.execute(
            text("SELECT execution_at FROM sat_record WHERE id = :id"), {"id": dated}
        ).scalar_one()
    later = "2031-01-01 00:00:00.000000" if engine.dialect.name == "postgresql" else None
    intrude(
        engine,
        (
            "UPDATE sat_record SET execution_at = :at WHERE id = :id",
            {"at": later or str(moved).replace("2025", "2031", 1), "id": dated},
        ),
        (f"UPDATE sat_record SET subject_device_id = '{CHF}' WHERE id = :id", {"id": named}),
    )
    found = cli("log", "verify")
    assert found.exit_code == 1, found.output
    assert sorted(found.stdout.splitlines()) == sorted(
        [f"record {dated} changed", f"record {named} changed"]
    )


# --- what the schema forbids is refused, not cut down (audit 29c) ----------------------------

_ALERT = "<sr:DeviceAlertMessage><sr:AlertCode>8F3E</sr:AlertCode></sr:DeviceAlertMessage>"
_OUTCOME = (
    "<{p}:FutureDatedDeviceAlertMessage{ns}><sr:FutureDatedAlertCode>8F66</sr:FutureDatedAlertCode>"
    "<sr:GBCSPayload>3QAAAAAA</sr:GBCSPayload><sr:InstructionNumber>1</sr:InstructionNumber>"
    "<sr:TotalCommandInstructions>1</sr:TotalCommandInstructions>"
    "</{p}:FutureDatedDeviceAlertMessage>"
)
_FOREIGN = ' xmlns:x="urn:not-duis"'
_AT = datetime(2025, 3, 4, 9, tzinfo=timezone.utc)  # a request's logged_at
_BY_ESME = f"{ESME}:{NORTH_IS}:78"


def _answer(message: str, rid: str = "") -> str:
    return response(rid, _BY_ESME, "I0", "2025-03-04T09:00:05Z", message)


@pytest.mark.parametrize(
    "document, said",
    [
        # a Body is a choice of one message: the second was dropped without a word
        (_answer(titles("4.1.1") + _ALERT, R_LOOK), "holds 2 messages"),
        (_answer(_ALERT + titles("4.1.1")), "holds 2 messages"),
        (request(R_LOOK, 1, "4.1.1", READ + READ), "holds 2 messages"),
        # and a ResponseMessage holds one of its payloads at most
        (
            _answer(
                titles(
                    "1.6", "<sr:GBCSPayload>AAAA</sr:GBCSPayload>" + _OUTCOME.format(p="sr", ns="")
                ),
                R_FD,
            ),
            "holds 2 of",
        ),
        # an element of another namespace is not DUIS's, whatever its local name: an alert
        # was stored as a device alert, and a future-dated outcome as a response
        (
            _answer(
                f"<x:DeviceAlertMessage{_FOREIGN}><sr:AlertCode>8F3E</sr:AlertCode></x:DeviceAlertMessage>"
            ),
            "urn:not-duis",
        ),
        (
            _answer(
                f"<sr:DeviceAlertMessage><x:AlertCode{_FOREIGN}>8F3E</x:AlertCode></sr:DeviceAlertMessage>"
            ),
            "AlertCode",
        ),
        (_answer(titles("1.6", _OUTCOME.format(p="x", ns=_FOREIGN)), R_FD), "urn:not-duis"),
    ],
)
def test_what_the_schema_forbids_is_refused_not_cut_down(document: str, said: str) -> None:
    from servicetrail.ingest import duis

    with pytest.raises(ValueError) as refused:
        duis.parse_document(document.encode(), None if "<sr:Response " in document else _AT)
    assert said in str(refused.value), str(refused.value)


# --- found missing by mutation testing (audit 29b) ----------------------------------------


RID = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1001"
AT = datetime(2025, 5, 1, 10, 0, tzinfo=timezone.utc)
BODY = "<sr:ReadInstantaneousImportRegisters/>"


@pytest.mark.parametrize("variant", ["", "12", "345", "12345678"])
def test_a_command_variant_that_is_not_one_digit_1_to_8_is_refused(variant):
    with pytest.raises(InvalidValue, match="CommandVariant must be 1-8"):
        parse_document(request(RID, variant, "4.1.1", BODY).encode(), AT)  # type: ignore[arg-type]


def test_a_command_variant_of_one_digit_is_taken():
    assert parse_document(request(RID, 1, "4.1.1", BODY).encode(), AT).command_variant == 1


def test_a_time_longer_than_any_xs_datetime_duis_writes_is_refused():
    """du9: the 40-character bound on a time (before fromisoformat reads it) is pinned: a
    fraction of 24 digits is refused with the usual reason, not truncated and stored."""
    from servicetrail.ingest.duis import duis_time

    with pytest.raises(InvalidValue, match="not an xs:dateTime"):
        duis_time("2025-03-01T10:00:00." + "1" * 24 + "Z", "ResponseDateTime")
    assert duis_time("2025-03-01T10:00:00.1234567Z", "ResponseDateTime").microsecond == 123456


@pytest.mark.parametrize("smets1_form", [False, True])
def test_an_acknowledgement_without_the_requests_id_is_refused(smets1_form: bool) -> None:
    """An I99 answers a request and shares its Request ID (SPEC section 4: the I99 row takes
    `RequestID`, with no other id to fall back on). Without one it was stored as an
    acknowledgement of no request, with an empty request_id, visible to the Device's supplier,
    where the same record as SAT JSON Lines is rejected (audit 49c)."""
    message = (
        smets1(
            "<sr:ServiceReference>4.1</sr:ServiceReference>"
            "<sr:ServiceReferenceVariant>4.1.1</sr:ServiceReferenceVariant>",
            ESME,
            NORTH_IS,
            "",
            "<sr:ResponseMessage/>",
        )
        if smets1_form
        else titles("4.1.1")
    )
    document = response("", _BY_ESME, "I99", "2025-03-04T09:00:05Z", message)
    with pytest.raises(InvalidValue, match="acknowledgement .*without a RequestID"):
        parse_document(document.encode(), None)


@pytest.mark.parametrize(
    "document, said",
    [
        (_answer("").replace("<sr:Body></sr:Body>", "<sr:Body/>"), "without a Body message"),
        (_answer(titles("4.1.1")).split("<sr:Header>")[0] + "</sr:Response>", "without a Header"),
    ],
)
def test_a_response_missing_its_header_or_its_body_message_is_said_to_miss_that(document, said):
    """An empty Body was said to be a response "without Header and Body", its Header there
    (audit 49c)."""
    with pytest.raises(InvalidValue) as refused:
        parse_document(document.encode(), None)
    assert str(refused.value) == f"DUIS response {said}"
