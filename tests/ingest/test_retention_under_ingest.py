"""`retention` run while an ingest goes on (PostgreSQL: only it has retention; on SQLite the
command refuses, and nothing else drops a month). The months it removes take the records the
ingest had already committed there: the summary still counts them loaded, so that its counts
add up to the input's lines, and says which are gone (audit 61d: it said them loaded, nothing
more)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from servicetrail.ingest.summary import Summary
from servicetrail.ingest.trail_load import ingest
from servicetrail.store.engine import StoreError
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.partitions import drop_months
from tests.ingest.sat_line import line
from tests.store.log_fixtures import store_key


def test_an_ingest_says_which_loaded_records_retention_took_while_it_ran(
    pg_engine, tmp_path, use_settings
):
    path = tmp_path / "sat.jsonl"  # March 2025, past any retention that keeps a month
    path.write_text("".join(line(n) + "\n" for n in range(30)), encoding="utf-8")
    use_settings(SERVICETRAIL_BATCH=10)
    dropped: list[str] = []

    def retention_after_the_first_batch(_: int) -> None:
        if not dropped:  # as `servicetrail retention --keep-months 1` does
            seal_store(pg_engine)
            dropped.extend(drop_months(pg_engine, 1, signer=store_key(pg_engine)))

    summary = ingest(pg_engine, [path], progress=retention_after_the_first_batch)
    assert "sat_record_p2025_03" in dropped
    # the first batch went with its month; the two after it were refused, naming retention
    assert summary.line() == (
        "loaded 10, rejected 20, skipped 0 duplicates; 10 of those loaded are no longer "
        "stored: retention removed their month (2025-03: 10) while this ran"
    )
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sat_record")).scalar() == 0


@pytest.mark.parametrize("stop", [KeyboardInterrupt, StoreError])
def test_an_ingest_stopped_part_way_says_it_too(
    pg_engine, tmp_path, use_settings, stop, monkeypatch
):
    """Stopped after retention took its month (Ctrl-C, or a refusal of ours such as a month
    dropped by hand): the summary said on a stop ("stopped part way; kept from before: ...")
    said the records loaded, nothing of retention (63d)."""
    from servicetrail.ingest import trail_load

    path = tmp_path / "sat.jsonl"
    path.write_text("".join(line(n) + "\n" for n in range(20)), encoding="utf-8")
    use_settings(SERVICETRAIL_BATCH=10)
    monkeypatch.setattr(trail_load, "CHUNK_LINES", 10)  # progress is told a batch each
    calls: list[int] = []

    def retention_then_a_stop(_: int) -> None:
        calls.append(1)
        if len(calls) == 1:
            seal_store(pg_engine)
            drop_months(pg_engine, 1, signer=store_key(pg_engine))
        else:
            raise stop

    summary = Summary()
    with pytest.raises(stop):
        ingest(pg_engine, [path], progress=retention_then_a_stop, summary=summary)
    assert summary.retired == {"2025-03": 10}, summary.line()
    assert summary.line().endswith("retention removed their month (2025-03: 10) while this ran")
