"""For screen tests that build their own world of personas and extra records: the world, and
an in-process TestClient signed in to it (as tests/web/screen_sign_in.py signs in)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.store.accounts import create_account
from servicetrail.store.writer import append_records
from servicetrail.web.app import create_app
from tests import personas as P
from tests.web.screen_sign_in import PASSWORD, sign_in


def personas_with(
    engine: Engine, extra: Mapping[str, SatRecord], parties: Iterable[str]
) -> P.World:
    """The personas, `extra` records (their ids by name in the world's `ids`), and an account,
    named after it in lower case, for each of `parties`."""
    built = P.load_personas(engine)
    with engine.begin() as conn:
        append_records(conn, list(extra.values()))
        keys = P.record_ids(conn)
        for party in parties:
            create_account(conn, party.lower(), party, PASSWORD)
    built.ids.update({name: keys[rec.key] for name, rec in extra.items()})
    return built


def signed_in(engine: Engine, party: str) -> TestClient:
    client = TestClient(create_app(engine))
    assert sign_in(client, party.lower()).status_code == 303
    return client
