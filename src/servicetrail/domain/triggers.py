"""Possible triggers of a record (SPEC section 6): which visible requests could have caused it.

Pure: the store reads the candidate requests through the rule; this module decides their
order, their link and how long before the record each was logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from .ids import InvalidValue, whole_number
from .times import parse_time

DEFAULT_WINDOW_MINUTES = 1440
MAX_WINDOW_MINUTES = 10080  # a week
# A busy Device can take thousands of requests in a week: the list is cut to the newest
# this many (the request sharing the Request ID always among them), so that one call has a
# bounded cost and a bounded answer. A cut list says so (the API's Link header, the CLI's
# note, the page's), and where the older requests are: one records search away. Another
# User flooding a Device with requests must not push the one that mattered out unseen.
MAX_TRIGGERS = 1000

LINK_REQUEST_ID = "request_id"
LINK_SAME_DEVICE = "same_device"
ONE_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_PER_SECOND = 1_000_000


def window_minutes(value: str | int | None) -> int:
    """The `window` parameter: whole minutes, 1..10080, in ASCII digits (default 1440)."""
    if value is None or value == "":
        return DEFAULT_WINDOW_MINUTES
    try:
        minutes = value if isinstance(value, int) else whole_number(value)
    except InvalidValue:
        raise InvalidValue(
            f"must be a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}, "
            f"in the digits 0-9: {str(value)[:40]!r}"
        ) from None
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise InvalidValue(f"must be from 1 to {MAX_WINDOW_MINUTES} minutes: {minutes}")
    return minutes


def window_bounds(logged_at: datetime, minutes: int) -> tuple[datetime, datetime | None]:
    """[logged_at - window, logged_at] as the half-open range searches take: from inclusive,
    to exclusive one microsecond (the store's resolution on both engines) after the record.
    None: no upper bound (a record logged at the last representable instant)."""
    try:
        start = logged_at - timedelta(minutes=minutes)
    except OverflowError:  # a record logged in the first week of year 1
        start = datetime.min.replace(tzinfo=logged_at.tzinfo)
    try:
        end: datetime | None = logged_at + ONE_MICROSECOND
    except OverflowError:
        end = None
    return start, end


def seconds_before(record_at: datetime, request_at: datetime) -> int:
    """Whole seconds from the request to the record, rounded down (SPEC section 6), on both
    sides of zero.

    Only a request linked by its Request ID can be logged after the record (a clock
    difference between the DCC's logs, or a CV 5-7 command signed after its CV 4
    pre-command). Its value is then negative: 2.5 seconds after is -3, and any time less
    than a second after is -1, so that 0 always means "at most a second before"."""
    micro = (record_at - request_at) // ONE_MICROSECOND
    return micro // _MICROSECONDS_PER_SECOND


def _time_of(entry: dict[str, Any]) -> datetime:
    return parse_time(entry["logged_at"])


def possible_triggers(
    record: dict[str, Any],
    by_request_id: Iterable[dict[str, Any]],
    on_device: Iterable[dict[str, Any]],
    limit: int = MAX_TRIGGERS,
) -> tuple[list[dict[str, Any]], bool]:
    """The triggers of `record` (an item), from requests already filtered by the rule:
    those sharing its Request ID first, then the others on its Device (its `device_id`),
    each group newest first as given; never the record itself, no request twice, at most
    `limit`. And whether the candidates held one more that the limit left out."""
    record_at = _time_of(record)
    shown: list[dict[str, Any]] = []
    seen = {record["id"]}
    for link, candidates in ((LINK_REQUEST_ID, by_request_id), (LINK_SAME_DEVICE, on_device)):
        for candidate in candidates:
            if candidate["id"] in seen or candidate["kind"] != "request":
                continue
            if link == LINK_REQUEST_ID and candidate["request_id"] != record["request_id"]:
                continue
            # "on that Device": not one's own non-device requests whose body names it (SPEC
            # 4.1 subject_device_id), which are on no Device (the store's read leaves them out)
            if link == LINK_SAME_DEVICE and candidate.get("device_id") != record.get("device_id"):
                continue
            if len(shown) >= limit:
                return shown, True
            seen.add(candidate["id"])
            shown.append(
                {
                    "record": candidate,
                    "seconds_before": seconds_before(record_at, _time_of(candidate)),
                    "link": link,
                }
            )
    return shown, False
