"""The tables, in SQLAlchemy Core. Migrations (store/migrations) build them; this mirrors them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from ..domain.times import fixed_time
from ..domain.visibility import MP141_KINDS

UTC = timezone.utc
# The kinds rule 3 shares, as SQL: the rule's clause (visibility_sql.mp141_kinds_clause) and
# the partial index that serves it must say it alike, for the engine to match them
SHARED_KINDS = tuple(sorted(kind.value for kind in MP141_KINDS))
SHARED_KINDS_SQL = f"kind IN ({', '.join(repr(k) for k in SHARED_KINDS)})"
FROM_A_BARE_FILE_SQL = "identity_key LIKE 'f:%'"  # store.record_rows.BARE_FILE
# A record whose User is neither User its Request ID names (`originator:target:counter`, each
# an EUI-64 of 23 characters), or, of the kinds rule 3 shares, whose Device is not the
# target: what a search by Request ID cannot find by the target's intervals alone (0025,
# store.request_search). The search's clause must say it alike, for the engine to match it.
REQUEST_TARGET_SQL = "substr(request_id, 25, 23)"
APART_FROM_REQUEST_ID_SQL = (
    f"request_id <> '' AND (user_id NOT IN (substr(request_id, 1, 23), {REQUEST_TARGET_SQL})"
    f" OR ({SHARED_KINDS_SQL} AND device_id NOT IN ('', {REQUEST_TARGET_SQL})))"
)
SCHEMA_HEAD = "0031"  # a test checks this against Alembic's head

# PostgreSQL's binary COPY writes a timestamptz as microseconds since this instant
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


sqlite_time = fixed_time  # a time as SQLite stores it: the text orders the times
# after every digit: past any time stored as SQLite's text, an open end of a range in it
SQLITE_OPEN_END = "~"


def pg_micros(value: datetime) -> int:
    """A time as PostgreSQL's binary COPY takes it."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; times are UTC-aware everywhere")
    return (value - PG_EPOCH) // MICROSECOND


