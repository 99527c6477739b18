"""A SQLite URL's parameters: SQLAlchemy hands SQLite none of them outside a `file:` URI with
`uri=true`, so `sqlite:////x/nope.db?mode=ro` opened the file to write, and made it (review
47b). Each is taken as written or refused with the URL to write; a store that a read-only
URL names and that does not exist is said not to, and nothing is made."""

from __future__ import annotations

import sqlite3

import pytest

from sqlalchemy.engine import make_url

from servicetrail.sqlite_url import sqlite_file
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


@pytest.mark.parametrize("query", ["mode=ro&mode=rw", "vfs=memdb&vfs=memdb", "mode=ro&mode=ro"])
def test_a_parameter_given_twice_is_refused_and_nothing_made(tmp_path, query):
    # SQLAlchemy handed SQLite "mode=('ro', 'rw')", after an empty store was made (review 47j)
    path = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="parameter '(mode|vfs)' more than once: give it once"):
        make_engine(f"sqlite:///file:{path}?{query}&uri=true")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["mode=RO", "mode=ro%20", "mode=readonly"])
def test_a_mode_sqlite_does_not_know_makes_no_file(tmp_path, query):
    # SQLite refuses it ("no such access mode"), and an empty file was made before it said so
    path = tmp_path / "nope.db"
    engine = make_engine(f"sqlite:///file:{path}?{query}&uri=true")
    with pytest.raises(Exception, match="no such access mode"):
        engine.connect()
    engine.dispose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("query", ["immutable=0", "immutable=no", "immutable=off"])
def test_immutable_false_makes_the_store_as_sqlite_does(tmp_path, query):
    # it was said not to exist, as immutable=1's is, though SQLite makes it
    path = tmp_path / "new.db"
    engine = make_engine(f"sqlite:///file:{path}?{query}&uri=true")
    upgrade_to_head(engine)
    engine.dispose()
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["a%20b.db", "a#b.db", "a%3Fb.db", "a b é.db"])
def test_the_url_a_refusal_says_to_write_opens_the_same_file(tmp_path, name):
    # a plain path is no URI: '%20' in a name was told as a URL naming 'a b.db' (review 47j)
    path = tmp_path / name
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    url = make_url(f"sqlite:///{path}").set(query={"mode": "ro"})
    with pytest.raises(StoreError) as refused:
        make_engine(url.render_as_string(hide_password=False))
    written = str(refused.value).split("write ", 1)[1]
    assert sqlite_file(written) == path
    read_only = make_engine(written)
    with read_only.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM party").scalar() == 0
    read_only.dispose()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == [name]
