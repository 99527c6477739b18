"""SAT records as items (the shape of `domain.records.item`), in SQL: the columns, the joins
that name the device and the sender, and the fields that only the record's own User may read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    LargeBinary,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    null,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.util import ClauseAdapter

from ..domain.visibility import Scope
from .schema import dcc_user, device, sat_payload, sat_record
from .visibility_sql import access_column, own_clause, visible_clause

s = sat_record.c

# a record's own columns, as the narrow branches of a search read them
RECORD_COLUMNS = (
    s.id,
    s.logged_at,
    s.kind,
    s.request_id,
    s.srv,
    s.device_id,
    s.user_id,
    s.response_code,
    s.command_variant,
    s.execution_at,
    s.subject_device_id,
)


def own_only(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A field read from a message's body: NULL unless rule 1 holds, so the query itself never
    returns it for another User's record (SPEC section 5: only with access "own")."""
    return case((own_clause(), column), else_=null())


def item_columns(with_payload: bool = True) -> list[Any]:
    """The columns of `domain.records.item`, in its order (the payload last but two, when read
    here)."""
    columns = [
        s.id,
        s.logged_at,
        s.kind,
        s.request_id,
        s.srv,
        s.device_id,
        device.c.device_type,
        device.c.smets,
        s.user_id,
        dcc_user.c.role,
        dcc_user.c.party_id,
        s.response_code,
        s.command_variant,
        access_column().label("access"),
    ]
    body_fields = [
        own_only(s.execution_at).label("execution_at"),
        own_only(s.subject_device_id).label("subject_device_id"),
    ]
    return columns + ([sat_payload.c.payload] if with_payload else []) + body_fields


def with_item_joins(base: FromClause, with_payload: bool = True) -> FromClause:
    joined = base.outerjoin(device, device.c.device_id == s.device_id).outerjoin(
        dcc_user, dcc_user.c.user_id == s.user_id
    )
    if not with_payload:
        return joined
    # the payload join is itself guarded by rule 1: no path reads another User's payload
    return joined.outerjoin(
        sat_payload,
        and_(
            sat_payload.c.record_id == s.id,
            sat_payload.c.logged_at == s.logged_at,
            sat_payload.c.device_id == s.device_id,
            own_clause(),
        ),
    )


def visible_items(scope: Scope = Scope.ALL, with_payload: bool = True) -> Select[Any]:
    """The general way to select SAT records: filtered by the rule, shaped as items (without
    the payload column when the caller reads payloads itself, through `own_payload`)."""
    return (
        select(*item_columns(with_payload))
        .select_from(with_item_joins(sat_record, with_payload))
        .where(visible_clause(scope))
    )


def visible_titles(scope: Scope = Scope.ALL, heads: bool = False) -> Select[Any]:
    """visible_items shaped as items whole, the payload NULL and never read; or, with
    `heads`, each payload's head (`payload_head`)."""
    *columns, execution_at, subject_device_id = item_columns(with_payload=heads)
    payload = columns.pop() if heads else null()
    return (
        select(
            *columns,
            (payload_head(payload) if heads else payload).label("payload"),
            execution_at,
            subject_device_id,
        )
        .select_from(with_item_joins(sat_record, with_payload=heads))
        .where(visible_clause(scope))
    )


# A page of a search reads at most this much of each payload (characters) with its rows; a
# longer one is read whole after, within PAGE_PAYLOAD_BYTES for the page (`queries`). A page
# of a supplier's own firmware images (SRV 11.1, up to 10 MB each, and a payload may be 16M
# characters) held every payload of the page in the server at once: one page of 40 took
# 1.2-1.5 GB, and the largest page (1,000) could ask for tens (audit 30a).
PAYLOAD_HEAD_CHARS = 64 * 1024
PAGE_PAYLOAD_BYTES = 16 * 1024 * 1024
# ... and the heads of a page together at most this many characters: at 64K each, a page of
# 1,000 long payloads of 4-byte characters held 256 MiB of heads before its budget applied
# (review 30e); now 64 MiB at most (16 MiB of ASCII). A page of up to 255 rows reads the
# whole PAYLOAD_HEAD_CHARS, one of 1,000 16K of each: more than most DUIS payloads, each of
# which a shorter head cut would be read again (at 4K a row, a page of 1,000 payloads of
# 7 KB took 155 ms on PostgreSQL, not 56: review 31a).
PAGE_HEAD_CHARS = 16 * 1024 * 1024


