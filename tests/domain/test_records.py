"""Validation of a normalised SAT record (SPEC section 4) and the item shape of section 5."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from servicetrail.domain.ids import InvalidValue
from servicetrail.domain.model import SatRecord
from servicetrail.domain.records import ITEM_FIELDS, MAX_PAYLOAD_CHARS, item, record_from_mapping

UTC = timezone.utc
GOOD = {
    "logged_at": "2025-03-01T10:00:00+01:00",
    "kind": "response",
    "request_id": "90-b3-d5-1f-30-01-00-01:00-db-12-34-56-78-90-a1:42",
    "srv": "4.1.1",
    "user_id": "90-b3-d5-1f-30-01-00-01",
    "device_id": "00-db-12-34-56-78-90-a1",
    "response_code": "I0",
    "payload": "  <registers> 12 </registers>\n",
}


def test_a_good_record_is_normalised() -> None:
    record = record_from_mapping(GOOD)
    assert record == SatRecord(
        logged_at=datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        kind="response",
        request_id="90-B3-D5-1F-30-01-00-01:00-DB-12-34-56-78-90-A1:42",
        srv="4.1.1",
        user_id="90-B3-D5-1F-30-01-00-01",
        device_id="00-DB-12-34-56-78-90-A1",
        response_code="I0",
        payload="  <registers> 12 </registers>\n",  # the payload is kept untouched
    )
    assert record.key == (record.request_id, "response", record.logged_at)


def test_optional_fields_may_be_empty_or_absent() -> None:
    request = {k: v for k, v in GOOD.items() if k not in ("response_code", "payload")}
    record = record_from_mapping({**request, "kind": "request"})
    assert (record.response_code, record.payload) == ("", "")
    non_device = record_from_mapping(
        {**GOOD, "kind": "request", "srv": "8.2", "device_id": "", "response_code": ""}
    )
    assert non_device.device_id == ""
    alert = record_from_mapping({**GOOD, "kind": "dcc_alert", "srv": "", "device_id": None})
    assert (alert.srv, alert.device_id) == ("", "")


@pytest.mark.parametrize(
    "kind", ["request", "acknowledgement", "response", "device_alert", "dcc_alert"]
)
def test_every_kind_is_accepted(kind: str) -> None:
    code = "" if kind == "request" else GOOD["response_code"]  # a request has none
    assert record_from_mapping({**GOOD, "kind": kind, "response_code": code}).kind == kind


def test_a_request_with_a_response_code_is_refused() -> None:
    with pytest.raises(InvalidValue, match="response_code must be empty for a request"):
        record_from_mapping({**GOOD, "kind": "request"})


@pytest.mark.parametrize(
    "field,value",
    [
        ("logged_at", "2025-03-01T10:00:00"),  # no offset
        ("logged_at", "not a time"),
        ("kind", "alert"),
        ("kind", "REQUEST"),
        ("request_id", "90-B3-D5-1F-30-01-00-01:42"),
        ("request_id", "nonsense"),
        ("user_id", "90B3D51F30010001"),
        ("device_id", "00-DB-12-34-56-78-90"),
        ("srv", "4.1.a"),
        ("srv", "1234567890.12"),
        # the form of numbers joined by dots, not only its characters (audit 28a)
        ("srv", "."),
        ("srv", "4..1"),
        ("srv", "4.1."),
        ("srv", "000000000000"),
        ("srv", "4"),
        ("srv", "0.1"),
        ("response_code", "I 0"),
        ("response_code", "E" * 17),
    ],
)
def test_a_bad_field_is_rejected_with_a_message_naming_it(field: str, value: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        record_from_mapping({**GOOD, field: value})
    assert field in str(raised.value)


@pytest.mark.parametrize("field", ["logged_at", "kind", "request_id", "user_id"])
@pytest.mark.parametrize("absent", [None, "", "   ", "drop"])
def test_a_missing_required_field_is_named(field: str, absent) -> None:
    raw = dict(GOOD, kind="acknowledgement")  # (a response may lack its request_id: below)
    if absent == "drop":
        del raw[field]
    else:
        raw[field] = absent
    with pytest.raises(InvalidValue, match=f"missing required field.*{field}"):
        record_from_mapping(raw)


@pytest.mark.parametrize(
    "misspelt,named",
    [
        ({"paylaod": "<b/>"}, "'paylaod'"),
        ({"command_varient": 4}, "'command_varient'"),
        ({f"x{n}": n for n in range(5)}, "'x0', 'x1', 'x2' and 2 more"),
        ({"\u202eevil": 1}, r"'\u202eevil'"),  # shown escaped: the reason stays plain
    ],
)
def test_an_unknown_field_is_refused_by_name(misspelt: dict, named: str) -> None:
    """A misspelt field was a missing one, taken as empty: the payload's body was lost and
    the line put right was a conflict for ever after (audit 35c)."""
    with pytest.raises(InvalidValue) as refused:
        record_from_mapping({**GOOD, **misspelt})
    assert str(refused.value).startswith(f"unknown field(s) {named}: a record's are logged_at,")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("absent", [None, "", "   "])
def test_only_a_response_may_have_no_request_id(absent) -> None:
    """SPEC 4.1: a Device's response without a RequestID is stored with an empty one."""
    assert record_from_mapping({**GOOD, "request_id": absent}).request_id == ""
    for kind in ("request", "acknowledgement", "device_alert", "dcc_alert"):
        with pytest.raises(InvalidValue, match="request_id"):
            record_from_mapping({**GOOD, "kind": kind, "srv": "4.1.1", "request_id": absent})


