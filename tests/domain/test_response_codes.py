"""DUIS response codes: the schema's list, their meanings in words, and the validation of a
DUIS document's ServiceReferenceVariant and ResponseCode."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from servicetrail.domain.catalogue import CATALOGUE
from servicetrail.domain.ids import InvalidValue
from servicetrail.domain.response_code_data import DCC_ALERT_CODES, MEANINGS, RESPONSE_CODES
from servicetrail.domain.response_codes import (
    CATEGORY_WORDS,
    DCC_ALERT,
    DEVICE_ALERT,
    ERROR,
    INFORMATION,
    UNKNOWN,
    WARNING,
    check_response_code,
    check_srv,
    code_category,
    explain_code,
    is_duis_response_code,
    legend,
    service_reference_of,
    shown,
)

from tests.conftest import DUIS_SCHEMA, beside_the_checkout

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
REFERENCE_README = SHARED / "reference" / "README.md"
XS = "{http://www.w3.org/2001/XMLSchema}"

# The meanings ../shared/reference/README.md gives, with words each explanation must carry.
README_MEANINGS = {
    "I0": ["success"],
    "I99": ["acknowledgement"],
    "E1": ["invalid user", "user role"],
    "E2": ["user role", "service reference"],
    "E3": ["user's status"],
    "E4": ["user role not authorised", "device", "date and time"],
    "E5": ["device", "status"],
    "E11": ["device's type"],
    "E12": ["command variant"],
    "E13": ["request type", "url"],
    "E17": ["local command"],
    "E19": ["device does not exist"],
    "E20": ["could not establish communications with the device"],
    "E21": ["no response from the device"],
    "E30": ["time-out", "future-dated command"],
}

HOSTILE = [
    "x" * 5000,
    "<script>alert(document.cookie)</script>",
    "=HYPERLINK(\"http://evil.example/\",\"click me\")",
    "4.1.1\r\nInjected: header",
    "\x1b[31mred\x1b[0m\x00\x07",
    "\u202eevil\u2066",  # right-to-left override and an isolate: invisible, reorder text
    "\U000e0041" * 3000,  # tag characters: invisible, ten characters each in repr()
    "",
    None,
    41,
    b"I0",
]


def enumeration(root: ET.Element, simple_type: ET.Element | None) -> tuple[str, ...]:
    assert simple_type is not None
    return tuple(e.get("value") for e in simple_type.iter(f"{XS}enumeration"))


def listed_element(root: ET.Element, name: str) -> tuple[str, ...]:
    """The codes of the element of that name that carries a list (others may be plain strings)."""
    (listed,) = [
        e.find(f"{XS}simpleType")
        for e in root.iter(f"{XS}element")
        if e.get("name") == name and e.find(f"{XS}simpleType") is not None
    ]
    return enumeration(root, listed)


# --- the code list -----------------------------------------------------------------------------


def test_the_schema_has_194_distinct_response_codes_by_prefix() -> None:
    assert len(RESPONSE_CODES) == len(set(RESPONSE_CODES)) == 194
    assert all(re.fullmatch(r"[IWE]\d{1,6}", code) for code in RESPONSE_CODES)
    assert {"I0", "I99", "E65", "W110101", "E120207"} <= set(RESPONSE_CODES)
    assert all(is_duis_response_code(code) for code in RESPONSE_CODES)
    for not_a_code in ("i0", " I0", "I0 ", "E6", "E999", "W1", "8F66", "N1", "", None, 0):
        assert not is_duis_response_code(not_a_code), not_a_code


def test_the_packaged_codes_round_trip_from_the_schema() -> None:
    root = ET.parse(DUIS_SCHEMA).getroot()  # the vendored copy, the shared one's twin
    response = root.find(f"{XS}simpleType[@name='ResponseCode']")
    assert enumeration(root, response) == RESPONSE_CODES
    assert listed_element(root, "DCCAlertCode") == DCC_ALERT_CODES  # DCCAlertMessage's
    assert listed_element(root, "FutureDatedAlertCode") == ("8F66", "8F67")
    srvs = root.find(f"{XS}simpleType[@name='ServiceReferenceVariant']")
    assert set(enumeration(root, srvs)) == set(CATALOGUE)  # so check_srv is the schema's rule


def test_the_generated_data_is_what_the_script_writes() -> None:
    """Meanings are edited in the script, which cites their sources, never in the data file."""
    spec = importlib.util.spec_from_file_location(
        "gen_response_codes", ROOT / "scripts" / "gen_response_codes.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.MEANINGS == MEANINGS


# --- meanings ----------------------------------------------------------------------------------


def test_every_known_meaning_of_the_reference_is_explained() -> None:
    for code, words in README_MEANINGS.items():
        assert code in MEANINGS, code
        text = explain_code(code).lower()
        assert all(word in text for word in words), (code, text)
        assert "its meaning is in" not in text


def test_the_reference_readme_lists_no_meaning_we_lack() -> None:
    text = " ".join(beside_the_checkout(REFERENCE_README).read_text().split())
    known = text[text.index("Response codes with known meanings") : text.index("The schema lists")]
    named = set(re.findall(r"\b([IE]\d+) ", known))
    assert named == set(README_MEANINGS)


def test_every_schema_code_is_explained_in_words() -> None:
    for code in RESPONSE_CODES:
        text = explain_code(code)
        assert text and text == " ".join(text.split()), code
        if code in MEANINGS:
            continue
        # no meaning is invented: the explanation says what the code is and where DUIS has it
        assert "DUIS" in text and "its meaning is in" in text, code
        word = {"I": "information", "W": "warning", "E": "error"}[code[0]]
        assert f"A DUIS {word}" in text, code
        reference = service_reference_of(code)
        if reference:
            assert f"Service Request {reference} " in text, code
            assert any(srv == reference or srv.startswith(reference + ".") for srv in CATALOGUE), (
                code
            )


def test_service_specific_codes_name_their_service_request() -> None:
    assert service_reference_of("E050101") == "5.1"
    assert service_reference_of("W110101") == "11.1"
    assert service_reference_of("E120207") == "12.2"
    assert (
        service_reference_of("E1000")
        == service_reference_of("E4")
        == service_reference_of("E999999")
        == ""
    )
    assert "Create Schedule" in explain_code("E050101")
    assert "Update Firmware" in explain_code("W110101")
    assert "Communications Hub Status Update" in explain_code("W081401")


def test_codes_are_classified_by_prefix_in_words() -> None:
    assert code_category("I0") == code_category("I99") == INFORMATION
    assert code_category("W050201") == WARNING
    assert code_category("E4") == code_category("E081406") == ERROR
    assert code_category("8F66") == code_category("8f35") == DEVICE_ALERT  # xs:hexBinary
    assert code_category("N12") == code_category("AD1") == DCC_ALERT
    assert code_category("X1") == code_category("") == code_category("E4 ") == UNKNOWN
    assert (
        CATEGORY_WORDS[INFORMATION].startswith("Information") and CATEGORY_WORDS[ERROR] == "Error"
    )


def test_alert_codes_are_explained_as_alerts() -> None:
    assert "successfully" in explain_code(
        "8F66"
    ) and "not carried out successfully" in explain_code("8F67")
    assert "GBCS" in explain_code("8F35") and "Device Alert" in explain_code("8F35")
    assert "DCC Alert" in explain_code("N12")
    # E100 is a DUIS error and also four hexadecimal digits: the record's kind decides
    assert code_category("E100") == ERROR and code_category("E100", "device_alert") == DEVICE_ALERT
    assert explain_code("E100", "device_alert") != explain_code("E100")
    assert code_category("N12", "device_alert") == UNKNOWN


def test_a_code_duis_does_not_define_is_said_to_be_so() -> None:
    assert explain_code("ZZ9") == "Not a response or alert code that DUIS defines"
    assert explain_code("") == ""


def test_the_legend_lists_every_code_once_grouped_by_prefix() -> None:
    groups = legend()
    assert [g.title[0] for g in groups[:3]] == ["I", "W", "E"]
    listed: list[str] = []
    for group in groups[:3]:
        in_group = [code for code, _ in group.explained] + list(group.general)
        in_group += [code for _, codes in group.by_service for code in codes]
        prefix = group.title[0]
        assert in_group and all(code.startswith(prefix) for code in in_group), group.title
        listed += in_group
    assert sorted(listed) == sorted(RESPONSE_CODES)
    errors = groups[2]
    assert dict(errors.explained)["E4"] == MEANINGS["E4"]
    assert any(name.startswith("5.1 Create Schedule") for name, _ in errors.by_service)
    alerts = groups[3]
    assert [code for code, _ in alerts.explained] == ["8F66", "8F67"] and "DCC Alert" in alerts.note


# --- validation --------------------------------------------------------------------------------


def test_valid_fields_pass_unchanged() -> None:
    assert check_srv("4.1.1") == "4.1.1" and check_srv("8.14.3") == "8.14.3"
    assert check_response_code("I99") == "I99" and check_response_code("E081406") == "E081406"
    assert all(check_srv(srv) == srv for srv in CATALOGUE)


@pytest.mark.parametrize("srv", ["9.9.9", "4.1", "4.1.1 ", "4.1.1.1", "SRV 4.1.1", *HOSTILE])
def test_a_bad_service_reference_variant_is_rejected_naming_the_field(srv) -> None:
    with pytest.raises(InvalidValue) as refused:
        check_srv(srv)
    assert_safe_reason(str(refused.value), "ServiceReferenceVariant", srv)


@pytest.mark.parametrize("code", ["i0", "E6", "I0 ", "E999", "8F66", "N1", *HOSTILE])
def test_a_bad_response_code_is_rejected_naming_the_field(code) -> None:
    with pytest.raises(InvalidValue) as refused:
        check_response_code(code)
    assert_safe_reason(str(refused.value), "ResponseCode", code)


def assert_safe_reason(reason: str, field: str, value: object) -> None:
    assert reason.startswith(f"{field} must be one of"), reason  # never starts with the value
    assert reason.isprintable() and len(reason) <= 200, (
        reason
    )  # one line, no control characters, bounded
    if isinstance(value, str) and value:
        assert repr(value)[:4] in reason, reason  # quoted as repr(), not raw
        if len(value) > 60:
            assert f"({len(value)} characters)" in reason


def test_shown_quotes_and_bounds_any_value() -> None:
    assert shown("E4") == "'E4'"
    assert shown("x" * 5000) == f"{'x' * 58!r}... (5000 characters)"
    assert shown("=HYPERLINK(1)").startswith("'=")
    assert (
        shown(None) == "nothing"
        and shown(7) == "a value of type int"
        and shown("") == "an empty value"
    )
    for value in HOSTILE:
        assert len(shown(value)) <= 90 and shown(value).isprintable()


def test_every_real_duis_message_passes_the_checks() -> None:
    """The DCC's own samples and the 297 request templates: nothing real is refused."""
    beside_the_checkout(SHARED / "duis")
    files = sorted((SHARED / "duis").glob("samples/*")) + sorted(
        (SHARED / "duis").glob("templates/**/*.XML")
    )
    checked = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for srv in re.findall(r"<(?:\w+:)?ServiceReferenceVariant>([^<]*)<", text):
            assert check_srv(srv) == srv, path.name
            checked += 1
        for code in re.findall(r"<(?:\w+:)?ResponseCode>([^<]*)<", text):
            assert check_response_code(code) == code, path.name
            checked += 1
    assert checked > 300
