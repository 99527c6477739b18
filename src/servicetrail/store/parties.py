"""Parties' names from the registry, for the screens to show beside Party IDs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from .schema import party


def party_name(conn: Connection, party_id: str) -> str:
    """The Party's registered name, else its ID (a Party the registry has no name for)."""
    name = conn.execute(select(party.c.name).where(party.c.party_id == party_id)).scalar()
    return name or party_id


def party_names(conn: Connection, party_ids: Iterable[str | None]) -> dict[str, str]:
    """The registered names of these Parties (those it has), by Party ID."""
    wanted = sorted({p for p in party_ids if p})
    if not wanted:
        return {}
    rows = conn.execute(select(party.c.party_id, party.c.name).where(party.c.party_id.in_(wanted)))
    return {party_id: name for party_id, name in rows}


def party_meant(conn: Connection, typed: str) -> str | None:
    """The registered Party whose ID is `typed` in upper case, when `typed` is not: party ids
    are upper-case ASCII (SPEC section 4). ASCII's upper case alone: Python's took a long s
    ("\u017f") for an S. A look-up by primary key."""
    if not typed.isascii() or typed == typed.upper():
        return None
    meant = typed.upper()
    found = conn.execute(select(party.c.party_id).where(party.c.party_id == meant)).scalar()
    return None if found is None else str(found)


def party_ids(engine: Engine) -> set[str]:
    """Every Party the registry knows (a few hundred: the DCC's Users)."""
    with engine.connect() as conn:
        return {str(p) for (p,) in conn.execute(select(party.c.party_id))}
