"""Times: ISO-8601 with an offset in, UTC stored and shown."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .ids import InvalidValue, shown

UTC = timezone.utc
# A date alone is at most this long in any ISO-8601 form (`2025-03-01`, `2025-W09-6`), and a
# time with an offset is longer (`20250301T10Z`).
_LONGEST_DATE = 10
# Space, tab and line ends around a time are forgiven (a CSV cell, a form field); any other
# character outside printable ASCII is refused: Python's fromisoformat stops reading at a NUL
# and accepts whatever follows it, and no ISO-8601 time needs one.
_SURROUNDING_SPACE = " \t\r\n"
# fromisoformat also reads an offset with seconds (`+05:30:15`, applied as such), one after a
# space, and a decimal mark with no digit before `Z` (`10:00:09.Z`): none is ISO-8601's, and
# the first moves the instant by seconds nobody wrote (audit 44a)
_OFFSET_AT_END = re.compile(r"[0-9](?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)\Z")
# fromisoformat takes any one character between the date and the time (`2025-03-01Q10:00Z`,
# even a digit: `2025-03-01510:00:00Z` is 10:00); ISO-8601 writes a T, RFC 3339 allows a space
_DATE_THEN_T = re.compile(r"[0-9W-]+[Tt ]")
# ISO-8601's leap second, `23:59:60` (`235960` in the basic format): a valid time that no
# datetime holds, refused as what it is, not as "no ISO-8601 time" (audit 56f)
_LEAP_SECOND = re.compile(r"[Tt ][0-9]{2}(:?)[0-9]{2}\1(60)(?![0-9])")
# What to type, said after a refusal that names the standard: "not an ISO-8601 time: 'x'"
# left the reader to know what one looks like (one form of each, as FROM_WORDS gives them)
WRITE_A_TIME = (
    "Write a date, such as 2025-02-10, or a date and time with its UTC offset, such as "
    "2025-02-10T09:30:00Z"
)


def parse_time(value: str) -> datetime:
    """An ISO-8601 time with an offset (or a date alone, in any of ISO-8601's forms: calendar,
    basic or week, read as midnight UTC) as aware UTC.

    A time without an offset is refused: in GB it could be GMT or BST, an hour apart.
    """
    if not isinstance(value, str):  # 123 or a list was said to be an "empty time" (audit 29c)
        raise InvalidValue(f"a time is an ISO-8601 string, not {type(value).__name__}")
    text = value.strip(_SURROUNDING_SPACE)
    if len(text) > 40:
        # cut as every reason cuts a value, its length said: cut here with "..." alone, a
        # sentence's full stop after it read `'WWW…'....` (review of the screen, 47d)
        raise _not_a_time(value)
    if not text:
        raise InvalidValue("empty time")
    if not (text.isascii() and text.isprintable()):
        raise _not_a_time(value, " (printable ASCII only)")
    if len(text) <= _LONGEST_DATE:
        # every form fromisoformat reads as a day, not only YYYY-MM-DD: `2025-W01` and
        # `20250301` were told to add an offset, which made them no valid time either
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _not_a_time(value) from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    # the extended date's T at once; a basic or week date's looked for
    if text[10] not in "Tt " and not _DATE_THEN_T.match(text):
        raise _not_a_time(value, " (a T between its date and time)")
    try:
        parsed = datetime.fromisoformat(text if text[-1] != "z" else text[:-1] + "Z")
    except ValueError:
        if _LEAP_SECOND.search(text):
            raise InvalidValue(
                f"a leap second (second 60) cannot be stored: {shown(value)}"
            ) from None
        raise _not_a_time(value) from None
    if parsed.tzinfo is None:
        raise InvalidValue(f"time without a UTC offset (add Z or +01:00): {shown(value)}")
    # `Z` after a digit, most times, at once; else the end alone, the longest form (a digit
    # and +hh:mm) 7 characters: the whole text searched cost every ingested time 0.9 us
    if not (text[-1] in "Zz" and text[-2].isdigit()) and not _OFFSET_AT_END.search(text[-7:]):
        raise InvalidValue(
            f"not an ISO-8601 time (its offset is Z, +hh:mm, +hhmm or +hh, right after the "
            f"time's last digit): {shown(value)}"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is in year 10000 in UTC
        raise InvalidValue(f"time out of range: {shown(value)}") from None


def _not_a_time(value: str, why: str = "") -> InvalidValue:
    return InvalidValue(f"not an ISO-8601 time{why}: {shown(value)}. {WRITE_A_TIME}")


# the fraction of a second past its sixth digit, which fromisoformat drops
_PAST_MICROSECONDS = re.compile(r":[0-9]{2}[.,][0-9]{6}([0-9]+)")


def parse_bound(value: str) -> datetime:
    """A bound of a half-open range, `from` (inclusive) or `to` (exclusive), as parse_time
    reads it, but rounded up to the microsecond, the stored times' grain, when it falls
    between two: cut, `from=...00.4999991` took a record at .499999 and `to=...00.4999995`
    left it out (audit 26a). Rounded up, either bound parts the stored times where it should."""
    moment = parse_time(value)
    past = _PAST_MICROSECONDS.search(value)
    if past is None or not past.group(1).strip("0"):
        return moment
    try:
        return moment + timedelta(microseconds=1)
    except OverflowError:  # after the last instant of 9999: no stored time is past it
        raise InvalidValue(f"time out of range: {shown(value)}") from None


# What parse_bound takes, in words with examples of each bound's own, for the API's docs and
# the CLI's help alike: "ISO-8601 with offset" named a standard, not a form (review of the
# screen, 64d). A time without its offset is refused ("add Z or +01:00"): in GB it could be
# GMT or BST.
FROM_WORDS = (
    "inclusive: a date, such as 2025-02-10 (from its midnight UTC), or a date and time with "
    "its UTC offset, such as 2025-02-10T09:30:00Z or 2025-02-10T10:30:00+01:00"
)
TO_WORDS = (
    "exclusive: a date, such as 2025-02-11 (before its midnight UTC, so 2025-02-10 is the "
    "last day in), or a date and time with its UTC offset, such as 2025-02-10T17:00:00Z"
)


def fixed_time(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, every digit always there: the fixed width in
    which SQLite stores times (so that comparing the text orders them) and in which a
    Merkle leaf gives `logged_at` (SPEC section 7). isoformat pads years before 1000 to four
    digits, which strftime's %Y does not, and takes half its time."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("a naive time: times are UTC-aware everywhere")
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def compact_time(value: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ` in UTC, as a file name gives a time (strftime's %Y left years before
    1000 short: `9990101T000000Z`)."""
    utc = value.astimezone(UTC)
    return f"{utc.year:04d}{utc:%m%dT%H%M%S}Z"


def format_time(value: datetime) -> str:
    """UTC, `Z`-suffixed, microseconds only when there are some."""
    if value.utcoffset():  # naive times are UTC already, as are most aware ones
        value = value.astimezone(UTC)
    # isoformat pads the year to four digits and leaves out zero microseconds, as wanted,
    # in a quarter less time than strftime: this runs for every item of every page
    return value.replace(tzinfo=None).isoformat() + "Z"


def months_from(month: str, count: int) -> list[str]:
    """`count` months (`YYYY-MM`) from `month` on, itself first: the partitions' months of
    the access log and of the logs' leaves, named as their logs are."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1
    return [f"{(index + i) // 12:04d}-{(index + i) % 12 + 1:02d}" for i in range(count)]


def seconds_text(seconds: float) -> str:
    """A number of seconds as people read it: `10 s`, `0.5 s`, `0.00001 s`. A setting's
    fractional value was said `1e-05 s` (`:g` goes to an exponent below 10^-4 and past 10^6,
    audit 57h). To the microsecond, below which no wait here is measured."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    if text == "0" and seconds > 0:
        return "less than 0.000001 s"
    return f"{text} s"
