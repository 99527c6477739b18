"""The own-traffic report (SPEC section 1, rule 7) as CSV, formatted by the database engine.

The rows are those of `iter_own_report`: the statement comes from `items.visible_items`
with `Scope.OWN`, the one builder every read of SAT records goes through, so rule 1
(`visibility_sql.own_clause`) is the only rule applied, and the payload read (the join on
SQLite, `items.own_payload` after the sort on PostgreSQL) keeps its own guard. This
module adds the time window and the order, and has the engine turn each row into the bytes
that `domain.records.item` written with Python's csv module would give (the tests compare
the two byte for byte, on both engines). Python does no per-row work:

- PostgreSQL: `COPY (SELECT ...) TO STDOUT (FORMAT csv)`: the server writes the CSV and the
  bytes are passed on in large chunks, several times faster than a cursor and Python's csv
  module (BENCHMARKS.md);
- SQLite: the SELECT builds each whole CSV line (quoting as Python's csv module does), so
  the client only joins the lines: Python's csv writer scans and copies every character of
  every payload, which alone held exports to a fraction of this speed.

Everything streams: the engine sorts (spilling to disk if it must) and the client holds at
most one chunk of about CHUNK_BYTES, whatever the size of the report.

Formula neutralisation (SPEC section 5, OWASP's rule against CSV injection): a text cell
that begins with one of FORMULA_STARTS gets a leading `'`, so that no spreadsheet runs it as
a formula. It applies to the text as stored, before quoting; JSON Lines keeps every value
exactly as stored.

CSV quoting, as Python's csv module (QUOTE_MINIMAL, "\\n" line ends) and PostgreSQL's COPY
both do it: a field is quoted when it holds a comma, a double quote, a line feed or a
carriage return; quotes inside are doubled; None and "" are both written as nothing.
(Python before 3.11.9 left a bare carriage return unquoted, which made the row unreadable;
CPython gh-67044 fixed that, and the report follows the fixed rule on both engines.)
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Select,
    String,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    text,
    type_coerce,
    values,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Values

from ..domain.catalogue import CATALOGUE, UNKNOWN_SRV_PREFIX, UNKNOWN_SRV_SUFFIX, srv_title
from ..domain.visibility import Access, Scope, Viewer
from ..domain.records import REPORT_FIELDS
from .items import own_payload, visible_items
from .limits import Budget
from .read_transaction import read_as
from .schema import UtcDateTime, sat_record
from .visibility_sql import viewer_params

s = sat_record.c
CHUNK_BYTES = 1 << 20  # large writes; one chunk is all the memory a report holds on the client
_CSV_SPECIAL = (",", '"', "\n", "\r")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SRV_TITLE_FUNCTION = "servicetrail_srv_title_csv"  # registered on the SQLite connection
PG_SORT_MEMORY = "64MB"  # work_mem of a report's transaction: one export, one sort


def neutralised(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_field(value: Any) -> str:
    """One value as a CSV field, by the rules in the module's docstring."""
    if value is None:
        return ""
    shown = neutralised(str(value))
    if any(c in shown for c in _CSV_SPECIAL):
        return '"' + shown.replace('"', '""') + '"'
    return shown


def csv_header() -> bytes:
    return (",".join(csv_field(name) for name in REPORT_FIELDS) + "\n").encode()


@lru_cache(maxsize=1)
def _known_titles() -> dict[str, str]:
    return {srv: csv_field(srv_title(srv)) for srv in CATALOGUE}


def srv_title_field(srv: str | None) -> str:
    """`srv_title` as a CSV field: SQLite calls this once a row (a dict look-up); a join
    to the 129-row catalogue would scan it for every row, since SQLite does not index it."""
    known = _known_titles().get(srv)  # type: ignore[arg-type]
    return known if known is not None else csv_field(srv_title(srv or ""))


def _own_rows(with_payload: bool = True) -> Select[Any]:
    """The rows of the report: the viewer's own records in [time_from, time_to), as
    `iter_own_report` selects them (each engine's statement adds the columns and the order)."""
    return visible_items(Scope.OWN, with_payload).where(
        s.logged_at >= bindparam("time_from", type_=UtcDateTime),
        s.logged_at < bindparam("time_to", type_=UtcDateTime),
    )


