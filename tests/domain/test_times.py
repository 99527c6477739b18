"""Times: ISO-8601 with an offset in, UTC stored and shown (SPEC section 4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from servicetrail.domain.ids import InvalidValue
from servicetrail.domain.times import WRITE_A_TIME, format_time, parse_bound, parse_time

UTC = timezone.utc


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("2025-03-01T10:00:00Z", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("2025-03-01T10:00:00z", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("2025-03-01T10:00:00+00:00", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("2025-06-01T10:00:00+01:00", datetime(2025, 6, 1, 9, 0, tzinfo=UTC)),  # BST
        (
            "2025-06-01T00:30:00+01:00",
            datetime(2025, 5, 31, 23, 30, tzinfo=UTC),
        ),  # crosses midnight
        ("2025-01-01T00:00:00-05:30", datetime(2025, 1, 1, 5, 30, tzinfo=UTC)),
        ("2025-03-01T10:00:00.123456Z", datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("  2025-03-01T10:00:00Z  ", datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC)),  # a bare date is midnight UTC
    ],
)
def test_parse_time_gives_aware_utc(raw: str, expected: datetime) -> None:
    parsed = parse_time(raw)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("20250301", datetime(2025, 3, 1, tzinfo=UTC)),  # basic form
        ("2025-W09-6", datetime(2025, 3, 1, tzinfo=UTC)),  # week date: Saturday of week 9
        ("2025W096", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-W01", datetime(2024, 12, 30, tzinfo=UTC)),  # a week alone: its Monday
        ("2026-W53", datetime(2026, 12, 28, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_a_date_alone_in_any_iso_form_as_midnight_utc(
    raw: str, expected: datetime
) -> None:
    """`2025-W01` and `20250301` were told to add an offset, after which they were no valid
    time either: a date in another ISO-8601 form is read as `2025-03-01` is."""
    assert parse_time(raw) == expected
    assert parse_bound(raw) == expected


@pytest.mark.parametrize("raw", ["2025-W53", "2025-W01-8", "2025-0301", "2025-03-1", "2025-W01Z"])
def test_parse_time_refuses_what_only_looks_like_a_date(raw: str) -> None:
    with pytest.raises(InvalidValue, match="not an ISO-8601 time"):
        parse_time(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("W" * 61, "not an ISO-8601 time: 'WWW"),
        ("2025-03-01\x0b", "not an ISO-8601 time (printable ASCII only): '2025-03-01\\x0b'"),
        ("2025-13-01", "not an ISO-8601 time: '2025-13-01'"),
        ("2025-03-01Q10:00Z", "not an ISO-8601 time (a T between its date and time): '2025-"),
        ("2025-03-01T25:00Z", "not an ISO-8601 time: '2025-03-01T25:00Z'"),
    ],
    ids=("too-long", "a-control-character", "no-such-day", "no-T", "no-such-hour"),
)
def test_a_refusal_naming_the_standard_says_what_to_type(raw: str, reason: str) -> None:
    """ "not an ISO-8601 time: 'x'" left the reader to know what one looks like: each such
    refusal keeps its reason and ends with an example of a date and of a time."""
    with pytest.raises(InvalidValue) as refused:
        parse_time(raw)
    said = str(refused.value)
    assert said.startswith(reason), said
    assert said.endswith(
        "'. Write a date, such as 2025-02-10, or a date and time with its UTC offset, such as "
        "2025-02-10T09:30:00Z"
    ) or said.endswith(
        " characters). Write a date, such as 2025-02-10, or a date and time with its UTC "
        "offset, such as 2025-02-10T09:30:00Z"
    ), said


@pytest.mark.parametrize("raw", ["2025-03-01T10:00:00", "2025-03-01T10:00", "2025-03-01 10:00:00"])
def test_parse_time_refuses_a_time_without_offset(raw: str) -> None:
    with pytest.raises(InvalidValue, match="offset"):
        parse_time(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-02-30",
        "2025-03-01T25:00:00Z",
        "2025-03-01T10:00:00+25:00",
        "1740823200",
    ],
)
def test_parse_time_rejects_what_is_not_a_time(raw: str) -> None:
    with pytest.raises(InvalidValue):
        parse_time(raw)


@pytest.mark.parametrize(
    "raw", ["2025-03-01T10:00:00+14:00", "2025-03-01T10:00:00-12:00", "2025-03-01T10:00:00+21:03"]
)
def test_parse_time_reads_any_offset_rfc_3339_allows_as_its_instant(raw: str) -> None:
    """The API declares its bounds RFC 3339 date-times, whose offsets run to +-23:59; refused
    past +-14:00 (as a DUIS time is, by its schema), schema-valid searches were 422 (session
    35's fuzzing). The instant is the same whatever the offset says."""
    assert parse_time(raw) == datetime.fromisoformat(raw).astimezone(UTC)


@pytest.mark.parametrize(
    "raw",
    [
        "2025-03-10T10:00:11+05:30:15",  # seconds in the offset, applied as such
        "2025-03-10T10:00:11+05:30:15.5",
        "2025-03-10T10:00:09.Z",  # a decimal mark and no digit
        "2025-03-30T01:30:00 +01:00",  # a space before the offset
        "2025-03-30T01:30:00 Z",
    ],
)
def test_parse_time_refuses_offsets_iso_8601_does_not_write(raw: str) -> None:
    """Python's fromisoformat reads all of these (audit 44a); ISO-8601 writes none."""
    with pytest.raises(InvalidValue, match="offset is Z"):
        parse_time(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "2025-03-10T10:00+05",
        "2025-03-10T10Z",
        "20250310T100000Z",
        "2025-03-10T10:00:00+0530",
        "2025-03-10T10:00:09,5Z",
        "2025-03-10 10:00:00Z",
        "2025-W10-1T10:00Z",
        "2025-03-10T10:00:00.123456789-00:00",
    ],
)
def test_parse_time_reads_the_offsets_iso_8601_writes(raw: str) -> None:
    assert parse_time(raw) == datetime.fromisoformat(raw).astimezone(UTC)


