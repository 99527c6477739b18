"""A temporary folder too small for the waiting lines' database, as SQLite says so."""

from __future__ import annotations

import sqlite3


def small_temporary_databases(monkeypatch) -> None:
    """SQLite's own "database or disk is full" for the waiting lines' database, as a full
    temporary folder gives it: a database of at most two pages."""
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.execute("PRAGMA max_page_count = 2")
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)
