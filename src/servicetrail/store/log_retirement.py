"""Retention's signed statement that a month's log ended (its retirement), the months an
older retention dropped without one, and which retirements a trusted key signed (`log
verify`'s rule, and the list `log retirements` prints).

`log verify` takes a month with checkpoints and no leaves for retired only with a retirement
signed by a trusted key naming its last checkpoint: someone with the database can drop a
month as retention does, but cannot sign it (audit 46d). Retention signs as it drops
(`retire_month`); months dropped before retirements were signed wait for the operator to
name them (`sign_earlier_retirements`, `db upgrade --sign-retirements`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..domain.checkpoint import (
    BY_HAND,
    BY_RETENTION,
    NoteError,
    Retirement,
    Verifier,
    b64,
    parse_retirement,
    parse_verifier_key,
    verify_retirement,
)
from ..domain.times import format_time
from ..signing import Signer, ed25519_check
from .log_records import FAMILY as RECORD_FAMILY
from .log_tables import log_leaf, log_pending, log_retirement, log_unsealed
from .log_tree import any_text, latest_checkpoint
from .log_families import FAMILIES, family_named
from .merkle_log import lock_family, lock_sealing, remember_key


class NoSigner(Exception):
    """Logs to retire that have checkpoints, and no key to sign their retirements."""

    def __init__(self, months: list[str]) -> None:
        super().__init__(", ".join(months))
        self.months = months


def retire_month(
    conn: Connection, family: str, month: str, signer: Signer | None, prefix: str, by_hand: bool
) -> None:
    """Retention: store the retirement of a month's last checkpoint, signed (`log verify`
    takes no month for retired without one: audit 46d) with how its records went (`by_hand`:
    their partitions were dropped by hand before this retention; domain.checkpoint.BY_HAND),
    and remove its queue and its log_unsealed row (its checkpoints stay). Its leaves and
    tiles are partitions of their own, which the caller drops whole with the month's entries
    (store.log_partitions; deleted here row by row, a month at 700 reads a second took over
    an hour: finding 52b 1). The family's lock keeps a writer from appending to the month
    meanwhile. PostgreSQL's only, as retention is (the CLI refuses it on SQLite)."""
    if conn.dialect.name != "postgresql":
        # a SQLite store keeps its trail and its logs whole (its triggers refuse a leaf's
        # delete), and no caller retires one of its months: drop_older_than reads
        # PostgreSQL's catalog, drop_access_older_than refuses SQLite
        raise ValueError("retiring a log's month is PostgreSQL's only: SQLite keeps its logs")
    lock_family(conn, family)
    _sign_retirement(conn, family, month, signer, prefix, BY_HAND if by_hand else BY_RETENTION)
    for table in (log_pending, log_unsealed):
        conn.execute(table.delete().where(table.c.family == family, table.c.month == month))


def _sign_retirement(
    conn: Connection, family: str, month: str, signer: Signer | None, prefix: str, how: str | None
) -> bool:
    """A signed retirement of the log at its last checkpoint, saying `how` (None: not known);
    none for a log never sealed (a month with no records), which has nothing to show."""
    last = latest_checkpoint(conn, family, month)
    if last is None:
        return False
    if signer is None:
        raise NoSigner([month])
    now = datetime.now(timezone.utc)
    # the key listed, as a seal lists it: `log verify` without a trust file trusts the
    # store's list, and a key that had not sealed here yet was missing from it
    remember_key(conn, signer, now)
    origin = family_named(family).origin(prefix, month)
    conn.execute(
        log_retirement.insert().values(
            origin=origin,
            family=family,
            month=month,
            note=signer.retirement(origin, last.size, last.root, how),
            created_at=now,
        )
    )
    return True


def retirements_unsigned(conn: Connection, signer: Signer | None = None) -> list[tuple[str, str]]:
    """The logs (family, month) retention dropped before it signed retirements (the rows
    migration 0022 wrote with no note) that have no signed one yet, and are gone as retention
    leaves a month: such a row is no more than a request anyone with the database can add, and
    one naming a month still whole had its retirement signed, which then let that month be
    wiped past `log verify` (audit 46j). With `signer`, only a note it signed counts: any
    other note, a junk one of an intruder's, had the month skipped for ever (audit 46l)."""
    # here, not at the top: partitions imports this module
    from .partitions import month_dropped

    now = datetime.now(timezone.utc)
    current = f"{now.year:04d}-{now.month:02d}"
    rows = conn.execute(
        select(log_retirement.c.family, log_retirement.c.month)
        .where(log_retirement.c.note.is_(None))
        .distinct()
        .order_by(log_retirement.c.family, log_retirement.c.month)
    ).all()
    done = {
        (str(f), str(m))
        for f, m, note in conn.execute(
            select(log_retirement.c.family, log_retirement.c.month, log_retirement.c.note).where(
                log_retirement.c.note.is_not(None)
            )
        )
        if signer is None or _signed_by(signer, str(note))
    }
    return [
        (str(f), str(m))
        for f, m in rows
        if (str(f), str(m)) not in done
        and f == RECORD_FAMILY
        and str(m) < current
        and month_dropped(conn, str(m))
        and not _has_leaves(conn, str(f), str(m))
    ]


