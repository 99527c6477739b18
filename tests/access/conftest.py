"""What the access-log tests share."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.store.writer import append_records
from tests import personas as P

LATE_REQUEST_ID = f"{P.NP_IS}:{P.ESME_1}:77"


@pytest.fixture
def lands_after_the_first_read(engine):
    """Stores one more NORTHPOWER request (another connection, committed) right after the
    first statement that reads the trail runs, on any engine: what a concurrent ingest does
    to an export."""
    landed: list[int] = []

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        reads_trail = statement.lstrip().upper().startswith(("SELECT", "WITH"))
        # a PostgreSQL report's COPY runs on psycopg's own cursor, unseen here: its settings
        # statement comes just before it
        reads_trail &= "sat_record" in statement or "set_config('jit'" in statement
        if landed or not reads_trail:
            return
        landed.append(1)
        late = SatRecord(
            P.t("2025-06-01T00:00:00Z"), "request", LATE_REQUEST_ID,
            "4.1.1", P.NP_IS, P.ESME_1, "", "<late>",
        )  # fmt: skip
        with engine.begin() as other:
            assert append_records(other, [late])[0] == 1

    # every engine's: the CLI opens its own
    event.listen(Engine, "after_cursor_execute", after)
    yield landed
    event.remove(Engine, "after_cursor_execute", after)
