"""A SQLite URL's parameters: SQLAlchemy hands SQLite none of them outside a `file:` URI with
`uri=true`, so `sqlite:////x/nope.db?mode=ro` opened the file to write, and made it (review
47b). Each is taken as written or refused with the URL to write; a store that a read-only
URL names and that does not exist is said not to, and nothing is made."""

from __future__ import annotations

import sqlite3

import pytest

from servicetrail.store.engine import StoreError, make_engine
from servicetrail.store.migrate import upgrade_to_head


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("?mode=ro", "write sqlite:///file:{path}?mode=ro&uri=true"),
        ("?immutable=1", "write sqlite:///file:{path}?immutable=1&uri=true"),
        ("?mode=ro&uri=true", "write sqlite:///file:{path}?mode=ro&uri=true"),  # no file:
        ("?timeout=30", "parameter 'timeout' is not one servicetrail takes"),
        ("?moed=ro", "parameter 'moed' is not one servicetrail takes"),
    ],
)
def test_a_parameter_sqlite_would_not_read_is_refused_and_nothing_made(tmp_path, query, said):
    path = tmp_path / "nope.db"
    with pytest.raises(StoreError, match=said.format(path=path).replace("?", r"\?")):
        make_engine(f"sqlite:///{path}{query}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["mode=ro", "mode=rw", "immutable=1"])
def test_a_read_only_uri_to_no_store_says_it_does_not_exist(tmp_path, query):
    path = tmp_path / "nope.db"
    with pytest.raises(StoreError, match=f"the SQLite store does not exist: {path}"):
        make_engine(f"sqlite:///file:{path}?{query}&uri=true")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_uri_opens_its_store_read_only(tmp_path):
    path = tmp_path / "kept.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with read_only.connect() as conn, pytest.raises(Exception) as refused:
        conn.exec_driver_sql("INSERT INTO party (party_id, name) VALUES ('P1', 'One')")
    assert isinstance(getattr(refused.value, "orig", None), sqlite3.OperationalError)
    assert "readonly" in str(refused.value.orig)
    read_only.dispose()