def _newest_first(query: Select[Any]) -> Select[Any]:
    return query.order_by(s.logged_at.desc(), s.id.desc())


# ------------------------------------------------------------------ PostgreSQL: COPY


def _pg_time_text(logged_at: ColumnElement[Any]) -> ColumnElement[str]:
    """`domain.times.format_time` in SQL: UTC, `Z`, microseconds only when there are some."""
    utc = func.timezone("UTC", logged_at)  # timestamp without time zone, in UTC
    whole = func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"', type_=String)
    fraction = func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"', type_=String)
    return case((func.date_trunc("second", utc) == utc, whole), else_=fraction)


def _pg_neutralised(value: ColumnElement[Any]) -> ColumnElement[str]:
    """`neutralised` in PostgreSQL's SQL (NULL stays NULL)."""
    return case((func.left(value, 1).in_(FORMULA_STARTS), literal("'") + value), else_=value)


def _catalogue() -> Values:
    """The SRV catalogue as a VALUES list (srv, title) that PostgreSQL hashes once per
    report. (A UNION of 129 one-row SELECTs planned 129 nodes, and JIT-compiled them.)"""
    return values(column("srv", String), column("title", String), name="srv_catalogue").data(
        [(srv, neutralised(srv_title(srv))) for srv in sorted(CATALOGUE)]
    )


@lru_cache(maxsize=1)
def postgres_statement() -> Select[Any]:
    """The report's SELECT for COPY: the columns of REPORT_FIELDS, in order, as the values
    COPY writes the way Python's csv module does.

    The narrow rows are sorted first and each payload is read after the sort, in order:
    sorting whole rows, payloads and all, spilled to disk and made the sort carry every
    payload through it."""
    catalogue = _catalogue()
    narrow = (
        _newest_first(_own_rows(with_payload=False))
        .outerjoin(catalogue, catalogue.c.srv == s.srv)
        .add_columns(catalogue.c.title.label("catalogue_title"))
        .subquery("own_row")
    )
    col = narrow.c

    def blank_as_null(value: ColumnElement[Any]) -> ColumnElement[Any]:
        # COPY writes an empty string as "" and only NULL as nothing; the csv module writes both
        # as nothing, so every text column turns '' into NULL first
        return func.nullif(value, "", type_=String)

    unknown = case(
        (func.coalesce(col.srv, "") == "", None),
        else_=literal(UNKNOWN_SRV_PREFIX) + col.srv + literal(UNKNOWN_SRV_SUFFIX),
    )
    columns = {
        "id": col.id,
        "logged_at": _pg_time_text(col.logged_at),
        "kind": blank_as_null(col.kind),
        "request_id": blank_as_null(col.request_id),
        "srv": blank_as_null(col.srv),
        "srv_title": func.coalesce(col.catalogue_title, unknown, type_=String),
        "device_id": blank_as_null(col.device_id),
        "device_type": blank_as_null(col.device_type),
        "smets": col.smets,
        "user_id": blank_as_null(col.user_id),
        "user_role": blank_as_null(col.role),
        "party_id": blank_as_null(col.party_id),
        "response_code": blank_as_null(col.response_code),
        "command_variant": col.command_variant,
        "access": col.access,
        # the item holds a payload only for the viewer's own records (all of a report's)
        "payload": blank_as_null(own_payload(narrow)),
        "execution_at": _pg_time_text(col.execution_at),
        "subject_device_id": blank_as_null(col.subject_device_id),
    }
    assert tuple(columns) == REPORT_FIELDS, "the report's columns must follow REPORT_FIELDS"
    # Neutralising names a value twice (the test, the result). OFFSET 0 keeps PostgreSQL from
    # merging these rows into the statement around them, which would copy each expression to
    # every place that names it and read every payload twice (a quarter more time per row).
    row = (
        select(
            *(expr.label(name) for name, expr in columns.items()), col.logged_at.label("sort_at")
        )
        .select_from(narrow)
        .order_by(col.logged_at.desc(), col.id.desc())
        .offset(0)
        .subquery("report_row")
    )
    # written by us (numbers, times, titles): never a formula
    ours = {"id", "logged_at", "smets", "srv_title", "command_variant", "access", "execution_at"}
    # the same order again: PostgreSQL sees the subquery is sorted so and does not sort twice
    return select(
        *(
            row.c[name] if name in ours else _pg_neutralised(row.c[name]).label(name)
            for name in REPORT_FIELDS
        )
    ).order_by(row.c.sort_at.desc(), row.c.id.desc())


