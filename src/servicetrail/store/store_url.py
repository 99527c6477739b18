"""The store's URL as servicetrail reads it (`database_url`: the settings' default, PostgreSQL's
driver, libpq's list of servers) and as it may be shown (`shown_url`: without its password).

Apart from store.engine, which opens engines: this is string work on a URL alone, with no
connection, pool or schema in it, and the command line reads and shows a URL (an error's
text, a store in memory refused) without opening anything."""

from __future__ import annotations

import re

from sqlalchemy import exc
from sqlalchemy.engine import make_url

from .. import settings


def database_url(explicit: str | None = None) -> str:
    url = explicit or settings.current().database_url
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return _hosts_as_parameters(url)


# libpq's URL names several servers, tried in turn, as `host1:5432,host2:5433`; SQLAlchemy reads
# only one host and port there (the rest was "its port is not a number", audit 55h) and takes
# the list as parameters, `?host=host1,host2&port=5432,5433`, which it hands to libpq as it is
_SERVERS = re.compile(
    r"(postgresql\+psycopg://)((?:[^:/@]*(?::[^@]*)?@)?)([^/?#@]*,[^/?#@]*)(.*)", re.S
)
_SERVER = re.compile(r"(\[[^\]]*\]|[^:]*)(?::([0-9]*))?")


def _hosts_as_parameters(url: str) -> str:
    """A URL naming several servers in libpq's way, written as SQLAlchemy reads it; any other
    as it is (one naming a port that is not a number is refused for it)."""
    named = _SERVERS.fullmatch(url)
    if not named:
        return url
    scheme, user, servers, rest = named.groups()
    rest, _, fragment = rest.partition("#")
    path, _, query = rest.partition("?")
    if any(kept.split("=", 1)[0] in ("host", "port") for kept in query.split("&")):
        return url  # named twice: SQLAlchemy says it cannot mix the two
    hosts, ports = [], []
    for server in servers.split(","):
        parts = _SERVER.fullmatch(server)
        if not parts:
            return url
        hosts.append(parts[1].removeprefix("[").removesuffix("]"))
        ports.append(parts[2] or "")
    if not any(ports):
        return url  # `host1,host2` alone SQLAlchemy reads, and passes on
    listed = f"host={','.join(hosts)}&port={','.join(ports)}"
    query = f"{query}&{listed}" if query else listed
    return f"{scheme}{user}{path}?{query}" + (f"#{fragment}" if fragment else "")


# libpq takes `password` (and `sslpassword`, a client key's) among the URL's parameters too
_SECRET_PARAMETER = re.compile(r"([?&][^=&#]*password[^=&#]*=)[^&#]*", re.IGNORECASE)


def shown_url(url: str) -> str:
    """A store's URL as it may be shown (an error, a log): without its password, whether
    between :// and @ or as a parameter (audit 26c)."""
    try:
        parsed = make_url(url)
        if "@" in (parsed.host or ""):  # read up to the password's own @: its end was the host
            raise ValueError("a password's @ not written %40")
        query = {k: "***" if "password" in k.lower() else v for k, v in parsed.query.items()}
        shown = parsed.set(query=query).render_as_string(hide_password=True)
        shown = shown.replace("=%2A%2A%2A", "=***")  # as the password between :// and @ is
        # the servers' list (`_hosts_as_parameters`) as written, not escaped
        return shown.replace("%2C", ",").replace("%3A", ":")
    except (exc.ArgumentError, ValueError):  # not a URL SQLAlchemy reads (a port of letters
        # raised ValueError, and the error's own message failed into a traceback): whatever
        # stands between :// and the last @ goes (a password may hold an @ of its own)
        scheme, found, rest = url.partition("://")
        if found and "@" in rest:
            url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return _SECRET_PARAMETER.sub(r"\1***", url)
