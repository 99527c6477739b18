from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from servicetrail.store.indexed_by import indexed_by
from servicetrail.store.schema import sat_record, sat_visibility

s, v = sat_record.c, sat_visibility.c


def test_the_table_is_read_by_the_index_on_sqlite_and_named_alone_on_postgresql() -> None:
    """Once in the FROM, and still the outer table of a correlated subquery."""
    seen = select(v.record_id).where(v.record_id == s.id).exists()
    query = (
        select(s.id)
        .select_from(indexed_by(sat_record, "ix_sat_record_apart_request"))
        .where(s.request_id == "r", seen)
    )
    on_sqlite = str(query.compile(dialect=sqlite.dialect()))
    assert "FROM sat_record INDEXED BY ix_sat_record_apart_request \nWHERE" in on_sqlite
    assert on_sqlite.count("sat_record INDEXED BY") == 1
    assert "FROM sat_visibility \nWHERE" in on_sqlite  # correlated, not a join of its own
    on_postgresql = str(query.compile(dialect=postgresql.dialect()))
    assert "FROM sat_record \nWHERE" in on_postgresql
    assert "INDEXED" not in on_postgresql


def test_an_index_the_table_lacks_is_refused_when_the_statement_is_built() -> None:
    with pytest.raises(ValueError, match="no index ix_nowhere"):
        indexed_by(sat_record, "ix_nowhere")