@pytest.mark.parametrize(
    "field",
    ["logged_at", "kind", "request_id", "srv", "user_id", "device_id", "response_code", "payload"],
)
@pytest.mark.parametrize("value", [42, ["x"], {"a": 1}, True])
def test_a_field_that_is_not_a_string_is_named(field: str, value) -> None:
    with pytest.raises(InvalidValue, match=f"{field} must be a string"):
        record_from_mapping({**GOOD, field: value})


@pytest.mark.parametrize("srv", ["1.5", "4.1.1", "8.14.1", "6.15.1", "12.3.4.5"])
def test_an_srv_of_any_duis_form_is_taken(srv: str) -> None:
    assert record_from_mapping({**GOOD, "srv": srv}).srv == srv


def test_a_request_must_name_its_srv() -> None:
    with pytest.raises(InvalidValue, match="srv"):
        record_from_mapping({**GOOD, "kind": "request", "srv": "", "response_code": ""})


def test_a_device_alert_must_name_its_device() -> None:
    with pytest.raises(InvalidValue, match="device_id"):
        record_from_mapping({**GOOD, "kind": "device_alert", "srv": "", "device_id": ""})


def test_the_payload_has_a_size_limit() -> None:
    assert record_from_mapping({**GOOD, "payload": "x" * MAX_PAYLOAD_CHARS}).payload
    with pytest.raises(InvalidValue, match="payload"):
        record_from_mapping({**GOOD, "payload": "x" * (MAX_PAYLOAD_CHARS + 1)})


@pytest.mark.parametrize("raw", [[], "a string", 42, None])
def test_a_record_must_be_an_object(raw) -> None:
    with pytest.raises(InvalidValue, match="JSON object"):
        record_from_mapping(raw)


def _item(access: str, payload: str | None = "<secret>") -> dict:
    return item(
        7,
        datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        "request",
        "R",
        "6.14.2",
        "D",
        "ESME",
        2,
        "U",
        "IS",
        "NORTHPOWER",
        "",
        4,
        access,
        payload,
        datetime(3000, 12, 31, tzinfo=UTC),
        "SUBJECT",
    )


def test_an_own_item_carries_its_payload_and_body_fields() -> None:
    shown = _item("own")
    assert list(shown) == [*ITEM_FIELDS, "payload", "execution_at", "subject_device_id"]
    assert shown["payload"] == "<secret>"
    assert (shown["command_variant"], shown["execution_at"], shown["subject_device_id"]) == (
        4,
        "3000-12-31T00:00:00Z",
        "SUBJECT",
    )
    assert shown["logged_at"] == "2025-03-01T09:00:00Z"
    assert shown["srv_title"] == "Update Device Configuration (Auxiliary Load Control Scheduler)"
    assert _item("own", None)["payload"] == ""


def test_an_mp141_item_has_no_payload_key_at_all() -> None:
    shown = _item("mp141")
    assert list(shown) == list(ITEM_FIELDS)
    assert shown["command_variant"] == 4  # a title field
    assert (
        "payload" not in shown and "execution_at" not in shown and "subject_device_id" not in shown
    )
    assert (
        "<secret>" not in repr(shown) and "SUBJECT" not in repr(shown) and "3000" not in repr(shown)
    )


def test_an_item_without_srv_or_device() -> None:
    shown = item(
        1,
        datetime(2025, 3, 1, tzinfo=UTC),
        "dcc_alert",
        "R",
        None,
        None,
        None,
        None,
        "U",
        None,
        None,
        None,
        None,
        "own",
        "",
        None,
        None,
    )
    assert (
        shown["srv"],
        shown["srv_title"],
        shown["device_id"],
        shown["device_type"],
        shown["response_code"],
    ) == ("", "", "", None, "")


@pytest.mark.parametrize("field", ["request_id", "user_id", "device_id", "srv", "response_code"])
def test_an_identifier_wrapped_in_a_no_break_space_is_refused(field: str) -> None:
    """Only ASCII white space is padding: str.strip() took a no-break space, which no EUI-64
    or Request ID pattern allows (audit 23c, review 23d), nor an SRV or a response code's
    (review 44b)."""
    assert record_from_mapping({**GOOD, field: " " + GOOD[field] + "\t"}) == record_from_mapping(
        GOOD
    )
    with pytest.raises(InvalidValue, match=field):
        record_from_mapping({**GOOD, field: "\u00a0" + GOOD[field]})


def test_every_ascii_white_space_pads_and_no_other_does() -> None:
    """A vertical tab or form feed padded fields that loaded before (review 23f); a kind or an
    empty response request_id of a no-break space passed as padding."""
    padded = {
        k: "\x0b" + v + "\x0c" if k not in ("payload", "logged_at") else v for k, v in GOOD.items()
    }
    assert record_from_mapping(padded) == record_from_mapping(GOOD)
    with pytest.raises(InvalidValue, match="kind"):
        record_from_mapping({**GOOD, "kind": "\u00a0response"})
    with pytest.raises(InvalidValue, match="request_id"):
        record_from_mapping({**GOOD, "request_id": "\u00a0"})
