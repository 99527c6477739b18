"""A record page's exchange, cut by the change of supplier (SPEC 3: each message judged at its
own time), says why: LOOKER's request to ESME-1 at 23:59:59.999999 and its acknowledgement
fall to NORTHPOWER, its response at 00:00:00 to SOUTHENERGY, and each saw part of the
exchange with no word of the rest (audit 57f)."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest

from servicetrail.domain.model import Responsibility, SatRecord
from servicetrail.web.exchange_edges import exchange_edges, held_span
from tests import personas as P
from tests.web.screen import personas_with, signed_in

BEFORE = "No request is listed: you were responsible for this Device from 2025-03-01 00:00:00.000"
AFTER = "No response is listed: you were responsible for this Device until 2025-03-01 00:00:00.000"


# an alert to LOOKER (an Other User, no Device's supplier or network operator) on ESME-1
LK_ALERT = SatRecord(
    P.t("2025-03-10T12:00:00Z"), "device_alert", P._rid(P.ESME_1, P.LK_OU, 9), "", P.LK_OU,
    P.ESME_1, "8F35", "<lk alert>",
)  # fmt: skip
UNHELD = "You were not this Device’s Responsible Supplier or Network Operator in that window"


@pytest.fixture
@P.starts_with_personas
def world(engine):
    parties = (P.NORTHPOWER, P.SOUTHENERGY, P.WIRESCO, P.LOOKER)
    return personas_with(engine, {"lk_alert": LK_ALERT}, parties)


def test_each_supplier_is_told_where_its_part_of_a_split_exchange_ends(engine, world) -> None:
    new, old = signed_in(engine, P.SOUTHENERGY), signed_in(engine, P.NORTHPOWER)
    response = new.get(f"/records/{world.ids['lk_cos_resp']}").text
    assert BEFORE in response and AFTER not in response
    request = old.get(f"/records/{world.ids['lk_cos_req']}").text
    assert AFTER in request and BEFORE not in request
    # the Network Operator holds ESME-1 throughout and sees the whole exchange: nothing to say
    whole = signed_in(engine, P.WIRESCO).get(f"/records/{world.ids['lk_cos_resp']}").text
    assert "is listed: you were responsible" not in whole
    # its own traffic is shown whatever the registry says: nothing to say either
    own = old.get(f"/records/{world.ids['np_late_req']}").text
    assert "is listed: you were responsible" not in own


def test_an_alert_on_a_device_not_held_says_whose_requests_its_triggers_can_list(
    engine, world
) -> None:
    """An Other User's alert listed no possible trigger, with SUNEXPORT's request to the
    Device two hours before it, and no word that another User's are not its to see (audit
    57f, as an agent); the Device's supplier, told nothing, sees that request."""
    other = signed_in(engine, P.LOOKER).get(f"/records/{world.ids['lk_alert']}").text
    assert UNHELD in unescape(other)
    supplier = signed_in(engine, P.SOUTHENERGY).get(f"/records/{world.ids['se_device_alert']}")
    assert UNHELD not in unescape(supplier.text)


at = P.t  # a time from its ISO text


def test_the_held_stretch_joins_touching_intervals_and_is_none_outside_them() -> None:
    d = P.ESME_1
    supplier = Responsibility(
        d, "X", "supplier", at("2025-01-01T00:00:00Z"), at("2025-03-01T00:00:00Z")
    )
    operator = Responsibility(d, "X", "network_operator", at("2025-03-01T00:00:00Z"), None)
    later = Responsibility(
        d, "X", "supplier", at("2025-06-01T00:00:00Z"), at("2025-07-01T00:00:00Z")
    )
    joined = (at("2025-01-01T00:00:00Z"), None)
    assert held_span([operator, supplier], at("2025-02-01T00:00:00Z")) == joined
    assert held_span([supplier], at("2025-03-01T00:00:00Z")) is None  # the end is excluded
    alone = (at("2025-06-01T00:00:00Z"), at("2025-07-01T00:00:00Z"))
    assert held_span([supplier, later], at("2025-06-15T00:00:00Z")) == alone


def test_an_edge_further_off_than_a_week_or_a_cut_exchange_says_nothing() -> None:
    start = at("2025-03-01T00:00:00Z")
    held = [Responsibility(P.ESME_1, "X", "supplier", start, None)]
    late = start + timedelta(days=8)
    response = {"access": "mp141", "kind": "response", "logged_at": late.isoformat()}
    assert exchange_edges(held, response, [response]) == []
    near = {**response, "logged_at": (start + timedelta(days=6)).isoformat()}
    assert exchange_edges(held, near, [near])[0].startswith("No request is listed")
    assert exchange_edges(held, near, [near], cut=True) == []  # its request may be cut off
