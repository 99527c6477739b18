"""`servicetrail log verify` (SPEC section 7): the server-side audit of every log.

Three passes, each streaming (memory stays flat at 10M records):
1. every stored entry's leaf, recomputed from the entry as stored, against the leaf hash the
   log (or the queue, for entries not yet sealed) holds: `<noun> <id> changed|removed|added`;
2. every log's leaves, folded in index order, against each checkpoint's root and the tiles;
3. every checkpoint's Ed25519 signature, by the verifier key it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import literal, select, union_all
from sqlalchemy.engine import Connection, Engine

from ..domain import merkle
from ..domain.checkpoint import NoteError, parse_verifier_key, verify_checkpoint
from ..signing import ed25519_check
from .log_tables import log_leaf, log_node, log_pending
from .merkle_log import FAMILIES, TILE, LogFamily, StoredCheckpoint, all_checkpoints, verifier_keys

_STREAM = 10_000


@dataclass
class Audit:
    findings: list[str] = field(default_factory=list)
    entries: int = 0
    leaves: int = 0
    checkpoints: int = 0


def audit(engine: Engine, prefix: str) -> Audit:
    result = Audit()
    for family in FAMILIES:
        with engine.connect() as stored, engine.connect() as source:
            result.findings += _entries_against_leaves(stored, source, family, result)
    with engine.connect() as conn:
        checkpoints = all_checkpoints(conn)
        known_keys = set(verifier_keys(conn))
        result.checkpoints = len(checkpoints)
        by_log: dict[tuple[str, str], list[StoredCheckpoint]] = {}
        for checkpoint in checkpoints:
            by_log.setdefault((checkpoint.family, checkpoint.month), []).append(checkpoint)
            result.findings += _signature_findings(checkpoint, known_keys)
        months = {
            (f, m) for f, m in conn.execute(select(log_leaf.c.family, log_leaf.c.month).distinct())
        }
        for family_name, month in sorted(months | set(by_log)):
            result.findings += _roots(
                conn, family_name, month, by_log.get((family_name, month), [])
            )
    return result


def _entries_against_leaves(
    stored: Connection, source: Connection, family: LogFamily, result: Audit
) -> Iterator[str]:
    held = union_all(
        select(log_leaf.c.entry_id, log_leaf.c.leaf_hash, literal(True).label("sealed")).where(
            log_leaf.c.family == family.family
        ),
        select(
            log_pending.c.entry_id, log_pending.c.leaf_hash, literal(False).label("sealed")
        ).where(log_pending.c.family == family.family),
    ).subquery()
    leaves = stored.execution_options(yield_per=_STREAM).execute(
        select(held.c.entry_id, held.c.leaf_hash).order_by(held.c.entry_id)
    )
    leaf = next(leaves, None)
    for entry_id, _month, data in family.leaves(source):
        result.entries += 1
        while leaf is not None and leaf[0] < entry_id:
            yield f"{family.noun} {leaf[0]} removed"
            leaf = next(leaves, None)
        if leaf is None or leaf[0] != entry_id:
            yield f"{family.noun} {entry_id} added"
            continue
        if data is None or merkle.leaf_hash(data) != bytes(leaf[1]):
            yield f"{family.noun} {entry_id} changed"
        leaf = next(leaves, None)
    while leaf is not None:
        yield f"{family.noun} {leaf[0]} removed"
        leaf = next(leaves, None)


def _signature_findings(checkpoint: StoredCheckpoint, known_keys: set[str]) -> Iterator[str]:
    where = f"log {checkpoint.origin} checkpoint {checkpoint.size}"
    if checkpoint.verifier_key not in known_keys:
        yield f"{where} names a verifier key the store never recorded"
    try:
        signed = verify_checkpoint(
            checkpoint.note, parse_verifier_key(checkpoint.verifier_key), ed25519_check
        )
    except NoteError as e:
        yield f"{where} signature does not verify ({e})"
        return
    if (signed.origin, signed.size, signed.root) != (
        checkpoint.origin,
        checkpoint.size,
        checkpoint.root,
    ):
        yield f"{where} note differs from its stored origin, size or root"


def _roots(
    conn: Connection, family: str, month: str, checkpoints: list[StoredCheckpoint]
) -> Iterator[str]:
    """Fold the month's leaves in index order (a stack of perfect subtrees), comparing each
    completed tile with the stored one and each checkpointed size's root with its checkpoint."""
    origin = checkpoints[0].origin if checkpoints else f"{family}/{month}"
    tiles = {
        (int(level), int(index)): bytes(h)
        for level, index, h in conn.execute(
            select(log_node.c.level, log_node.c.node_index, log_node.c.hash).where(
                log_node.c.family == family, log_node.c.month == month
            )
        )
    }
    wanted = {c.size: c for c in checkpoints}
    stack: list[tuple[int, bytes]] = []
    count = 0
    rows = conn.execution_options(yield_per=_STREAM).execute(
        select(log_leaf.c.leaf_index, log_leaf.c.leaf_hash)
        .where(log_leaf.c.family == family, log_leaf.c.month == month)
        .order_by(log_leaf.c.leaf_index)
    )
    for index, leaf_hash in rows:
        if index != count:
            yield f"log {origin} leaf {count} missing"
            return
        count += 1
        stack.append((0, bytes(leaf_hash)))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (level, right), (_, left) = stack.pop(), stack.pop()
            stack.append((level + 1, merkle.node_hash(left, right)))
            if (level + 1) % TILE == 0:
                at = (level + 1, (count >> (level + 1)) - 1)
                if tiles.pop(at, None) != stack[-1][1]:
                    yield f"log {origin} tile {at[0]}/{at[1]} does not match its leaves"
        if count in wanted:
            root = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                root = merkle.node_hash(left, root)
            if root != wanted[count].root:
                yield f"log {origin} checkpoint {count} does not match its leaves"
    if count == 0:
        return  # retired by retention (its checkpoints stay; their signatures are checked)
    for size in sorted(s for s in wanted if s > count):
        yield f"log {origin} checkpoint {size} has leaves missing"
    for level, index in sorted(tiles):
        yield f"log {origin} tile {level}/{index} has no leaves"