# ------------------------------------------------------------------ SQLite: whole lines


def _sqlite_field(value: ColumnElement[Any]) -> ColumnElement[str]:
    """`csv_field` in SQLite's SQL. The double quote is looked for first: XML payloads
    nearly always hold one, and SQLite stops at the first test that holds. A formula start
    is found by the first character's code point, and its `'` is written with the opening
    quote (or alone), so the text itself is copied no more often than before."""
    needs_quotes = or_(*(func.instr(value, c) > 0 for c in ('"', ",", "\n", "\r")))
    formula = func.unicode(value).in_([ord(c) for c in FORMULA_STARTS])
    return case(
        (needs_quotes, case((formula, '"\''), else_='"') + func.replace(value, '"', '""') + '"'),
        (formula, "'" + value),
        else_=func.coalesce(value, ""),
    )


def _sqlite_time_text(time: ColumnElement[Any]) -> ColumnElement[str]:
    """`domain.times.format_time`: SQLite keeps times as fixed-width UTC text
    (schema.sqlite_time, ...THH:MM:SS.ffffffZ), so only whole seconds need a change."""
    stored = type_coerce(time, String)
    return func.coalesce(
        case(
            (func.substr(stored, 21, 6) == "000000", func.substr(stored, 1, 19) + "Z"), else_=stored
        ),
        "",
    )


@lru_cache(maxsize=1)
def sqlite_statement() -> Select[Any]:
    """The report's SELECT on SQLite: one column, each row's whole CSV line as UTF-8 bytes."""
    query = _own_rows()
    col = query.selected_columns

    def plain(number: ColumnElement[Any]) -> ColumnElement[str]:  # integers: never quoted
        return func.coalesce(type_coerce(number, String), "")

    fields = {
        "id": plain(col.id),
        "logged_at": _sqlite_time_text(col.logged_at),
        "kind": _sqlite_field(col.kind),
        "request_id": _sqlite_field(col.request_id),
        "srv": _sqlite_field(col.srv),
        "srv_title": getattr(func, SRV_TITLE_FUNCTION)(col.srv, type_=String),
        "device_id": _sqlite_field(col.device_id),
        "device_type": _sqlite_field(col.device_type),
        "smets": plain(col.smets),
        "user_id": _sqlite_field(col.user_id),
        "user_role": _sqlite_field(col.role),
        "party_id": _sqlite_field(col.party_id),
        "response_code": _sqlite_field(col.response_code),
        "command_variant": plain(col.command_variant),
        "access": _sqlite_field(col.access),
        "payload": case((col.access == Access.OWN.value, _sqlite_field(col.payload)), else_=""),
        "execution_at": _sqlite_time_text(col.execution_at),
        "subject_device_id": _sqlite_field(col.subject_device_id),
    }
    assert tuple(fields) == REPORT_FIELDS, "the report's columns must follow REPORT_FIELDS"
    line = fields["id"]
    for expr in list(fields.values())[1:]:
        line = line + "," + expr
    # BLOB: the driver hands over the UTF-8 bytes as they are, with no decoding and re-encoding
    return _newest_first(
        query.with_only_columns(type_coerce(cast(line + "\n", LargeBinary), _Bytes()).label("line"))
    )


class _Bytes(LargeBinary):
    """Bytes from the driver, untouched (LargeBinary would copy each value once more)."""

    def result_processor(self, dialect: Any, coltype: Any) -> None:
        return None


