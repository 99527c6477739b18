"""EUI-64s and Request IDs (SPEC section 2)."""

from __future__ import annotations

import pytest

from servicetrail.domain.ids import InvalidValue, RequestId, eui64, is_eui64


@pytest.mark.parametrize(
    "raw,shown",
    [
        ("90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-01-00-00"),
        ("90-b3-d5-1f-30-01-00-0a", "90-B3-D5-1F-30-01-00-0A"),
        ("90-b3-D5-1f-30-01-00-Ab", "90-B3-D5-1F-30-01-00-AB"),
        ("  00-db-12-34-56-78-90-a1\n", "00-DB-12-34-56-78-90-A1"),
    ],
)
def test_eui64_accepts_any_case_and_shows_upper(raw: str, shown: str) -> None:
    assert eui64(raw) == shown
    assert is_eui64(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "90B3D51F30010000",
        "90:B3:D5:1F:30:01:00:00",
        "90-B3-D5-1F-30-01-00",
        "90-B3-D5-1F-30-01-00-00-00",
        "90-B3-D5-1F-30-01-00-0G",
        "9-B3-D5-1F-30-01-00-00",
        "900-B3-D5-1F-30-01-00-00",
        "90-B3-D5-1F-30-01-00-00-",
        "90--B3-D5-1F-30-01-00-00",
        "90-B3-D5-1F-30-01-00-0\u0660",  # an Arabic-Indic digit is not a hex digit
        "90-B3-D5-1F-30-01-00-00\n90-B3-D5-1F-30-01-00-01",
    ],
)
def test_eui64_rejects_other_shapes(raw: str) -> None:
    with pytest.raises(InvalidValue, match="EUI-64"):
        eui64(raw)
    assert not is_eui64(raw)


@pytest.mark.parametrize("raw", [None, 9073, b"90-B3-D5-1F-30-01-00-00"])
def test_eui64_rejects_non_strings(raw: object) -> None:
    with pytest.raises(InvalidValue):
        eui64(raw)  # type: ignore[arg-type]
    assert not is_eui64(raw)  # type: ignore[arg-type]


def test_invalid_value_is_a_value_error() -> None:
    assert issubclass(InvalidValue, ValueError)


def test_request_id_parses_and_normalises() -> None:
    rid = RequestId.parse("90-b3-d5-1f-30-01-00-00:00-db-12-34-56-78-90-a1:1000")
    assert rid == RequestId("90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A1", "1000")
    assert str(rid) == "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1000"


def test_request_id_to_a_dcc_id_for_a_non_device_request() -> None:
    rid = RequestId.parse("90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:7")
    assert rid.target == "90-B3-D5-1F-30-00-00-02"


PAIR = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:"


def test_request_id_counter_follows_the_xsd() -> None:
    assert RequestId.parse(PAIR + "0").counter == "0"
    assert RequestId.parse(PAIR + str(2**64 - 1)).counter == "18446744073709551615"


@pytest.mark.parametrize(
    "counter", ["0007", "00", str(2**64), "9" * 20, "１２", "1_0", "+1", "1 2", "-1"]
)
def test_request_id_counter_out_of_the_xsd_is_refused(counter: str) -> None:
    with pytest.raises(InvalidValue, match="Request ID"):
        RequestId.parse(PAIR + counter)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "90-B3-D5-1F-30-01-00-00",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:12a",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:-1",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:" + "1" * 21,
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1:2",
        "NOT-AN-EUI:00-DB-12-34-56-78-90-A1:1",
        "90-B3-D5-1F-30-01-00-00:00DB1234567890A1:1",
    ],
)
def test_request_id_rejects_bad_shapes(raw: str) -> None:
    with pytest.raises(InvalidValue, match="Request ID"):
        RequestId.parse(raw)


def test_request_id_rejects_non_strings() -> None:
    with pytest.raises(InvalidValue):
        RequestId.parse(None)  # type: ignore[arg-type]