@pytest.mark.parametrize(
    "raw",
    ["2025-03-01Q10:00:00Z", "20250301Q100000Z", "2025-W10-1Q10:00Z", "2025-03-01510:00:00Z"],
)
def test_parse_time_refuses_anything_but_a_t_or_space_between_date_and_time(raw: str) -> None:
    """Python's fromisoformat reads each of these as a time (audit 50f), a digit too."""
    with pytest.raises(InvalidValue, match="a T between"):
        parse_time(raw)


@pytest.mark.parametrize("raw", [None, 1740823200, datetime(2025, 3, 1, tzinfo=UTC)])
def test_parse_time_rejects_non_strings(raw: object) -> None:
    with pytest.raises(InvalidValue):
        parse_time(raw)  # type: ignore[arg-type]


def test_format_time_is_utc_with_z() -> None:
    assert format_time(datetime(2025, 3, 1, 10, 0, tzinfo=UTC)) == "2025-03-01T10:00:00Z"
    bst = timezone(timedelta(hours=1))
    assert format_time(datetime(2025, 6, 1, 10, 0, tzinfo=bst)) == "2025-06-01T09:00:00Z"
    assert (
        format_time(datetime(2025, 3, 1, 10, 0, 0, 5, tzinfo=UTC)) == "2025-03-01T10:00:00.000005Z"
    )


def test_format_time_reads_a_naive_time_as_utc() -> None:
    assert format_time(datetime(2025, 3, 1, 10, 0)) == "2025-03-01T10:00:00Z"


@pytest.mark.parametrize(
    "text", ["2025-03-01T10:00:00Z", "2025-03-01T10:00:00.000001Z", "2024-02-29T23:59:59.999999Z"]
)
def test_format_and_parse_round_trip(text: str) -> None:
    assert format_time(parse_time(text)) == text


