"""The store's URL read as servicetrail reads it and shown without its password
(store/store_url.py): string work alone, no store opened. What the command line says of a
URL it cannot read is tests/test_cli.py's."""

from __future__ import annotations

from servicetrail.store import store_url


def test_a_list_of_servers_is_read_as_libpq_reads_it_and_shown_without_its_password():
    url = store_url.database_url("postgresql://u:secret@[::1]:5433,db2/trail?sslmode=require")
    assert url == "postgresql+psycopg://u:secret@/trail?sslmode=require&host=::1,db2&port=5433,"
    shown = store_url.shown_url(url)
    assert "secret" not in shown and "?host=::1,db2&port=5433,&" in shown  # as written
