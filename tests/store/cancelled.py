"""An administrator's cancel (pg_cancel_backend) of a statement once it is under way.

A fixed sleep before the cancel fired it, on a loaded machine, before the test's own
client had sent the statement: the backend, idle between statements, had nothing to cancel,
and the statement then ran to its end."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.live_server import PATIENCE


def cancel_once(engine: Engine, pid: int, under_way: str) -> threading.Thread:
    """Started: a thread that cancels backend `pid`'s statement once its row of
    pg_stat_activity meets `under_way` (an SQL condition); join it when done. It gives up,
    cancelling nothing, after PATIENCE: the statement then runs on, and its test fails."""

    def cancel() -> None:
        # pg_stat_activity is read once a transaction unless its snapshot is cleared
        look = text(
            "SELECT pg_stat_clear_snapshot(), count(*) FROM pg_stat_activity "
            f"WHERE pid = :pid AND ({under_way})"
        )
        deadline = time.monotonic() + PATIENCE
        with engine.connect() as admin:
            while time.monotonic() < deadline:
                if admin.execute(look, {"pid": pid}).one()[1]:
                    admin.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
                    return
                admin.rollback()
                time.sleep(0.02)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    return canceller
