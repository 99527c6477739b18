"""Which file a SQLite store's URL opens, for the store (its mode), its signing key (beside
it) and the command line (never written over). A `file:` URI names its file its own way:
read as a path, `file:/media/copy.db` was `./file:/media/copy.db`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.util import asbool


def uri_named(url: URL) -> bool:
    """Whether SQLite takes the URL's database as a `file:` URI (`?uri=true`), as SQLAlchemy
    reads the flag (`uri=false` is false)."""
    return url.drivername.startswith("sqlite") and asbool(url.query.get("uri", False))


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite store's URL opens (a `file:` URI's path too), None for another
    engine or a store in memory."""
    resolved = make_url(url)
    database = str(resolved.database or "")
    if not resolved.drivername.startswith("sqlite") or database in ("", ":memory:"):
        return None
    if uri_named(resolved) and database.startswith("file:"):
        if resolved.query.get("mode") == "memory":
            return None
        rest = database.removeprefix("file:").split("?", 1)[0].split("#", 1)[0]
        if rest.startswith("//"):  # file://host/path: SQLite takes an empty or local host
            rest = rest[2:][rest[2:].find("/") :] if "/" in rest[2:] else ""
        return Path(unquote(rest)) if rest and rest != ":memory:" else None
    return Path(database)


def in_memory(url: str) -> bool:
    """Whether the URL names a SQLite store in memory (`sqlite://`, `sqlite:///`, what an
    empty variable makes of `sqlite:///$DB`, or `:memory:`): one that keeps nothing once its
    process ends, and of which each thread of a server gets an empty one of its own."""
    try:
        parsed = make_url(url)
        if not parsed.drivername.startswith("sqlite"):
            return False
        # SQLite's memdb VFS keeps a named file's database in memory (review 25e)
        return sqlite_file(url) is None or parsed.query.get("vfs") == "memdb"
    except Exception:  # not a URL at all: opening it says why
        return False
