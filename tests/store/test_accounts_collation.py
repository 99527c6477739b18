"""Usernames are told apart regardless of ASCII case on PostgreSQL whatever the database's
collation. SQL `lower()` follows it: under a Turkish one `ILKER` lowers to `ılker`, so the
account `ILKER` was not found by `ilker`, and `ilker` could be created beside it (audit 28d)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from servicetrail.store.accounts import AccountError, create_account, stored_password
from servicetrail.store.engine import open_store
from servicetrail.store.sessions import device_key, remember_device

PASSWORD = "a good long password"


@pytest.fixture
def turkish_store(pg_server) -> Iterator[Engine]:
    name = "t_" + uuid.uuid4().hex[:12]
    pg_server.admin(
        f"CREATE DATABASE {name} TEMPLATE template0 "
        "LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.utf8'"
    )
    url = pg_server.url(name)
    engine = open_store(url)
    with engine.connect() as conn:  # the premise: this database's lower() is Turkish
        assert conn.exec_driver_sql("SELECT lower('I')").scalar() == "\u0131"
    yield engine
    engine.dispose()
    pg_server.drop_database(url)


def test_a_name_is_found_in_any_ascii_case_under_a_turkish_collation(turkish_store):
    with turkish_store.begin() as conn:
        create_account(conn, "ILKER", None, PASSWORD)
    with turkish_store.connect() as conn:
        found = stored_password(conn, "ilker")
    assert found is not None and found.username == "ILKER"


def test_a_name_differing_only_in_ascii_case_is_refused_under_a_turkish_collation(
    turkish_store,
):
    with turkish_store.begin() as conn:
        create_account(conn, "ILKER", None, PASSWORD)
    with pytest.raises(AccountError, match="differ by more than case"):
        with turkish_store.begin() as conn:
            create_account(conn, "ilker", None, PASSWORD)


def test_a_device_token_is_the_accounts_in_any_ascii_case_under_a_turkish_collation(
    turkish_store,
):
    with turkish_store.begin() as conn:
        create_account(conn, "ILKER", None, PASSWORD)
        token = remember_device(conn, "ILKER")
    with turkish_store.connect() as conn:
        assert device_key(conn, "ilker", token) is not None
