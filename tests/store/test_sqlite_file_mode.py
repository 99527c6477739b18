"""A new SQLite store holds every Party's payloads: it is made readable by its owner alone,
its write-ahead log and shared-memory files too, as the signing key and the reject files are
(audit 22d: demo.db and servicetrail.db were made 0644)."""

from __future__ import annotations

import os
import stat

from sqlalchemy import text

from servicetrail.store.engine import make_engine
from servicetrail.store.migrate import upgrade_to_head


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_store_and_its_wal_are_owner_only(tmp_path) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which gave 0644
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
        upgrade_to_head(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO party (party_id, name) VALUES ('P1', 'One')"))
            assert mode(tmp_path / "new.db") == 0o600
            assert mode(tmp_path / "new.db-wal") == 0o600
            assert mode(tmp_path / "new.db-shm") == 0o600
        engine.dispose()
    finally:
        os.umask(old_umask)


def test_a_store_that_exists_keeps_its_mode(tmp_path) -> None:
    shared = tmp_path / "shared.db"
    shared.touch(mode=0o640)
    os.chmod(shared, 0o640)  # an operator's choice, e.g. a group of readers
    engine = make_engine(f"sqlite:///{shared}")
    upgrade_to_head(engine)
    engine.dispose()
    assert mode(shared) == 0o640


def test_a_path_with_a_tilde_is_taken_as_sqlite_takes_it(tmp_path, monkeypatch) -> None:
    """SQLite does not expand `~`: sqlite:///~/x.db is ./~/x.db, refused here for its missing
    folder, with no stray file made in the home folder (a review found one)."""
    import pytest

    from servicetrail.store.engine import StoreError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(StoreError, match="does not exist"):
        make_engine("sqlite:///~/stray.db")
    assert list((tmp_path / "home").iterdir()) == []


def test_a_symlink_to_a_store_still_to_be_made_makes_it_owner_only(tmp_path) -> None:
    (tmp_path / "link.db").symlink_to(tmp_path / "target.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'link.db'}")
    upgrade_to_head(engine)
    engine.dispose()
    assert mode(tmp_path / "target.db") == 0o600
