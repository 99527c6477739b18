"""The access-log entry as pure data (SPEC section 8): its leaf bytes under §7's encoding, its
counts, and the bounds on what a caller may put in it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servicetrail.domain import merkle
from servicetrail.domain.access_log import (
    CUT,
    MAX_DEVICE_IDS,
    MAX_FILTER_NAME,
    MAX_FILTER_VALUE,
    AccessEntry,
    Reader,
    Tally,
    bounded_filters,
    entry_json,
    entry_time,
    leaf_data,
    log_month,
)

AT = datetime(2025, 3, 1, 9, 5, 7, 0, tzinfo=timezone.utc)


def entry(**changes) -> AccessEntry:
    fields = {
        "id": 42,
        "at": AT,
        "party_id": "NORTHPOWER",
        "actor": "zoë",
        "interface": "api",
        "action": "search",
        "filters": {"device_id": "00-db-12-34-56-78-90-01", "limit": "10"},
        "records_returned": 3,
        "mp141_records_returned": 2,
        "device_ids": ("00-DB-12-34-56-78-90-01",),
    }
    return AccessEntry(**{**fields, **changes})


def test_the_leaf_is_the_entrys_json_sorted_compact_utf8_with_microsecond_times():
    expected = (
        '{"action":"search","actor":"zoë","at":"2025-03-01T09:05:07.000000Z",'
        '"device_ids":["00-DB-12-34-56-78-90-01"],'
        '"filters":{"device_id":"00-db-12-34-56-78-90-01","limit":"10"},'
        '"id":42,"interface":"api","mp141_records_returned":2,"party_id":"NORTHPOWER",'
        '"records_returned":3}'
    ).encode()
    assert leaf_data(entry()) == expected
    assert json.loads(leaf_data(entry())) == entry_json(entry())
    # its log's leaf hash (store.access_writer) is RFC 9162's, as an independent verifier
    # computes it from those bytes
    assert merkle.leaf_hash(leaf_data(entry())) == hashlib.sha256(b"\x00" + expected).digest()


def test_every_field_is_in_the_leaf_so_an_edit_changes_it():
    base = leaf_data(entry())
    for change in (
        {"id": 43},
        {"at": AT + timedelta(microseconds=1)},
        {"party_id": None},
        {"actor": "mallory"},
        {"interface": "web"},
        {"action": "record"},
        {"filters": {}},
        {"records_returned": 4},
        {"mp141_records_returned": 1},
        {"device_ids": ()},
    ):
        assert leaf_data(entry(**change)) != base, change


def test_times_are_utc_whatever_zone_they_came_in():
    later = AT.astimezone(timezone(timedelta(hours=-5)))
    assert entry_json(entry(at=later))["at"] == "2025-03-01T09:05:07.000000Z"
    assert log_month(entry(at=datetime(2025, 12, 31, 23, 59, tzinfo=timezone.utc))) == "2025-12"


ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60 - 59, 23 * 60 + 59)
)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=ZONES))
def test_a_time_is_spelled_in_utc_with_every_digit_whatever_its_zone_and_year(at):
    # §7's form, fields by hand: entry_time spells it through isoformat (session 57), whose
    # padding of early years and of zero microseconds this pins
    utc = at.astimezone(timezone.utc)
    assert entry_time(at) == (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond:06d}Z"
    )


def test_the_tally_counts_mp141_records_and_caps_their_distinct_devices():
    tally = Tally()
    items = [{"access": "own", "device_id": "OWN-DEVICE"}]
    items += [
        {"access": "mp141", "device_id": f"00-DB-00-00-00-00-{n // 256:02X}-{n % 256:02X}"}
        for n in range(MAX_DEVICE_IDS + 50)
    ]
    items += [{"access": "mp141", "device_id": "00-DB-00-00-00-00-00-00"}]  # seen already
    items += [{"access": "mp141", "device_id": ""}]  # a non-device message
    tally.count(items)
    assert tally.records_returned == len(items)
    assert tally.mp141_records_returned == len(items) - 1
    assert len(tally.device_ids) == MAX_DEVICE_IDS
    assert "OWN-DEVICE" not in tally.device_ids and "" not in tally.device_ids


def test_filters_keep_numbers_and_drop_what_was_not_asked():
    assert bounded_filters({"limit": 5, "scope": "all", "kind": None, "flag": True}) == {
        "limit": 5,
        "scope": "all",
        "flag": True,
    }
    huge = bounded_filters({"n" * 500: 2**70})
    assert list(huge) == ["n" * MAX_FILTER_NAME] and huge["n" * MAX_FILTER_NAME] == str(2**70)


def test_a_long_value_keeps_both_of_its_ends_and_loses_surrounding_space():
    """What a search ignores (white space around a value) is not what the entry keeps, and a
    value still too long keeps its two ends: padding in its middle cannot hide either."""
    assert bounded_filters({"device_id": "\u3000 \t" * 300 + "00-DB-12" + " \n" * 300}) == {
        "device_id": "00-DB-12"
    }
    words = bounded_filters({"srv": "tariff" + " " * 2000 + "import"})["srv"]
    assert len(words) == MAX_FILTER_VALUE
    assert words.startswith("tariff ") and words.endswith(" import") and CUT in words
    exact = "x" * MAX_FILTER_VALUE
    assert bounded_filters({"v": exact}) == {"v": exact}


def test_a_reader_names_a_known_interface():
    assert Reader(None, "webhook", "webhook").party_id is None
    with pytest.raises(ValueError):
        Reader("P", "someone", "telnet")