class UtcDateTime(TypeDecorator[Any]):
    """Aware UTC datetimes in and out: `timestamptz` on PostgreSQL, fixed-width text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(27))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; times are UTC-aware everywhere")
        return sqlite_time(value) if dialect.name == "sqlite" else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value)  # C-fast; the stored text always ends in Z
        return value.astimezone(UTC)


RecordId = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

party = Table(
    "party",
    metadata,
    Column("party_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
)

dcc_user = Table(
    "dcc_user",
    metadata,
    Column("user_id", String(23), primary_key=True),
    Column("party_id", String(32), ForeignKey("party.party_id"), nullable=False),
    Column("role", String(16), nullable=False),
    Index("ix_dcc_user_party_id", "party_id"),
)

device = Table(
    "device",
    metadata,
    Column("device_id", String(23), primary_key=True),
    Column("device_type", String(16), nullable=False),
    Column("smets", SmallInteger, nullable=False),
)

responsibility = Table(
    "responsibility",
    metadata,
    Column("device_id", String(23), nullable=False),
    Column("party_id", String(32), ForeignKey("party.party_id"), nullable=False),
    Column("relation", String(24), nullable=False),
    Column("valid_from", UtcDateTime, nullable=False),
    Column("valid_to", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("device_id", "relation", "valid_from"),  # device first: distributable
    # rule 3's EXISTS probes (device, party) and walks the intervals by start
    Index("ix_responsibility_device_party", "device_id", "party_id", "valid_from"),
)


def _partial(where: str, partitioned: bool) -> dict[str, Any]:
    """A partial index's predicate, for the engine the tables are built for: PostgreSQL's
    (partitioned) or SQLite's, whose tables every statement names. Given for both, the
    shared tables had SQLAlchemy import its PostgreSQL dialect (and its drivers' modules)
    to check the option, 0.025 s of every command on SQLite (session 50)."""
    return {"postgresql_where" if partitioned else "sqlite_where": text(where)}


def _sat_tables(meta: MetaData, partitioned: bool) -> tuple[Table, Table]:
    """The trail and its payloads. On PostgreSQL both are partitioned by month of `logged_at`
    and keyed by `device_id` first, so the same tables can be distributed by device (Citus);
    on SQLite `id` is the rowid. `device_id` is '' (never NULL) for non-device messages."""
    if partitioned:
        record_keys = [
            PrimaryKeyConstraint("device_id", "logged_at", "id"),
            Index("ix_sat_record_id", "id"),
        ]
        payload_keys = [PrimaryKeyConstraint("device_id", "logged_at", "record_id")]
    else:
        record_keys = [
            PrimaryKeyConstraint("id"),
            Index("ix_sat_record_device_time", "device_id", "logged_at", "id"),
        ]
        payload_keys = [PrimaryKeyConstraint("record_id")]
    record = Table(
        "sat_record",
        meta,
        Column("id", RecordId, nullable=False, autoincrement=False),
        Column("logged_at", UtcDateTime, nullable=False),
        Column("kind", String(16), nullable=False),
        Column("request_id", String(80), nullable=False),
        Column("srv", String(12), nullable=True),
        Column("user_id", String(23), nullable=False),
        Column("device_id", String(23), nullable=False),
        Column("response_code", String(16), nullable=True),
        # 0004 (SPEC section 4.1). A title field every viewer of the record sees:
        Column("command_variant", SmallInteger, nullable=True),
        # read from the body, so only the record's own User is shown them (store.queries):
        Column("execution_at", UtcDateTime, nullable=True),
        Column("subject_device_id", String(23), nullable=True),
        # identity (SPEC section 4): what besides Request ID, kind and time tells two messages
        # apart (store.record_rows: response_key, bare_file_key), and the content digest that
        # tells a re-sent message from a conflicting one
        Column("identity_key", String(24), nullable=False, server_default=""),
        Column("digest", LargeBinary(16), nullable=True),  # NULL: stored before 0004
        # the natural key makes re-loading idempotent; it also serves Request ID look-ups
        UniqueConstraint(
            "request_id",
            "kind",
            "logged_at",
            "identity_key",
            "device_id",
            name="uq_sat_record_identity",
        ),
        Index("ix_sat_record_user_time", "user_id", "logged_at", "id"),
        # 0003: a device's rows per User ID in time order (the interval-first device search)
        Index("ix_sat_record_device_user_time", "device_id", "user_id", "logged_at", "id"),
        # 0004: the non-device requests about a Device, for a search of one's own traffic by
        # it; 0017: by User ID, so that the search reads no other User's (audit 21b)
        Index(
            "ix_sat_record_subject_device",
            "subject_device_id",
            "user_id",
            "logged_at",
            "id",
            **_partial("subject_device_id IS NOT NULL", partitioned),
        ),
        # 0017: rule 3's range of a device search, which holds no alert (visibility_sql)
        Index(
            "ix_sat_record_shared_device_time",
            "device_id",
            "logged_at",
            "id",
            **_partial(SHARED_KINDS_SQL, partitioned),
        ),
        # 0018: the requests read from bare files, few and at any time (store.writer._stored)
        Index(
            "ix_sat_record_bare_request",
            "request_id",
            **_partial(FROM_A_BARE_FILE_SQL, partitioned),
        ),
        # 0025: the records a search by Request ID finds apart from the target's intervals
        Index(
            "ix_sat_record_apart_request",
            "request_id",
            **_partial(APART_FROM_REQUEST_ID_SQL, partitioned),
        ),
        *record_keys,
    )
    # Payloads live apart so the searchable table stays narrow and its hot pages small;
    # user_id rides along so that PostgreSQL's row-level security can keep them own-only.
    payload = Table(
        "sat_payload",
        meta,
        Column("record_id", RecordId, nullable=False, autoincrement=False),
        Column("logged_at", UtcDateTime, nullable=False),
        Column("device_id", String(23), nullable=False),
        Column("user_id", String(23), nullable=False),
        Column("payload", Text, nullable=False),
        *payload_keys,
    )
    return record, payload


def _visibility_table(meta: MetaData, partitioned: bool) -> Table:
    """0006: the per-Party visibility index (store.visibility_index). One row per record and
    Party that may see it, with the rule that grants it (1: own, 3: MP141), so that "newest
    first of what I may see" walks one index range instead of the whole trail. Derived data:
    the rule is applied on top of every read through it.

    The title fields a device-less search filters on ride along, so a filter is checked on
    the index alone. Besides the key it has one index, by record id (0007, record id first
    since 0014), whose inserts all append at its right edge: one on (party, Request ID) made
    ingest three times slower, since its inserts land on random pages of a large b-tree."""
    # PostgreSQL's option on its tables alone (`_partial`)
    covering: dict[str, Any] = {"postgresql_include": ["kind", "srv"]} if partitioned else {}
    keys = [
        PrimaryKeyConstraint(
            "party_id", "access", "logged_at", "record_id", name="pk_sat_visibility", **covering
        ),
        # 0007: a look-up by record id probes the viewer's own rows (issue 10 finding 7).
        # 0014: record id first: record ids grow, so inserts append at the index's right edge
        Index("ix_sat_visibility_record", "record_id", "party_id"),
    ]
    options = (
        {"postgresql_partition_by": "RANGE (logged_at)"}
        if partitioned
        else {"sqlite_with_rowid": False}
    )
    return Table(
        "sat_visibility",
        meta,
        Column("party_id", String(32), nullable=False),
        Column("access", SmallInteger, nullable=False),
        Column("logged_at", UtcDateTime, nullable=False),
        Column("record_id", RecordId, nullable=False, autoincrement=False),
        Column("kind", String(16), nullable=False),
        Column("srv", String(12), nullable=True),
        *keys,
        **options,
    )


sat_record, sat_payload = _sat_tables(metadata, partitioned=False)
sat_visibility = _visibility_table(metadata, partitioned=False)
_postgres_metadata = MetaData(naming_convention=metadata.naming_convention)


def metadata_for(dialect: str) -> MetaData:
    """The tables as the migrations build them on this engine (for `servicetrail db check`)."""
    if dialect != "postgresql":
        return metadata
    if not _postgres_metadata.tables:
        from .access_tables import on_postgresql
        from .log_tables import on_postgresql as logs_on_postgresql
        from .watch_tables import outbox_on_postgresql, watch_event_table

        for table in metadata.tables.values():
            if table.name not in ("sat_record", "sat_payload", "sat_visibility", "watch_event"):
                table.to_metadata(_postgres_metadata)
        _sat_tables(_postgres_metadata, partitioned=True)
        _visibility_table(_postgres_metadata, partitioned=True)
        watch_event_table(_postgres_metadata, keyed_to_watch=False)
        on_postgresql(_postgres_metadata)
        logs_on_postgresql(_postgres_metadata)
        outbox_on_postgresql(_postgres_metadata)
    return _postgres_metadata


account = Table(
    "account",
    metadata,
    Column("username", String(64), primary_key=True),
    # NULL: an auditor (0010), who reads the access log and no SAT record
    Column("party_id", String(32), ForeignKey("party.party_id"), nullable=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),  # 0005: no sign-in, no API token while set
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("username", String(64), ForeignKey("account.username"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,  # 0013: a revoked token's id is never given to a new one
)

# --- 0002: the web screen's server-side sessions and login throttling ---------------------

# A signed-in browser. Only the SHA-256 of the random session id is stored: a copy of this
# table does not let anyone act as the people in it.
web_session = Table(
    "web_session",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column(
        "username", String(64), ForeignKey("account.username", ondelete="CASCADE"), nullable=False
    ),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Index("ix_web_session_username", "username"),
    Index("ix_web_session_last_seen_at", "last_seen_at"),
)

# Failed sign-ins, kept for the throttling window only.
login_failure = Table(
    "login_failure",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
    Index("ix_login_failure_username", "username", "failed_at"),
    Index("ix_login_failure_client_ip", "client_ip", "failed_at"),
)

# --- 0005: the browsers an account has signed in from ------------------------------------

# A device token's SHA-256 (the token itself lives only in the browser's cookie): sign-in
# attempts that present it are throttled apart from everyone else's (store.sessions).
login_device = Table(
    "login_device",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "username", String(64), ForeignKey("account.username", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_login_device_username", "username"),
    Index("ix_login_device_created_at", "created_at"),
)


# --- 0008: watches (SPEC section 6), defined beside their code --------------------------
from . import watch_tables  # noqa: E402,F401  (registers its tables on `metadata`)

# --- 0009: the verifiable logs (SPEC section 7), defined beside their code ----------------
from . import log_tables  # noqa: E402,F401  (registers its tables on `metadata`)
from . import access_tables  # noqa: E402,F401  (0010: the access log, SPEC section 8)
