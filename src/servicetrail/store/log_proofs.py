"""What the API serves of the logs (SPEC section 7): a record's inclusion proof, for a viewer
the rule lets see it, and consistency proofs between checkpoints."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..domain.checkpoint import b64
from ..domain.merkle import ProofError
from ..domain.visibility import Access, Viewer
from .access_writer import ACCESS_FAMILY
from .log_records import FAMILY, is_queued, sealed_leaf_of
from .log_tables import log_checkpoint
from .log_tree import (
    LogDamaged,
    StoredTree,
    checkpoint_at,
    latest_checkpoints,
    verifier_keys,
)
from .queries import get_visible
from .read_transaction import owner_read_limits


class NotSealed(LookupError):
    """The record is stored but not yet in a signed checkpoint (its ingest is still running)."""

    message = "the record is not yet in a signed checkpoint"


class NotInLog(LookupError):
    """The record is stored but is neither a leaf of its log nor queued to be one: every
    writer appends a record's leaf (or queues it) in the record's own transaction, so it was
    stored, or its leaf removed, behind servicetrail's back (`log verify` names it)."""

    message = (
        "the record is not in its log: it was stored, or its leaf removed, outside "
        "servicetrail (servicetrail log verify names it)"
    )


class LogNotWhole(NotInLog):
    """The record's leaf is stored, but not the rest of its log that a proof is made from
    (leaves or hashes deleted behind servicetrail's back): it was a 500 (audit 30b)."""

    message = (
        "the record's log is no longer whole: leaves or hashes a proof needs were removed "
        "outside servicetrail (servicetrail log verify names what changed)"
    )


class NoConsistency(ValueError):
    """A consistency proof that cannot be given; `parameter` names the request's culprit."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class AuditorsOnly(PermissionError):
    """A consistency proof of an access log asked for by a Party's account. Access-log leaves
    commit to no secret (SPEC section 8: the leaf is the entry's JSON), and an entry is easy
    to guess but for a detail or two (its id and time are bracketed by the asker's own
    entries), so a leaf hash in a proof let one Party confirm which Device another Party's
    analyst looked at, and how many records came back (audit, session 16)."""

    message = (
        "consistency proofs of the access logs are for auditors: their leaves are every "
        "Party's reads"
    )


def record_proof(conn: Connection, viewer: Viewer, record_id: int) -> dict[str, Any] | None:
    """The proof document of a record the viewer may see; None when it may not (or there is
    no such record). The salt goes only to a viewer with access "own"."""
    found = proof_with_record(conn, viewer, record_id)
    return None if found is None else found[1]


def proof_with_record(
    conn: Connection, viewer: Viewer, record_id: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The record as the viewer may see it (an API item), with its proof document."""
    # The rule's read runs as the viewer; the log's own tables are read as us, in the same
    # transaction (one COMMIT a proof, shared with its access-log entry). The read's
    # generic-plan setting stays: the leaf's statement then prunes the trail's partitions as
    # it runs instead of being planned afresh over them each time (0.36 ms, not 0.73, at 10M).
    item = get_visible(conn, viewer, record_id, then_as_owner=True)
    if item is None:
        return None
    sealed = sealed_leaf_of(conn, record_id, datetime.fromisoformat(item["logged_at"]))
    if sealed is None:
        raise NotSealed(record_id) if is_queued(conn, record_id) else NotInLog(record_id)
    checkpoint = sealed.checkpoint
    if checkpoint is None or checkpoint.size <= sealed.index:
        raise NotSealed(record_id)
    try:
        proof = StoredTree(conn, FAMILY, sealed.month).inclusion(sealed.index, checkpoint.size)
    except (LogDamaged, ProofError):
        raise LogNotWhole(record_id) from None
    document: dict[str, Any] = {
        "log": checkpoint.origin,
        "leaf_index": sealed.index,
        "leaf": sealed.leaf,
        "inclusion": [b64(h) for h in proof],
        "checkpoint": checkpoint.note,
    }
    if item["access"] == Access.OWN:
        document["payload_salt"] = sealed.salt.hex()
    return item, document


def logs_document(
    conn: Connection,
    current_key: str,
    auditor: bool,
    trusted: Callable[[list[str]], set[str] | None],
) -> dict[str, Any]:
    """`verifier_keys`: the keys the store lists that are `trusted` (signing.trusted_for,
    given the store's list; None: all of them), so that a key an intruder listed in the
    store is not published.

    The access logs' checkpoints are an auditor's only, as their consistency proofs are:
    the root of a small access log is a hash of a few entries and no secret, so a Party that
    knew its own entries beside another's could test guesses of that one against it (audit,
    session 19: a Party's read of a record confirmed in 90 s of guessing)."""
    owner_read_limits(conn)
    listed = verifier_keys(conn)
    accepted = trusted(listed)
    keys = [key for key in listed if accepted is None or key in accepted]
    if current_key not in keys:
        keys.append(current_key)
    return {
        "verifier_key": current_key,
        "verifier_keys": keys,
        "logs": [
            {"origin": c.origin, "checkpoint": c.note}
            for c in latest_checkpoints(conn)
            if auditor or c.family != ACCESS_FAMILY
        ],
    }


@dataclass(frozen=True)
class ConsistencyRequest:
    origin: str
    old_size: int
    new_size: int


_ACCESS_ORIGIN = re.compile(r".+/access/[0-9]{4}-[0-9]{2}")


def _family_of(conn: Connection, origin: str) -> str | None:
    """The family of the log `origin` names, by its checkpoints (None: it has none)."""
    found = select(log_checkpoint.c.family).where(log_checkpoint.c.origin == origin).limit(1)
    return cast(str | None, conn.execute(found).scalar())


def _names_an_access_log(family: str | None, origin: str) -> bool:
    """Whether `origin` is an access log's: by its checkpoints' family, or with none, by its
    form (which months have an access log is the auditor's to know too). The checkpoints
    first: a log prefix of one's own may end in `/access` (review, session 21)."""
    if family is not None:
        return family == ACCESS_FAMILY
    return _ACCESS_ORIGIN.fullmatch(origin) is not None


def consistency_document(
    conn: Connection, asked: ConsistencyRequest, auditor: bool
) -> dict[str, Any]:
    if asked.old_size < 1:
        raise NoConsistency("from", "must be 1 or more")
    if asked.old_size > asked.new_size:
        raise NoConsistency("from", "must not be greater than to")
    owner_read_limits(conn)  # a lock on the checkpoints held it, with its connection (audit 29a)
    family = _family_of(conn, asked.origin)
    if not auditor and _names_an_access_log(family, asked.origin):
        # before any size is looked up: a 422 for a size that is not a checkpoint's and a 403
        # for one that is let a Party list the access logs' sizes, every Party's reads at
        # each seal (audit 21c)
        raise AuditorsOnly(AuditorsOnly.message)
    if family is None:
        # a mistyped origin was said to be a wrong `to` (audit 38b)
        raise NoConsistency(
            "origin", f"no log {asked.origin!r} has a checkpoint (GET /api/v1/logs lists them)"
        )
    newest = checkpoint_at(conn, asked.origin, asked.new_size)
    if newest is None:
        raise NoConsistency("to", f"is not the size of a checkpoint of the log {asked.origin!r}")
    try:
        proof = StoredTree(conn, newest.family, newest.month).consistency(
            asked.old_size, asked.new_size
        )
    except (LogDamaged, ProofError):
        raise NoConsistency("origin", "this log's leaves are no longer stored") from None
    return {"proof": [b64(h) for h in proof]}
