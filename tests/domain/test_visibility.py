"""The MP141 rule in Python (SPEC section 3), record by record, and the interval arithmetic it
uses."""

from __future__ import annotations

from datetime import timedelta

import pytest

from servicetrail.domain.model import Kind, Responsibility, SatRecord, role_behaviour, role_name
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Access, Scope, Viewer, decide, in_scope, is_own

ME_IS = "90-B3-D5-1F-30-01-00-01"
ME_GS = "90-B3-D5-1F-30-01-00-02"
THEM = "90-B3-D5-1F-30-02-00-01"
METER = "00-DB-12-34-56-78-90-01"
OTHER_METER = "00-DB-12-34-56-78-90-02"
DCC = "90-B3-D5-1F-30-00-00-02"
JAN = parse_time("2025-01-01T00:00:00Z")
MAR = parse_time("2025-03-01T00:00:00Z")
US = Viewer("ME", frozenset({ME_IS, ME_GS}))
US_SUPPLIER = Responsibility(METER, "ME", "supplier", JAN, MAR)
US_NO_OPEN = Responsibility(METER, "ME", "network_operator", MAR, None)
MICRO = timedelta(microseconds=1)


def rec(
    kind: str = "request", user: str = THEM, device: str = METER, at=None, payload: str = "<p>"
) -> SatRecord:
    srv = "" if kind in ("device_alert", "dcc_alert") else "4.1.1"
    return SatRecord(
        at or parse_time("2025-02-01T00:00:00Z"),
        kind,
        f"{user}:{device or DCC}:1",
        srv,
        user,
        device,
        "" if kind == "request" else "I0",
        payload,
    )


# --- Responsibility.covers / overlaps -------------------------------------------------------


def test_covers_is_half_open() -> None:
    assert US_SUPPLIER.covers(JAN)
    assert US_SUPPLIER.covers(MAR - MICRO)
    assert not US_SUPPLIER.covers(MAR)
    assert not US_SUPPLIER.covers(JAN - MICRO)


def test_an_open_interval_covers_everything_after_its_start() -> None:
    assert US_NO_OPEN.covers(MAR)
    assert US_NO_OPEN.covers(parse_time("2999-01-01"))
    assert not US_NO_OPEN.covers(MAR - MICRO)


def _iv(start: str, end: str | None) -> Responsibility:
    return Responsibility(
        METER, "X", "supplier", parse_time(start), parse_time(end) if end else None
    )


@pytest.mark.parametrize(
    "a,b,overlap",
    [
        (
            _iv("2025-01-01", "2025-03-01"),
            _iv("2025-03-01", None),
            False,
        ),  # adjacent: the change of supplier
        (_iv("2025-01-01", "2025-03-01"), _iv("2025-03-01", "2025-04-01"), False),
        (_iv("2025-01-01", "2025-03-01"), _iv("2025-02-28", "2025-04-01"), True),
        (_iv("2025-01-01", "2025-03-01"), _iv("2025-01-15", "2025-02-01"), True),  # inside
        (_iv("2025-01-01", "2025-03-01"), _iv("2024-01-01", None), True),  # open, from before
        (_iv("2025-01-01", None), _iv("2025-06-01", None), True),  # two open ends
        (_iv("2025-01-01", "2025-02-01"), _iv("2025-03-01", None), False),  # a gap between
        (_iv("2025-01-01", "2025-03-01"), _iv("2025-01-01", "2025-03-01"), True),  # identical
    ],
)
def test_overlaps_is_symmetric_and_respects_half_open_ends(
    a: Responsibility, b: Responsibility, overlap: bool
) -> None:
    assert a.overlaps(b) is overlap
    assert b.overlaps(a) is overlap


def test_describe() -> None:
    assert US_SUPPLIER.describe() == "2025-01-01 to 2025-03-01"
    assert US_NO_OPEN.describe() == "2025-03-01 to now (open)"
    # an interval that turns within a day (a change of supplier at 01:00) says when
    at_one = Responsibility(
        "00-00-00-00-00-00-00-01",
        "SUPA",
        "supplier",
        parse_time("2025-01-01T00:00:00Z"),
        parse_time("2025-03-30T02:00:00+01:00"),
    )
    assert at_one.describe() == "2025-01-01 to 2025-03-30 01:00:00 UTC"
    early = Responsibility(  # strftime's %Y left years before 1000 short ("999-01-01")
        "00-00-00-00-00-00-00-01",
        "SUPA",
        "supplier",
        parse_time("0999-01-01T00:00:00Z"),
        parse_time("0001-01-01T00:00:01Z"),
    )
    assert early.describe() == "0999-01-01 to 0001-01-01 00:00:01 UTC"


