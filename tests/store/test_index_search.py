"""store.index_search: a search by the viewer's own Request ID on PostgreSQL runs on the read's
generic plan (planned once a connection: planned for its values, each search spent 4-5 ms of
its ~5 planning, audit 48b), and that plan probes the viewer's index for each record of the
Request ID rather than reading all of the viewer's index rows."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import Search
from servicetrail.store.queries import search_page
from servicetrail.store.writer import append_records
from tests.personas import ESME_1, SE_IS, SOUTHENERGY, START, load_personas
from tests.store.work_counted import positional, postgres_nodes, statements_sent


def test_an_own_request_id_probes_the_viewers_index_for_its_records_alone(
    pg_engine: Engine,
) -> None:
    """SOUTHENERGY holds 400 index rows of its own; its Request ID has one record. The generic
    plan of an EXISTS made a semi-join of it, and hashed all of the supplier's index rows
    (at 1M: 112,840 rows, 0.5 s)."""
    world = load_personas(pg_engine)
    asked = f"{SE_IS}:{ESME_1}:5000"
    with pg_engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    START + timedelta(days=200, minutes=n),
                    "request",
                    asked if n == 0 else f"{SE_IS}:{ESME_1}:{5000 + n}",
                    "4.1.1",
                    SE_IS,
                    ESME_1,
                    "",
                    "<p>",
                )
                for n in range(400)
            ],
        )
    viewer = world.viewer(SOUTHENERGY)
    with statements_sent(pg_engine) as sent, pg_engine.connect() as conn:
        found, _ = search_page(conn, viewer, Search(request_id=asked), 20)
        sets = [sql for sql, _ in sent if "plan_cache_mode" in sql]
    assert [i["request_id"] for i in found] == [asked]
    assert not any("force_custom_plan" in sql for sql in sets), "planned for its values"
    statement, named = next((sql, p) for sql, p in sent if "sat_record" in sql)
    nodes = postgres_nodes(pg_engine, viewer, *positional(statement, named))
    index_rows = sum(
        rows * loops for kind, rel, loops, rows, _ in nodes if "visibility" in (rel or "")
    )
    assert index_rows <= 1, nodes
