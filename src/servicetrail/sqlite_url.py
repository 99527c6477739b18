"""Which file a SQLite store's URL opens, for the store (its mode), its signing key (beside
it) and the command line (never written over). A `file:` URI names its file its own way:
read as a path, `file:/media/copy.db` was `./file:/media/copy.db`."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.util import asbool


def uri_named(url: URL) -> bool:
    """Whether SQLite takes the URL's database as a `file:` URI (`?uri=true`), as SQLAlchemy
    reads the flag (`uri=false` is false)."""
    return url.drivername.startswith("sqlite") and asbool(url.query.get("uri", False))


# SQLite's own URI parameters (sqlite.org/uri.html): it reads them in a `file:` URI only
URI_PARAMETERS = ("cache", "immutable", "mode", "nolock", "psow", "vfs")


def parameters_refused(url: URL) -> str | None:
    """Why a SQLite URL's parameters are not taken, None when they are. Outside a `file:` URI
    with `uri=true`, SQLAlchemy passed SQLite none of them: `?mode=ro` opened the file to
    write, and made it (review 47b). SQLite ignores an unknown one, and servicetrail's own
    settings override the driver's (`timeout`, `check_same_thread`): each would be a silent
    no-op, so only `uri` and SQLite's URI parameters are taken."""
    if not url.drivername.startswith("sqlite"):
        return None
    given = [name for name in url.query if name != "uri"]
    twice = [name for name, value in url.query.items() if isinstance(value, tuple)]
    if twice:  # SQLAlchemy passed SQLite "mode=('ro', 'rw')", a file made first (review 47j)
        return f"the SQLite URL gives its parameter {twice[0]!r} more than once: give it once"
    unknown = [name for name in given if name not in URI_PARAMETERS]
    if unknown:
        return (
            f"the SQLite URL's parameter {unknown[0]!r} is not one servicetrail takes (a "
            f"file: URI with uri=true takes SQLite's own: {', '.join(URI_PARAMETERS)})"
        )
    database = str(url.database or "")
    if given and not (uri_named(url) and database.startswith("file:")):
        query = "&".join(f"{name}={url.query[name]}" for name in given)
        # a plain path as a URI's: SQLite decodes %-escapes and ends the path at ? or #, so
        # /x/a%20b.db was told as a URL that opened /x/a b.db (review 47j)
        path = database[5:] if database.startswith("file:") else quote(database, safe="/")
        return (
            f"SQLite reads {given[0]!r} only in a file: URI with uri=true: "
            f"write sqlite:///file:{path}?{query}&uri=true"
        )
    return None


def sqlite_true(value: object) -> bool:
    """A URI's boolean as SQLite reads it (sqlite3GetBoolean): a number other than 0, or
    `yes`, `on`, `true` in any case; `immutable=0` is not immutable."""
    text = str(value or "")
    if text[:1].isdigit():
        return int(re.match(r"\d+", text).group()) != 0  # type: ignore[union-attr]
    return text.lower() in ("yes", "on", "true", "full", "extra")


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
        memdb = uri_named(parsed) and parsed.query.get("vfs") == "memdb"  # else not read
        return sqlite_file(url) is None or memdb
    except Exception:  # not a URL at all: opening it says why
        return False
