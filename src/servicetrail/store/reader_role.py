"""The role every Party's read runs as on PostgreSQL: the store's own, which the store names
(migration 0019). One role shared by every store on a server let the owner of any other
store take it and read every Party's records here (audit 29a)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Connection

from .limits import StoreMisconfigured

LEGACY_READER_ROLE = "servicetrail_reader"  # the shared role of stores before 0019
NAMED_BY = "servicetrail_reader_role"  # the store's function that names its role
_KNOWN_AS = "servicetrail.reader_role"


def reader_role(conn: Connection) -> str:
    """The store's reader role, asked once per connection to the server: `conn.info` lives
    with the driver's connection in the pool, so the device search, a hot path, pays no
    round trip for it."""
    known = conn.info.get(_KNOWN_AS)
    if known is None:
        known = conn.info[_KNOWN_AS] = _asked(conn.connection.driver_connection)
    return str(known)


def _asked(driver: Any) -> str:
    outside_a_transaction = driver.info.transaction_status == TransactionStatus.IDLE
    try:
        role = driver.execute(f"SELECT {NAMED_BY}()").fetchone()[0]
    except psycopg.errors.UndefinedFunction:
        # a store at 0019 or later always has it: one that lost it is the administrator's
        if outside_a_transaction:
            driver.rollback()
        raise StoreMisconfigured() from None
    if outside_a_transaction:
        # ended here: the read's own first statement begins its transaction (and snapshot)
        driver.commit()
    return str(role)
