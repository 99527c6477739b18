#!/usr/bin/env python3
"""What a seal costs on a fresh PostgreSQL connection (every CLI command's), as a read's
seal: one access-log leaf queued for this month, sealed, then rolled back (the store is left
as it was). Prints the seal's wall time (the server's planning and work with the client's)
and its transaction's locks (pg_locks rows) on the logs' relations (log_* tables, partitions
and indexes): each relation locked is one it opened. Run in the folder of the store's signing key.

    PYTHONPATH=src .venv/bin/python bench/seal_fresh.py \
        postgresql+psycopg://postgres@127.0.0.1:PORT/DB [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from servicetrail import signing
from servicetrail.signing import log_prefix
from servicetrail.store import merkle_log

_LOCKED = (
    "SELECT count(*) FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation "
    "WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'log\\_%'"
)


def main(url: str, rounds: int) -> None:
    engine = create_engine(url, pool_size=1)
    signer = signing.signer_for(url)
    month = datetime.now(UTC).strftime("%Y-%m")
    walls, locked = [], []
    for _ in range(rounds):
        engine.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # the connection made outside the time
            conn.rollback()
            with conn.begin() as transaction:
                merkle_log.queue_leaves(conn, "access", [(10**12, month, bytes(32), None)])
                began = time.perf_counter()
                merkle_log.seal(conn, signer, log_prefix())
                walls.append((time.perf_counter() - began) * 1000)
                locked.append(int(conn.execute(text(_LOCKED)).scalar_one()))
                transaction.rollback()
    print(
        f"seal on a fresh connection: wall ms median {statistics.median(walls):.1f} (least "
        f"{min(walls):.1f}); locks on the logs' relations {min(locked)}-{max(locked)}"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
