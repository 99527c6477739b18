"""A table read by one named index on SQLite (`FROM t INDEXED BY ix`), the table alone on
PostgreSQL, whose planner has no such clause.

For a read whose work must not depend on the planner's statistics: after an operator's
`ANALYZE` (the service never runs one) SQLite costs an index with no `sqlite_stat1` row, as
an empty partial index gets none, by its defaults, and may take another. SQLAlchemy's SQLite
compiler drops `Select.with_hint`, hence this construct. It stands in the FROM for the
table, whose columns the statement names as usual (and which correlated subqueries still
see as the outer table)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.sql.visitors import InternalTraversal


class indexed_by(FromClause):  # noqa: N801 (a SQL clause, named as one)
    inherit_cache = True
    _traverse_internals = [
        ("table", InternalTraversal.dp_clauseelement),
        ("index", InternalTraversal.dp_string),
    ]

    def __init__(self, table: Table, index: str) -> None:
        if index not in {ix.name for ix in table.indexes}:
            raise ValueError(f"{table.name} has no index {index}")
        self.table, self.index = table, index

    @property
    def _from_objects(self) -> list[FromClause]:
        return [self, self.table]  # the table too: what a subquery correlates to

    @property
    def _hide_froms(self) -> Iterable[FromClause]:
        return [self.table]  # in the FROM as this clause, not a second time as itself


@compiles(indexed_by)
def _indexed_by_sqlite(element: indexed_by, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.table, **kw)} INDEXED BY {element.index}"


@compiles(indexed_by, "postgresql")
def _indexed_by_postgresql(element: indexed_by, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.table, **kw))


__all__ = ["indexed_by"]
