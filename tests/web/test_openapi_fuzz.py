"""Schemathesis over /openapi.json: generated requests, valid and not, never get a 5xx and every
response matches the documented schema.

Driven through each operation's Hypothesis strategy (schemathesis's own pytest plugin does
not run under pytest 9)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import update
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth

from servicetrail.domain.ids import stacked_marks
from servicetrail.domain.search import hidden_past_the_bmp
from servicetrail.domain.watches import watch_spec
from servicetrail.store.accounts import create_account, create_token
from servicetrail.store.watch_tables import webhook_outbox
from servicetrail.store.watches import create_watch
from servicetrail.web.app import create_app
from servicetrail.webhooks.signing import new_secret
from tests import personas as P
from tests.live_server import PATIENCE
from tests.web.test_api_watches import ingest_and_match, lk_request

OPERATIONS = [
    "GET /api/v1/records",
    "GET /api/v1/records/{record_id}",
    "GET /api/v1/records/{record_id}/why",
    "GET /api/v1/reports/own.csv",
    "GET /api/v1/records/{record_id}/triggers",
    "GET /api/v1/records/{record_id}/proof",
    "GET /api/v1/logs",
    "GET /api/v1/logs/consistency",
    "GET /api/v1/access-log",
    "POST /api/v1/watches",  # its body's schema named a definition the document did not hold
    "GET /api/v1/watches",
    "GET /api/v1/watches/{watch_id}",
    "GET /api/v1/watches/{watch_id}/webhook",
    "GET /api/v1/watches/{watch_id}/events",
]


@pytest.fixture
@P.starts_with_personas
def api(engine):
    P.load_personas(engine)
    with engine.begin() as conn:
        create_account(conn, "fuzzer", P.SOUTHENERGY, "correct horse battery staple")
        token = create_token(conn, "fuzzer")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(engine))
    # schemathesis's 10 s a request (in process) was passed at load 15 by a 404 for an id not
    # in digits, which takes 8 ms median and 55 ms the most of 200 at load 11 (61g): the load
    schema.config.update(request_timeout=PATIENCE)
    return schema, token


def some_watches(engine) -> None:
    """Watches 1 and 2 the fuzzer's Party's (the first's webhook failing), each with events,
    and 3 another Party's: the small ids a watch id's strategy draws (1, its minimum, most)
    find each kind of answer, not only the 404 of a missing watch."""
    with engine.begin() as conn:
        hooked = {"name": "hooked", "webhook": {"url": "https://hooks.example/x"}}
        create_watch(conn, P.SOUTHENERGY, watch_spec(hooked), new_secret())
        create_watch(conn, P.SOUTHENERGY, watch_spec({"name": "plain"}), None)
        create_watch(conn, P.NORTHPOWER, watch_spec({"name": "theirs"}), None)
    ingest_and_match(engine, lk_request(1), lk_request(2))
    with engine.begin() as conn:
        conn.execute(update(webhook_outbox).values(attempts=3, last_error="answered 503"))


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_never_errors_and_matches_its_schema(api, engine, label):
    schema, token = api
    operations = {op.ok().label: op.ok() for op in schema.get_all_operations()}
    assert set(OPERATIONS) <= set(operations), sorted(operations)
    if label.startswith("GET /api/v1/watches"):
        some_watches(engine)
    # ignored_auth (is the example sent again without the token, and with a wrong one, refused?)
    # until an answered example has shown it: the token is checked before any parameter is
    # read (web.api), and schemathesis's own runner asks it once an operation for that reason.
    # Asked of every answered example (two more requests each) it was a fifth of the CPU here.
    refuses_without_token: list[bool] = []

    @given(case=operations[label].as_strategy())
    @settings(
        max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def fuzz(case):
        # Rules OpenAPI cannot state: a cursor is opaque (only the server knows which strings it
        # issued), `to` must come after `from` and a consistency proof's `to` be a checkpointed
        # size, and no parameter may hold a NUL (the API's description says so). Such requests
        # may be refused with a 422. Nor can it say that a time, once in UTC, must fall in
        # years 1 to 9999 (`0001-01-01T00:00:00+00:01` is a valid date-time in year 0), nor
        # that a whole number is in the digits 0-9: JSON Schema's integers include `60.0`, which
        # schemathesis draws for one of several alternatives (`limit`'s "" beside it). Nor, in
        # `srv`, more than four combining marks on a character, or an invisible character past
        # U+FFFF (a pattern may be read in UTF-16 code units).
        query = case.query or {}
        beyond_schema = (
            case.method == "POST"  # a watch's printable name, EUI-64s, SRVs and a safe URL
            or query.get("cursor")
            or ("from" in query and "to" in query)
            or any("\x00" in str(value) for value in query.values())
            or any(isinstance(value, float) for value in query.values())
            or any(_outside_utc_years(query.get(bound)) for bound in ("from", "to"))
            or _srv_beyond_pattern(query.get("srv"))
        )
        excluded = [positive_data_acceptance] if beyond_schema else []
        if refuses_without_token:
            excluded.append(ignored_auth)
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded
        )
        # ignored_auth sends its requests for an answered example whose path is the operation's
        if 200 <= response.status_code < 300 and not (
            case.meta and case.meta.is_negative_at(ParameterLocation.PATH)
        ):
            refuses_without_token.append(True)

    fuzz()


def _srv_beyond_pattern(value: object) -> bool:
    return isinstance(value, str) and (stacked_marks(value) or hidden_past_the_bmp(value))


def _outside_utc_years(value: object) -> bool:
    """Whether a date-time the schema allows has no UTC instant in years 1 to 9999 (read with
    the standard library, not the server's parser)."""
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value).astimezone(UTC)
    except OverflowError:
        return True
    except ValueError:
        return False
    return False
