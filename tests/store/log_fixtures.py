"""What the tests of the logs build their stores from: records and bare leaves in known
months, the logs' partitions for leaves written with no entries, access-log entries read in
a given month, the store's key, and the check of every leaf's proof. Shared by the store's,
the CLI's and the web's tests of the logs; the tests live in the test modules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from servicetrail import signing
from servicetrail.domain.access_log import Reader, Tally
from servicetrail.domain.model import SatRecord
from servicetrail.domain.times import parse_time
from servicetrail.signing import Signer
from servicetrail.store import access_log as access_store
from servicetrail.store.log_partitions import attach_log_months
from servicetrail.store.log_records import sealed_leaf_of
from servicetrail.store.log_tables import log_leaf
from servicetrail.store.log_tree import StoredTree, latest_checkpoint, leaf_place
from servicetrail.store.merkle_log import add_leaves, seal_store
from servicetrail.store.partitions import ensure_months
from servicetrail.store.writer import append_records
from tests import personas as P
from tests import rfc9162

START = parse_time("2025-01-31T23:00:00Z")
# the months of sealed_logs' two logs
SEALED_MONTHS = ("2025-01", "2025-02")
# the logs' origins begin so (signing.log_prefix, as the tests run)
PREFIX = "servicetrail/sat"
# two old months of access-log entries
OLD = ("2025-01", "2025-02")
NP = Reader(P.NORTHPOWER, "np.analyst", "api")

_SENDER, _DEVICE = "90-B3-D5-1F-30-01-00-02", "00-DB-12-34-56-78-90-A2"


def this_month() -> str:
    now = datetime.now(UTC)
    return f"{now.year:04d}-{now.month:02d}"


def store_key(engine: Engine) -> Signer:
    """The store's signing key, as retention loads it (the tests' key, made at the start)."""
    return signing.signer_for(engine.url.render_as_string(hide_password=False))


def records(count: int, first: int = 0) -> list[SatRecord]:
    """`count` requests, ten minutes apart from START + first * 10 minutes (so they cross
    from January into February)."""
    return [
        SatRecord(
            logged_at=START + timedelta(minutes=10 * (first + i)),
            kind="request",
            request_id=f"90-B3-D5-1F-30-01-00-01:00-DB-12-34-56-78-90-A1:{first + i + 1}",
            srv="4.1.1",
            user_id="90-B3-D5-1F-30-01-00-01",
            device_id="00-DB-12-34-56-78-90-A1",
            response_code="",
            payload=f"<body>{first + i}</body>",
        )
        for i in range(count)
    ]


def records_in(months: tuple[str, ...], each: int = 3) -> list[SatRecord]:
    """`each` requests on the first day of every month given."""
    return [
        SatRecord(
            logged_at=parse_time(f"{month}-01T00:00:00Z") + timedelta(seconds=i),
            kind="request",
            request_id=f"{_SENDER}:{_DEVICE}:{n * each + i + 1}",
            srv="4.1.1",
            user_id=_SENDER,
            device_id=_DEVICE,
            response_code="",
            payload=f"<body>{month} {i}</body>",
        )
        for n, month in enumerate(months)
        for i in range(each)
    ]


def append(engine, batch):
    with engine.begin() as conn:
        append_records(conn, batch)


def access_entries(engine, monkeypatch, months: tuple[str, ...], each: int = 3) -> None:
    """`each` access-log entries on the 2nd of every month given (as if read then)."""
    for month in months:
        at = datetime.fromisoformat(f"{month}-02T10:00:00+00:00")
        with monkeypatch.context() as patched, engine.begin() as conn:
            patched.setattr(access_store, "_now", lambda at=at: at)
            access_store.append_entries(conn, [(NP, "search", {"q": month}, Tally())] * each)


def logs_made(engine, family: str, *months: str) -> None:
    """PostgreSQL: the logs' partitions of these months, as the months' first entries make
    them (store.log_partitions), for leaves written here with no entries."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            attach_log_months(conn, family, set(months))


def leaves(first_id: int, count: int, month: str) -> list[tuple[int, str, bytes, None]]:
    """Bare leaves (QueuedLeaf) of the month's log, ids from `first_id`, unsalted."""
    return [(first_id + i, month, (first_id + i).to_bytes(32, "big"), None) for i in range(count)]


def sealed_logs(engine) -> None:
    """Two record logs (SEALED_MONTHS) of three leaves each, sealed; on PostgreSQL with their
    months' partitions of the trail (`db check` names a log whose records' partitions are
    gone)."""
    if engine.dialect.name == "postgresql":
        ensure_months(engine, [datetime(2025, month, 15, tzinfo=UTC) for month in (1, 2)])
    logs_made(engine, "sat", *SEALED_MONTHS)
    with engine.begin() as conn:
        for number, month in enumerate(SEALED_MONTHS):
            add_leaves(conn, "sat", leaves(100 * number + 1, 3, month))
    assert len(seal_store(engine)) == 2


def verifier_key(engine) -> str:
    return signing.signer_for(str(engine.url)).verifier_key


def check_every_leaf(engine) -> int:
    """Every stored record's inclusion proof against its log's latest checkpoint, through
    the independent verifier; returns how many were checked."""
    key = verifier_key(engine)
    checked = 0
    signed: dict[str, tuple[int, bytes]] = {}  # a month's latest checkpoint, checked once
    with engine.connect() as conn:
        ids = conn.execute(select(log_leaf.c.entry_id)).scalars().all()
        for record_id in ids:
            place = leaf_place(conn, "sat", record_id)
            sealed = sealed_leaf_of(conn, record_id)
            leaf = sealed.leaf
            assert (sealed.month, sealed.index) == (place.month, place.index)
            if place.month not in signed:
                checkpoint = latest_checkpoint(conn, "sat", place.month)
                origin, size, root = rfc9162.check_checkpoint(checkpoint.note, key)
                assert origin == f"servicetrail/sat/{place.month}"
                signed[place.month] = (size, root)
            size, root = signed[place.month]
            proof = StoredTree(conn, "sat", place.month).inclusion(place.index, size)
            data = rfc9162.canonical(leaf)
            leaf_hash = rfc9162.sha256(b"\x00" + data)
            assert rfc9162.rfc_inclusion_ok(place.index, size, leaf_hash, proof, root)
            checked += 1
    return checked