# ------------------------------------------------------------------ the report


def report_params(viewer: Viewer, time_from: datetime, time_to: datetime) -> dict[str, Any]:
    return {**viewer_params(viewer), "time_from": time_from, "time_to": time_to}


class OwnReport:
    """The viewer's own records in [time_from, time_to) as CSV bytes (header first), in
    chunks of about CHUNK_BYTES. `rows` holds the number of records once iterated.

    Iterate it while the connection is open; it runs under the export time limit and, on
    PostgreSQL, under the reader role and row-level security, like every read."""

    def __init__(
        self, conn: Connection, viewer: Viewer, time_from: datetime, time_to: datetime
    ) -> None:
        self.conn, self.viewer = conn, viewer
        self.params = report_params(viewer, time_from, time_to)
        self.rows = 0

    def __iter__(self) -> Generator[bytes]:
        with read_as(self.conn, self.viewer, Budget.EXPORT.seconds()):
            if self.conn.dialect.name == "postgresql":
                yield from self._copy()
            else:
                yield from self._lines()

    def _copy(self) -> Iterator[bytes]:
        statement = postgres_statement().params(**self.params)
        compiled = statement.compile(
            dialect=self.conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        # COPY takes no server-side parameters: psycopg merges them in client-side, quoted
        # by its own adapters (never by string formatting here)
        sql = f"COPY ({compiled.string}) TO STDOUT (FORMAT csv)"
        # For this transaction only: no JIT (compiling the plan took longer than running it,
        # 1.1 s for a 33k-row report); room to sort a report in memory, not on disk; and
        # records joined to payloads month by month (both tables are partitioned by month
        # and joined on logged_at), which took a 33k-row report from 0.95 to 0.72 s.
        self.conn.execute(
            text(
                "SELECT set_config('jit', 'off', true), set_config('work_mem', :mem, true), "
                "set_config('enable_partitionwise_join', 'on', true)"
            ),
            {"mem": PG_SORT_MEMORY},
        )
        # this session and transaction: role, viewer, limit (psycopg's own connection, not the DBAPI
        # protocol's)
        raw: Any = self.conn.connection.dbapi_connection
        chunk = bytearray(csv_header())
        # past the export limit, `read_as` says "narrow your search" as for every read; a
        # cancel sooner is an administrator's, and the store's to answer for
        with raw.cursor() as cursor:
            with cursor.copy(sql, compiled.params) as copy:
                for data in copy:  # a message a row: gathered into large writes
                    chunk += data
                    if len(chunk) >= CHUNK_BYTES:
                        yield bytes(chunk)
                        chunk.clear()
            self.rows = cursor.rowcount
        if chunk:
            yield bytes(chunk)

    def _lines(self) -> Iterator[bytes]:
        raw: Any = self.conn.connection.dbapi_connection  # sqlite3's, with create_function
        raw.create_function(SRV_TITLE_FUNCTION, 1, srv_title_field, deterministic=True)
        result = self.conn.execute(sqlite_statement(), self.params)
        chunk = [csv_header()]
        size = 0
        # one line at a time off the driver's cursor, which steps the statement as it is
        # read: fetched 100 at a time, a run of firmware images was held together, and a
        # fetch sized by the lines before it took 100 again after a short one (review 30e);
        # a chunk ends at most one line past the mark
        lines: Iterator[tuple[bytes]] = iter(result.cursor.fetchone, None)
        for (line,) in lines:
            self.rows += 1
            chunk.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield b"".join(chunk)
                chunk.clear()
                size = 0
        if chunk:
            yield b"".join(chunk)


def own_report_csv(
    conn: Connection, viewer: Viewer, time_from: datetime, time_to: datetime
) -> OwnReport:
    """SPEC section 1 rule 7: the viewer's own traffic only, payload included, as CSV."""
    return OwnReport(conn, viewer, time_from, time_to)


__all__ = [
    "CHUNK_BYTES",
    "OwnReport",
    "csv_field",
    "csv_header",
    "own_report_csv",
    "postgres_statement",
    "sqlite_statement",
]
