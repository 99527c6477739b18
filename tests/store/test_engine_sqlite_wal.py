"""An SQLite store's -wal file, under a process that keeps the store open (a server)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from servicetrail.store import engine as store_engine


def test_the_wal_is_cut_back_once_a_read_that_held_it_ends(tmp_path: Path, monkeypatch) -> None:
    """A read held open through an ingest kept every checkpoint from starting the WAL over,
    and the file stayed at its peak (1.2 GB after 200,000 records) while the server ran
    (audit 54g). Played small: a limit of 64 KiB, 2 MB written past a held read."""
    # raising=False: without the limit, the test fails on the size, not on the name
    monkeypatch.setattr(store_engine, "WAL_KEPT_BYTES", 64 * 1024, raising=False)
    path = tmp_path / "st.db"
    engine = store_engine.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    wal = Path(f"{path}-wal")
    with engine.connect() as reader:
        reader.execute(text("BEGIN"))
        reader.execute(text("SELECT count(*) FROM t")).scalar()
        for _ in range(8):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (zeroblob(256 * 1024))"))
        assert wal.stat().st_size > 2 * 1024 * 1024
        reader.execute(text("COMMIT"))
    with engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
    with engine.begin() as conn:  # a write after the checkpoint starts the WAL over
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert wal.stat().st_size <= 64 * 1024
    engine.dispose()