def head_chars_for(rows: int) -> int:
    """How much of each payload a page of `rows` reads with its rows (`payload_head`)."""
    return min(PAYLOAD_HEAD_CHARS, PAGE_HEAD_CHARS // max(rows, 1))


def head_params(head_chars: int) -> dict[str, int]:
    """The parameter of `payload_head` for a page's statements (`head_chars_for`); left out,
    the statement's own PAYLOAD_HEAD_CHARS stands."""
    return {"head_chars": head_chars + 1}


def payload_head(payload: ColumnElement[Any]) -> ColumnElement[Any]:
    """A payload's first `head_chars` characters (PAYLOAD_HEAD_CHARS unless a page says less:
    `head_params`) and one more, so that one cut short shows it: PostgreSQL reads only that
    slice of a long (TOASTed) value, and the page's sort holds no more of it."""
    return func.substr(payload, 1, bindparam("head_chars", PAYLOAD_HEAD_CHARS + 1, type_=Integer))


def is_cut_short(payload: str | None, head_chars: int = PAYLOAD_HEAD_CHARS) -> bool:
    return payload is not None and len(payload) > head_chars


class payload_bytes(FunctionElement[int]):  # noqa: N801 (a SQL function, named as one)
    """A payload's size in bytes as stored (PostgreSQL's octet_length reads a TOASTed
    value's header only; SQLite 3.40 has no octet_length, and counts a BLOB's bytes)."""

    type = BigInteger()
    inherit_cache = True


@compiles(payload_bytes)
def _payload_bytes_sqlite(element: payload_bytes, compiler: Any, **kw: Any) -> str:
    [payload] = element.clauses
    return str(compiler.process(func.length(cast(payload, LargeBinary)), **kw))


@compiles(payload_bytes, "postgresql")
def _payload_bytes_postgresql(element: payload_bytes, compiler: Any, **kw: Any) -> str:
    [payload] = element.clauses
    return str(compiler.process(func.octet_length(payload), **kw))


def titles_or_payload(payload: ColumnElement[Any], titles_only: bool) -> ColumnElement[Any]:
    """A page's payload column, or NULL for a screen that shows titles: the search and
    Device pages show no payload, yet read every own one of the page, and a page of a
    supplier's own firmware images (SRV 11.1, up to 10 MB each) held 0.8-1.1 GB in the
    server to send 52-67 KB of HTML (audit 30a)."""
    return null() if titles_only else payload


def own_payload(rows: FromClause) -> ColumnElement[Any]:
    """The payload of each of `rows` (records selected through the rule), read only where
    rule 1 holds: a correlated read per row, so payloads are fetched for the rows a caller
    keeps, after its filtering and sorting, never for other Users' rows."""
    c = rows.c
    payload = (
        select(sat_payload.c.payload)
        .where(
            sat_payload.c.record_id == c.id,
            sat_payload.c.logged_at == c.logged_at,
            sat_payload.c.device_id == c.device_id,
        )
        .scalar_subquery()
    )
    return case((ClauseAdapter(rows).traverse(own_clause()), payload), else_=null())


def newest_first(query: Select[Any]) -> Select[Any]:
    return query.order_by(s.logged_at.desc(), s.id.desc())


def page_of_candidates(
    candidate: FromClause,
    scope: Scope,
    conditions: list[Any] | None = None,
    titles_only: bool = False,
    whole_payload: bool = False,
) -> Select[Any]:
    """The page from candidate records (whole narrow rows, RECORD_COLUMNS) that a faster form
    found: the rule itself on top, then the items, newest first. `conditions`: the search's
    filters, checked again here when the candidates come from the visibility index.
    `titles_only`: no payload read (NULL), for a screen that shows none (`titles_or_payload`);
    else each own payload's head (`payload_head`), or with `whole_payload` (one record) all
    of it."""
    c = candidate.c
    on_candidate = ClauseAdapter(
        candidate
    ).traverse  # the rule's own clauses, read off the candidates
    query = (
        select(
            c.id,
            c.logged_at,
            c.kind,
            c.request_id,
            c.srv,
            c.device_id,
            device.c.device_type,
            device.c.smets,
            c.user_id,
            dcc_user.c.role,
            dcc_user.c.party_id,
            c.response_code,
            c.command_variant,
            on_candidate(access_column()).label("access"),
            titles_or_payload(
                own_payload(candidate) if whole_payload else payload_head(own_payload(candidate)),
                titles_only,
            ).label("payload"),
            on_candidate(own_only(s.execution_at)).label("execution_at"),
            on_candidate(own_only(s.subject_device_id)).label("subject_device_id"),
        )
        .select_from(
            candidate.outerjoin(device, device.c.device_id == c.device_id).outerjoin(
                dcc_user, dcc_user.c.user_id == c.user_id
            )
        )
        .where(on_candidate(visible_clause(scope)), *(on_candidate(w) for w in conditions or ()))
    )
    return query.order_by(c.logged_at.desc(), c.id.desc()).limit(bindparam("lim", type_=Integer))
