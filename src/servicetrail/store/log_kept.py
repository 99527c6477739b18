"""Checkpoints kept outside the store, for `servicetrail log verify --checkpoints`.

An auditor who saved /api/v1/logs (or proofs) holds signed checkpoints the store cannot take
back: a log whose newest entries were deleted together with the checkpoints that held them
agrees with itself, but not with these (store.log_audit checks each log against them).
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass, field

from ..domain.checkpoint import (
    NoteError,
    parse_checkpoint,
    parse_verifier_key,
    verify_by_any,
)
from ..signing import ed25519_check
from .log_families import FAMILIES


@dataclass
class Kept:
    """Checkpoints kept outside the store, by log (family, month), and what was wrong with
    the ones that could not be used."""

    by_log: dict[tuple[str, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


def kept_checkpoints(notes: list[str], prefix: str, trusted: set[str] | None) -> Kept:
    """The notes (signed checkpoints) that a trusted key signed, placed in their logs."""
    kept = Kept()
    verifiers = []
    for key in sorted(trusted or ()):  # a line of the trust file that is no key trusts nothing
        with suppress(NoteError):
            verifiers.append(parse_verifier_key(key))
    origins = {
        family.origin(prefix, ""): family.family for family in FAMILIES
    }  # "<prefix>/" and "<prefix>/access/"
    for note in notes:
        try:
            origin = parse_checkpoint(note)[0].origin
        except NoteError as e:
            kept.findings.append(f"a kept checkpoint cannot be read: {e}")
            continue
        try:
            signed, _ = verify_by_any(note, verifiers, ed25519_check)
        except NoteError:
            kept.findings.append(f"the kept checkpoint of {origin} is not signed by a trusted key")
            continue
        head, month = origin[:-7], origin[-7:]
        if head not in origins or not _MONTH.fullmatch(month):
            kept.findings.append(f"the kept checkpoint of {origin} is of no log of this store")
            continue
        kept.by_log.setdefault((origins[head], month), []).append((signed.size, signed.root))
    return kept


_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
