"""The trail the tests of signed retirements start from (PostgreSQL): records in three old
months and the current one, sealed; the wipe of an intruder with the database, which looks
like retention's but signs nothing; and `log verify`'s words for a month so wiped. Shared by
test_log_lifecycle, test_log_retirement and test_log_roots."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from servicetrail.store.log_kept import Kept, kept_checkpoints
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.partitions import existing_months
from servicetrail.store.writer import append_records
from tests.intruder import intrude
from tests.store.log_fixtures import records_in, store_key, this_month

OLD_MONTHS = ("2025-01", "2025-02", "2025-03")


def sealed_trail(engine: Engine) -> None:
    """Records in three old months and the current one, sealed."""
    with engine.begin() as conn:
        append_records(conn, records_in((*OLD_MONTHS, this_month())))
    seal_store(engine)


def wiped_as_retention_wipes(engine: Engine) -> None:
    """What an intruder with the database does to every month before the current one: what
    retention does, leaves, tiles and partitions gone, checkpoints left."""
    with engine.connect() as conn:
        old = sorted(m for m in existing_months(conn) if f"{m[0]:04d}-{m[1]:02d}" < this_month())
    intrude(
        engine,
        *(
            (f"DELETE FROM {table} WHERE month < :m", {"m": this_month()})
            for table in ("log_leaf", "log_node", "log_pending")
        ),
        *(
            (f"DROP TABLE {table}_p{year:04d}_{number:02d}", {})
            for year, number in old
            for table in ("sat_record", "sat_payload", "sat_visibility")
        ),
    )


def unsigned(month: str, size: int = 3) -> str:
    """`log verify`'s finding for a month wiped with no signed retirement."""
    return (
        f"log servicetrail/sat/{month} has no leaves, but checkpoints up to size {size}, "
        "and no signed retirement"
    )


def kept_of(engine: Engine, notes: list[str]) -> Kept:
    """The checkpoints kept aside (`log verify --kept`), trusted by the store's key."""
    return kept_checkpoints(notes, "servicetrail/sat", {store_key(engine).verifier_key})
