"""The pure parts of SPEC section 6's triggers: the window parameter and seconds_before."""

from __future__ import annotations

from datetime import timedelta

import pytest

from servicetrail.domain.ids import InvalidValue
from servicetrail.domain.times import parse_time
from servicetrail.domain.triggers import seconds_before, window_bounds, window_minutes
from servicetrail.domain.triggers import LINK_REQUEST_ID, LINK_SAME_DEVICE, possible_triggers

T = parse_time("2025-04-01T12:00:00Z")


@pytest.mark.parametrize(
    "value, minutes", [(None, 1440), ("", 1440), ("1", 1), ("10080", 10080), (60, 60)]
)
def test_window_minutes_takes_whole_minutes_in_range(value, minutes):
    assert window_minutes(value) == minutes


@pytest.mark.parametrize(
    "value", ["0", "10081", "abc", "١٠", "²", "-1", "+5", "1_0", "1.0", " 5", "9" * 30]
)
def test_window_minutes_refuses_anything_else(value):
    with pytest.raises(InvalidValue):
        window_minutes(value)


@pytest.mark.parametrize(
    "request_offset, expected",
    [
        (timedelta(0), 0),
        (timedelta(microseconds=1), 0),
        (timedelta(seconds=59, microseconds=999_999), 59),
        (timedelta(minutes=1), 60),
        (timedelta(seconds=-0.5), -1),
        (timedelta(microseconds=-1), -1),
        (timedelta(seconds=-1), -1),
        (timedelta(seconds=-2.5), -3),
    ],
)
def test_seconds_before_rounds_down_on_both_sides(request_offset, expected):
    assert seconds_before(T, T - request_offset) == expected


def test_window_bounds_include_both_ends_at_the_stores_resolution():
    start, end = window_bounds(T, 60)
    assert start == T - timedelta(hours=1)
    assert end == T + timedelta(microseconds=1)  # searches take `to` exclusive


def test_window_bounds_at_the_ends_of_time_do_not_overflow():
    first = parse_time("0001-01-01T00:10:00Z")
    assert window_bounds(first, 60)[0] == parse_time("0001-01-01T00:00:00Z")
    assert window_bounds(parse_time("9999-12-31T23:59:59.999999Z"), 1)[1] is None


# --- found missing by mutation testing (audit 29b) ----------------------------------------


def _item(id_, kind, request_id, at):
    return {"id": id_, "kind": kind, "request_id": request_id, "logged_at": at}


RECORD = _item(10, "response", "RQ-1", "2025-04-01T12:00:10Z")


def test_a_candidate_with_another_request_id_is_not_linked_by_request_id():
    """tr3: a request given among `by_request_id` with another Request ID is not linked by it
    (it may still come as a same-device trigger)."""
    other = _item(3, "request", "RQ-2", "2025-04-01T12:00:00Z")
    same = _item(4, "request", "RQ-1", "2025-04-01T12:00:05Z")
    shown, cut = possible_triggers(RECORD, [same, other], [other])
    assert [(t["record"]["id"], t["link"]) for t in shown] == [
        (4, LINK_REQUEST_ID),
        (3, LINK_SAME_DEVICE),
    ]
    assert cut is False


def test_only_requests_are_triggers():
    """tr7: a response or an alert handed in is never listed as a possible trigger."""
    alert = _item(5, "alert", "", "2025-04-01T12:00:01Z")
    response = _item(6, "response", "RQ-1", "2025-04-01T12:00:02Z")
    request = _item(7, "request", "RQ-1", "2025-04-01T12:00:03Z")
    shown, _ = possible_triggers(RECORD, [response, request], [alert, response, request])
    assert [(t["record"]["id"], t["link"], t["seconds_before"]) for t in shown] == [
        (7, LINK_REQUEST_ID, 7)
    ]


def test_a_request_whose_body_names_the_device_is_not_on_it():
    """SPEC 6 lists "the requests P may see on that Device"; a search by Device also finds
    P's own non-device requests whose body names it (4.1 subject_device_id, which never
    widens rule 3), and those were listed as `same_device` (audit 42a)."""
    record = {**RECORD, "device_id": "AA-00-00-00-00-00-00-01"}
    on_it = {
        **_item(3, "request", "RQ-2", "2025-04-01T12:00:00Z"),
        "device_id": record["device_id"],
    }
    naming_it = {
        **_item(4, "request", "RQ-3", "2025-04-01T12:00:05Z"),
        "device_id": "",
        "subject_device_id": record["device_id"],
    }
    shown, cut = possible_triggers(record, [], [naming_it, on_it])
    assert [(t["record"]["id"], t["link"]) for t in shown] == [(3, LINK_SAME_DEVICE)]
    assert cut is False