@pytest.mark.parametrize("raw", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_a_time_outside_the_calendar_once_in_utc_is_invalid_not_a_crash(raw: str) -> None:
    with pytest.raises(InvalidValue, match="out of range"):
        parse_time(raw)


def test_years_before_1000_are_zero_padded_and_round_trip() -> None:
    early = datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert format_time(early) == "0999-01-02T03:04:05Z"
    assert parse_time(format_time(early)) == early
    assert format_time(datetime(1, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) == "0001-01-01T00:00:00.000007Z"


def test_a_very_long_time_is_refused_without_echoing_it_all() -> None:
    with pytest.raises(InvalidValue) as raised:
        parse_time("2025-03-01T10:00:00Z" + " " * 10 + "x" * 10_000)
    # the reason and its quote; the example of what to type after it is of a fixed length
    assert len(str(raised.value).removesuffix(WRITE_A_TIME)) < 200


@pytest.mark.parametrize(
    "raw",
    [
        "2025-03-01T10:00:00Z\x00garbage",  # fromisoformat stops reading at a NUL
        "2025-03-01T10:00:00Z\x00",
        "2025-03-01\x00",
        "\x0b2025-03-01T10:00:00Z",  # a vertical tab, which str.strip() would have taken away
        "\u30002025-03-01T10:00:00Z",  # an ideographic space, likewise
        "2025-03-01T10:00:00Z\u2028",
        "2025-03-01T10:00:00\u00a0Z",
        "\u0662\u0660\u0662\u0665-\u0660\u0663-\u0660\u0661",  # Arabic-Indic digits
    ],
)
def test_parse_time_refuses_control_and_non_ascii_characters(raw: str) -> None:
    with pytest.raises(InvalidValue, match="ISO-8601"):
        parse_time(raw)


def test_parse_time_still_forgives_spaces_tabs_and_line_ends_around_a_time() -> None:
    assert parse_time("\t2025-03-01T10:00:00Z\r\n") == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2025-06-15T12:00:00.4999991Z", datetime(2025, 6, 15, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2025-06-15T12:00:00.4999995+01:00", datetime(2025, 6, 15, 11, 0, 0, 500000, tzinfo=UTC)),
        ("2025-06-15T12:00:00.0000001Z", datetime(2025, 6, 15, 12, 0, 0, 1, tzinfo=UTC)),
        ("2025-06-15T12:00:00.4999990000Z", datetime(2025, 6, 15, 12, 0, 0, 499999, tzinfo=UTC)),
        ("2025-06-15T12:00:00.499999Z", datetime(2025, 6, 15, 12, 0, 0, 499999, tzinfo=UTC)),
        ("2025-06-15T12:00:00Z", datetime(2025, 6, 15, 12, 0, tzinfo=UTC)),
        ("2025-06-15", datetime(2025, 6, 15, tzinfo=UTC)),
    ],
)
def test_a_bound_between_two_microseconds_is_rounded_up_not_cut(raw, expected) -> None:
    """Cut to the microsecond, `from=...00.4999991` took a record at .499999 (before it), and
    `to=...00.4999995` left it out (audit 26a): rounded up, a bound parts the stored times,
    whose grain is the microsecond, where it should."""
    assert parse_bound(raw) == expected


def test_a_bound_past_the_last_microsecond_is_out_of_range() -> None:
    with pytest.raises(InvalidValue, match="out of range"):
        parse_bound("9999-12-31T23:59:59.9999991Z")


@pytest.mark.parametrize("raw", ["2016-12-31T23:59:60Z", "2015-07-01T00:59:60.5+01:00"])
def test_a_leap_second_is_refused_as_one_not_as_no_iso_8601_time(raw: str) -> None:
    """ISO-8601 writes a leap second as second 60, and a DCC log may hold one: the reason
    says why it is refused (no stored time holds it), not that the text is no time at all."""
    with pytest.raises(InvalidValue, match=r"leap second") as refused:
        parse_time(raw)
    assert "not an ISO-8601 time" not in str(refused.value)