def _signed_by(signer: Signer, note: str) -> bool:
    try:
        verify_retirement(note, [parse_verifier_key(signer.verifier_key)], ed25519_check)
    except NoteError:
        return False
    return True


def _has_leaves(conn: Connection, family: str, month: str) -> bool:
    return (
        conn.execute(
            select(log_leaf.c.leaf_index)
            .where(log_leaf.c.family == family, log_leaf.c.month == month)
            .limit(1)
        ).first()
        is not None
    )


def sign_earlier_retirements(
    conn: Connection, signer: Signer, prefix: str, months: Collection[str]
) -> list[str]:
    """Sign those of `months` that `retirements_unsigned` lists (`db upgrade
    --sign-retirements` with the key); returns the months signed. How their records went is
    not recorded: the retention that dropped them did not say."""
    lock_sealing(conn)
    return [
        month
        for family, month in retirements_unsigned(conn, signer)
        if month in months and _sign_retirement(conn, family, month, signer, prefix, None)
    ]


def signed_retirements(
    rows: Sequence[Any], prefix: str, verifiers: list[Verifier]
) -> dict[tuple[str, str], set[Retirement]]:
    """Each log's retirements (rows of family, month, note) that a trusted key signed, over
    the log's own origin: an unsigned, forged or edited one, or one of another log, retires
    nothing."""
    retired: dict[tuple[str, str], set[Retirement]] = {}
    for family, month, note in rows:
        signed = _signed(str(family), str(month), note, prefix, verifiers)
        if signed is not None:
            retired.setdefault((str(family), str(month)), set()).add(signed)
    return retired


def _signed(
    family: str, month: str, note: str | None, prefix: str, verifiers: list[Verifier]
) -> Retirement | None:
    if note is None or family not in {f.family for f in FAMILIES}:
        return None
    try:
        signed = verify_retirement(note, verifiers, ed25519_check)
    except NoteError:
        return None
    return signed if signed.origin == family_named(family).origin(prefix, month) else None


_HOW = {BY_RETENTION: "retention", BY_HAND: "by_hand", None: "not_recorded"}


def listed_retirements(
    conn: Connection, prefix: str, verifiers: list[Verifier]
) -> list[dict[str, Any]]:
    """Each retired log once, newest month first (`log retirements`): its origin, month, how
    its records went as its note says, when it was retired, its last size and root, and
    whether a trusted key signed it (`verified`, as `log verify` takes it). Of a month's rows
    (a 0022 row without a note beside the one signed later, an intruder's), the one signed,
    else the newest that reads as a retirement, else the newest: a junk row beside a signed
    one does not hide it, and one alone is shown for what it is."""
    with any_text(conn):
        rows = conn.execute(
            select(
                log_retirement.c.origin,
                log_retirement.c.family,
                log_retirement.c.month,
                log_retirement.c.note,
                log_retirement.c.created_at,
            ).order_by(
                log_retirement.c.month.desc(),
                log_retirement.c.family.desc(),  # the trail's log ("sat") before the access log's
                log_retirement.c.created_at.desc(),
            )
        ).all()
    listed: dict[tuple[str, str], dict[str, Any]] = {}
    for origin, family, month, note, at in rows:
        signed = _signed(str(family), str(month), note, prefix, verifiers)
        said = signed or _said(note)
        shown = {
            # the note's own where one reads: the column is no more than anyone writes there
            "origin": said.origin if said else _text(origin),
            "month": _text(month),
            "how": _HOW[said.how] if said else "not_recorded",
            "retired_at": format_time(at),
            "size": said.size if said else None,
            "root": b64(said.root) if said else None,
            "verified": signed is not None,
        }
        first = listed.setdefault((str(family), str(month)), shown)
        if first is not shown and _rank(shown) > _rank(first):
            listed[(str(family), str(month))] = shown
    return list(listed.values())


def _text(stored: Any) -> str:
    """Stored text as JSON can carry it: SQLite's not UTF-8 (read as lone surrogates, which
    no JSON encoder takes) with its bad bytes escaped, as `\\xff`."""
    return str(stored).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _said(note: str | None) -> Retirement | None:
    """What a note says, signed or not (None: no note, or none that reads as a retirement)."""
    try:
        return None if note is None else parse_retirement(note)[0]
    except NoteError:
        return None


def _rank(shown: dict[str, Any]) -> tuple[bool, bool]:
    return shown["verified"], shown["size"] is not None


def verifiers_of(keys: set[str]) -> list[Verifier]:
    verifiers = []
    for key in sorted(keys):  # one that is no key (a stored one not UTF-8) verifies nothing
        try:
            verifiers.append(parse_verifier_key(key))
        except NoteError:
            continue
    return verifiers
