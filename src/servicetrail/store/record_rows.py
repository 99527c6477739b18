"""A SAT record as the store takes it (a Row), made where the record is parsed (an ingest
worker process, usually): its content digest, identity key and leaf hash computed, its times
already in the engine's form, so that the writer (store.writer) converts nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..domain.model import SatRecord
from ..domain.records import content_digest
from .log_records import hot_leaf
from .schema import pg_micros, sqlite_time

# A record as the store takes it, made where the parsing happens (an ingest worker), so the
# writing process does no conversion. Times are already in the engine's form: SQLite's
# fixed-width text, or PostgreSQL's microseconds since 2000. The fields by position:
#  0 logged_at  1 kind  2 request_id  3 srv or None  4 user_id  5 device_id  6 response_code or None
#  7 payload  8 command_variant  9 execution_at  10 subject_device_id or None  11 identity_key
#  12 digest (bytes)  13 origin: where it came from (a line number, or a file's path), for a reject
#  14 salt  15 leaf hash  16 month (YYYY-MM): the record's leaf of its monthly log (SPEC section 7)
Row = tuple[Any, ...]
BARE_FILE = "f:"  # the identity key of a request read from a bare XML file starts so
RESPONSE = "r:"  # and that of a DUIS response or alert with a ResponseID so


def _row_maker(engine_time: Callable[[datetime], Any]) -> Callable[..., Row]:
    sqlite = engine_time is sqlite_time

    def make(
        logged_at: datetime,
        kind: str,
        request_id: str,
        srv: str,
        user_id: str,
        device_id: str,
        response_code: str,
        payload: str,
        command_variant: int | None = None,
        execution_at: datetime | None = None,
        subject_device_id: str = "",
        response_id: str = "",
        bare_file: bool = False,
        origin: int | str = 0,
    ) -> Row:
        digest = content_digest(
            kind,
            request_id,
            srv,
            user_id,
            device_id,
            response_code,
            payload,
            command_variant,
            execution_at,
            subject_device_id,
            response_id,
        )
        key = bare_file_key(digest, origin) if bare_file else response_key(response_id)
        # the leaf is made here, where the record is parsed (a worker process, usually);
        # its time is SQLite's stored form, made once for both
        leaf_at = sqlite_time(logged_at)
        stored_at = leaf_at if sqlite else engine_time(logged_at)
        salt, leaf = hot_leaf(
            leaf_at,
            kind,
            request_id,
            srv,
            user_id,
            device_id,
            response_code,
            command_variant,
            payload,
        )
        return (
            stored_at,
            kind,
            request_id,
            srv or None,
            user_id,
            device_id,
            response_code or None,
            payload,
            command_variant,
            engine_time(execution_at) if execution_at is not None else None,
            subject_device_id or None,
            key,
            digest,
            origin,
            salt,
            leaf,
            leaf_at[:7],
        )

    return make


_sqlite_row = _row_maker(sqlite_time)
_postgres_row = _row_maker(pg_micros)


def response_key(response_id: str) -> str:
    """What besides Request ID, kind and time identifies a record (SPEC section 4): a DUIS
    response's or alert's ResponseID. Stored as 64 bits of its hash, not whole: the key is
    in the trail's unique index, whose width every ingested row pays for, and it only has to
    tell apart messages of one Request ID, kind and time."""
    return RESPONSE + hashlib.sha256(response_id.encode()).hexdigest()[:16] if response_id else ""


def bare_file_key(digest: bytes, file_name: int | str) -> str:
    """The identity key of a request read from a bare XML file, which has no time of its
    own. Its identity is its Request ID, command variant and content (SPEC section 4), which
    store.writer's `_is_bare_copy` compares; the key, of its content and its file's name,
    only keeps the unique index apart from timed records."""
    name = os.path.basename(str(file_name)).encode("utf-8", "surrogateescape")
    return BARE_FILE + hashlib.sha256(digest + b"\x00" + name).hexdigest()[:16]


def row_maker(dialect: str) -> Callable[..., Row]:
    """A function of a record's fields, in SatRecord order (then `bare_file` and `origin`),
    that gives this engine's Row."""
    return _postgres_row if dialect == "postgresql" else _sqlite_row


def record_row(
    make: Callable[..., Row], r: SatRecord, bare_file: bool = False, origin: int | str = 0
) -> Row:
    # str(): a Kind member is a str subclass, which the parsing worker's transport does not carry
    return make(
        r.logged_at,
        str(r.kind),
        r.request_id,
        r.srv,
        r.user_id,
        r.device_id,
        r.response_code,
        r.payload,
        r.command_variant,
        r.execution_at,
        r.subject_device_id,
        r.response_id,
        bare_file,
        origin,
    )