# --- rule 1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k.value for k in Kind])
@pytest.mark.parametrize("user", [ME_IS, ME_GS])
def test_rule1_own_traffic_of_any_kind_and_any_of_our_user_ids(kind: str, user: str) -> None:
    record = rec(kind, user=user, device=OTHER_METER)  # no responsibility needed
    assert is_own(US, record)
    d = decide(US, record, [])
    assert (d.access, d.rule, d.interval, d.visible) == (Access.OWN, 1, None, True)
    assert d.badge() == "own"


def test_rule1_wins_over_rule3() -> None:
    d = decide(US, rec(user=ME_IS), [US_SUPPLIER])
    assert (d.access, d.rule) == (Access.OWN, 1)


# --- rule 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["device_alert", "dcc_alert"])
def test_rule2_another_users_alert_is_hidden_even_from_the_responsible_supplier(kind: str) -> None:
    d = decide(US, rec(kind), [US_SUPPLIER])
    assert (d.access, d.rule, d.visible) == (None, 2, False)
    assert d.badge() == ""


# --- rule 3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["request", "acknowledgement", "response"])
def test_rule3_titles_for_the_responsible_party_at_the_records_time(kind: str) -> None:
    d = decide(US, rec(kind), [US_SUPPLIER])
    assert (d.access, d.rule, d.interval) == (Access.MP141, 3, US_SUPPLIER)
    assert "Responsible Supplier" in d.reason and METER in d.reason
    assert d.badge() == "visible as Responsible Supplier, 2025-01-01 to 2025-03-01"


def test_rule3_network_operator() -> None:
    d = decide(US, rec(at=parse_time("2025-05-01T00:00:00Z")), [US_SUPPLIER, US_NO_OPEN])
    assert (d.access, d.interval) == (Access.MP141, US_NO_OPEN)
    assert d.badge() == "visible as Network Operator, 2025-03-01 to now (open)"


@pytest.mark.parametrize(
    "at,access",
    [
        (JAN - MICRO, None),
        (JAN, Access.MP141),  # valid_from inclusive
        (MAR - MICRO, Access.MP141),
        (MAR, None),  # valid_to exclusive
    ],
)
def test_rule3_boundaries(at, access) -> None:
    assert decide(US, rec(at=at), [US_SUPPLIER]).access is access


def test_rule3_adjacent_intervals_of_the_same_party_hand_over_at_the_boundary() -> None:
    d = decide(US, rec(at=MAR), [US_SUPPLIER, US_NO_OPEN])
    assert d.interval == US_NO_OPEN
    d = decide(US, rec(at=MAR - MICRO), [US_SUPPLIER, US_NO_OPEN])
    assert d.interval == US_SUPPLIER


def test_rule3_ignores_other_parties_and_other_devices_intervals() -> None:
    theirs = Responsibility(METER, "THEM", "supplier", JAN, None)
    other_device = Responsibility(OTHER_METER, "ME", "supplier", JAN, None)
    d = decide(US, rec(), [theirs, other_device])
    assert (d.access, d.rule) == (None, 4)


def test_rule3_never_applies_to_a_non_device_request() -> None:
    # even a (nonsensical) interval on an empty device id grants nothing
    empty = Responsibility("", "ME", "supplier", JAN, None)
    d = decide(US, rec(device=""), [empty, US_SUPPLIER])
    assert (d.access, d.rule) == (None, 4)


def test_rule3_consults_the_registry_not_the_viewers_roles() -> None:
    """A Viewer is a Party and its User IDs: no role enters the decision, and a Party without
    User IDs (or with roles that could never send the SRV) is still granted by the registry."""
    d = decide(Viewer("ME", frozenset()), rec(), [US_SUPPLIER])
    assert (d.access, d.rule) == (Access.MP141, 3)


# --- rule 4 ---------------------------------------------------------------------------------


def test_rule4_everything_else() -> None:
    d = decide(US, rec(), [])
    assert (d.access, d.rule, d.visible, d.interval) == (None, 4, False, None)


# --- roles and scope ------------------------------------------------------------------------


def test_unknown_future_roles_behave_like_other_user() -> None:
    assert role_behaviour("XR") == "OU"
    assert role_behaviour("RSA") == "RSA"
    assert "Other User" in role_name("XR") and "XR" in role_name("XR")
    assert role_name("ED") == "Electricity Distributor"


@pytest.mark.parametrize(
    "access,scope,shown",
    [
        (Access.OWN, Scope.ALL, True),
        (Access.MP141, Scope.ALL, True),
        (Access.OWN, Scope.OWN, True),
        (Access.MP141, Scope.OWN, False),
        (Access.OWN, Scope.OTHERS, False),
        (Access.MP141, Scope.OTHERS, True),
    ],
)
def test_in_scope(access: Access, scope: Scope, shown: bool) -> None:
    assert in_scope(access, scope) is shown
