"""Pass 2 of `log verify` (store.log_audit, SPEC section 7): one log's leaves, folded in index
order, against its stored tiles, its checkpoints (stored, and kept outside the store: `Kept`)
and its signed retirements; what the leaves cannot reach (checkpoints and tiles past them, a
month gone) and, where a leaf is missing, the entries removed with it.

Apart from log_audit, which plans the passes, hands their tasks to worker processes and runs
passes 1 and 3: this pass needs none of that, and one `Roots` task holds all it reads besides
the connection, so a worker runs it alone. Its findings are strings, in the order the leaves
give them; a `Note` is said but is no finding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from ..domain import merkle
from .access_retention import access_month_dropped
from .access_writer import ACCESS_FAMILY
from .driver_sql import parameter_mark
from .log_records import FAMILY as RECORD_FAMILY
from .log_tree import TILE, StoredCheckpoint
from .log_families import family_named
from .partitions import month_dropped

# rows a streamed read of leaves or entries fetches at a time (this pass's and pass 1's)
ROWS_A_FETCH = 10_000


class Note(str):
    """Said, but not a finding: a state a running or stopped ingest also leaves."""


@dataclass(frozen=True)
class Roots:
    """Pass 2 over one log; `kept`: (size, root) of the checkpoints kept outside the store."""

    family: str
    month: str
    checkpoints: tuple[StoredCheckpoint, ...]
    kept: tuple[tuple[int, bytes], ...]
    origin: str
    # sizes of the stored checkpoints whose signature verifies, by a trusted key, over their
    # stored origin, size and root: only those may blame a leaf (see _Blamed)
    sound: frozenset[int] = frozenset()
    # (size, root) of each retirement of this origin signed by a trusted key
    retired_at: frozenset[tuple[int, bytes]] = frozenset()


def roots(conn: Connection, task: Roots) -> Iterator[str]:
    """Fold the month's leaves in index order (a stack of perfect subtrees), comparing each
    completed tile with the stored one and each checkpointed size's root with its checkpoint,
    stored or kept. Leaves past the newest checkpoint may not have their tiles yet (the next
    seal adds them)."""
    kept: dict[int, list[bytes]] = {}
    for size, root in task.kept:
        kept.setdefault(size, []).append(root)
    wanted = {c.size: c for c in task.checkpoints}
    tiles = _stored_tiles(conn, task.family, task.month)
    count = yield from _folded_leaves(conn, task, tiles, wanted, kept)
    if count is None:  # a leaf missing: nothing past it can be judged
        return
    if count == 0:
        yield from _without_leaves(conn, task, wanted, kept)
        return
    yield from _beyond_the_leaves(conn, task, count, wanted, kept, tiles)


def _stored_tiles(conn: Connection, family: str, month: str) -> dict[tuple[int, int], bytes]:
    """The month's stored tiles, by (level, index)."""
    mark = parameter_mark(conn)
    return {
        (int(level), int(index)): bytes(h)
        for level, index, h in conn.exec_driver_sql(
            "SELECT level, node_index, hash FROM log_node "
            f"WHERE family = {mark} AND month = {mark}",
            (family, month),
        )
    }


def _folded_leaves(
    conn: Connection,
    task: Roots,
    tiles: dict[tuple[int, int], bytes],
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
) -> Generator[str, None, int | None]:
    """What the leaves, folded in index order, say against the tiles (each one met is taken
    out of `tiles`) and the checkpoints; returns how many leaves there were, or None when one
    was missing (said, with the entries removed with it)."""
    origin, sealed = task.origin, max(wanted, default=0)
    mark = parameter_mark(conn)
    rows = conn.exec_driver_sql(
        "SELECT leaf_index, leaf_hash, entry_id FROM log_leaf "
        f"WHERE family = {mark} AND month = {mark} ORDER BY leaf_index",
        (task.family, task.month),
        execution_options={"stream_results": True, "yield_per": ROWS_A_FETCH},
    )
    stack: list[tuple[int, bytes]] = []
    count = 0
    previous: int | None = None  # the entry id of the leaf before
    last_tile: deque[int] = deque(maxlen=1 << TILE)  # the entry ids of the lowest tile's leaves
    matched = 0  # the largest checkpointed size whose root the leaves gave
    blamed: _Blamed | None = None
    for index, leaf_hash, entry_id in rows:
        if index != count:
            yield from _removed_with_their_leaves(
                conn, task.family, previous, entry_id, index - count
            )
            yield f"log {origin} leaf {count} missing"
            return None
        previous = entry_id
        last_tile.append(entry_id)
        count += 1
        for at in _folded(stack, bytes(leaf_hash), count):
            tile = tiles.pop(at, None)
            if tile != stack[-1][1] and (tile is not None or count <= sealed):
                yield f"log {origin} tile {at[0]}/{at[1]} does not match its leaves" + (
                    _suspects(task.family, count, last_tile) if at[0] == TILE else ""
                )
        if count in wanted or count in kept:
            root = _root_of(stack)
            failed = count in wanted and root != wanted[count].root
            if failed:
                yield f"log {origin} checkpoint {count} does not match its leaves"
            if any(root != held for held in kept.get(count, ())):
                yield f"log {origin} does not match the checkpoint of size {count} kept"
            # blame by the store's sound checkpoints alone: one whose own row was edited (its
            # signature then fails), or a kept one of another store, named an untouched
            # record (review 27f)
            if count in task.sound and not failed:
                matched, blamed = count, None  # one that failed before was changed itself
            elif count in task.sound and blamed is None:
                blamed = _Blamed(matched, count, tuple(last_tile)[-(count - matched) :])
    if blamed is not None and len(blamed.entry_ids) == blamed.end - blamed.start:
        yield blamed.said(origin, family_named(task.family).noun)
    return count


def _folded(stack: list[tuple[int, bytes]], leaf: bytes, count: int) -> Iterator[tuple[int, int]]:
    """`leaf`, the `count`th, pushed on the stack of perfect subtrees and merged as far as it
    goes; the (level, index) of each tile completed, as it completes (at the stack's top)."""
    stack.append((0, leaf))
    while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
        (level, right), (_, left) = stack.pop(), stack.pop()
        stack.append((level + 1, merkle.node_hash(left, right)))
        if (level + 1) % TILE == 0:
            yield (level + 1, (count >> (level + 1)) - 1)


def _root_of(stack: list[tuple[int, bytes]]) -> bytes:
    """The root of the tree whose perfect subtrees the stack holds."""
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = merkle.node_hash(left, root)
    return root


def _without_leaves(
    conn: Connection,
    task: Roots,
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
) -> Iterator[str]:
    """A log with no leaves: retired by retention (its checkpoints stay; their signatures are
    checked), or deleted: a month's records gone with their leaves and tiles passed as
    retired, kept checkpoints and all, on SQLite too, which has no retention (review, session
    19)."""
    origin, last = task.origin, max(wanted, default=0)
    if last and not _retired(conn, task.family, task.month):
        yield f"log {origin} has no leaves, but checkpoints up to size {last}"
    elif last and not _retirement_signed(task, wanted[last]):
        # dropped as retention drops a month, which an intruder can do too (audit 46d)
        yield (
            f"log {origin} has no leaves, but checkpoints up to size {last}, "
            "and no signed retirement"
        )
    retired = max((size for size, _ in task.retired_at), default=0)
    if retired > last:
        # a retirement signed at a size no stored checkpoint reaches: checkpoints deleted
        # after retention, which only kept checkpoints (--checkpoints) told (audit 46j)
        yield f"log {origin} was retired at size {retired}, but " + (
            f"its checkpoints reach only size {last}" if last else "has no checkpoint"
        )
    for size in sorted(kept):
        if size > last:
            yield f"log {origin} has no leaves nor checkpoint of size {size}, which was kept"
        elif size not in wanted:
            # retention keeps every checkpoint of the month: one kept and gone from the
            # store was deleted, as a month with leaves has it said (_checkpoints_gone)
            yield f"log {origin} checkpoint {size}, kept, is no longer in the store (deleted)"
        elif size in wanted and any(root != wanted[size].root for root in kept[size]):
            yield f"log {origin} does not match the checkpoint of size {size} kept"


def _beyond_the_leaves(
    conn: Connection,
    task: Roots,
    count: int,
    wanted: dict[int, StoredCheckpoint],
    kept: dict[int, list[bytes]],
    tiles: dict[tuple[int, int], bytes],
) -> Iterator[str]:
    """What the `count` leaves cannot reach: checkpoints and retirements past them, and the
    tiles no leaf made."""
    origin = task.origin
    if task.retired_at:
        # retention signs a month's retirement and removes its leaves in one transaction, and
        # seals no retired log: leaves beside a signed retirement are the month brought back
        # by hand, and records added to it then had a checkpoint past the retirement signed
        # by the next seal (audit 46l)
        retired = max(size for size, _ in task.retired_at)
        yield f"log {origin} was retired at size {retired}, but has {count} leaves"
    for size in sorted(s for s in kept if s > count):
        yield f"log {origin} has {count} leaves, fewer than the checkpoint of size {size} kept"
    unseen = sorted(s for s in kept if s not in wanted)
    yield from _checkpoints_gone(conn, task, count, unseen)
    for size in sorted(s for s in wanted if s > count):
        yield f"log {origin} checkpoint {size} has leaves missing"
    for level, index in sorted(tiles):
        yield f"log {origin} tile {level}/{index} has no leaves"


def _checkpoints_gone(
    conn: Connection, task: Roots, count: int, unseen: list[int]
) -> Iterator[str]:
    """What the store's checkpoints of the log no longer show: a kept checkpoint (of a size
    its leaves still reach) that the store does not hold was deleted, as checkpoints are
    never removed from a log that has leaves; and leaves past the newest checkpoint are in no
    signed checkpoint, which an ingest running, or stopped before it sealed, leaves too (the
    next seal signs them), and so does deleting the newest checkpoints (audit 27a: silent,
    and the records' proofs answered "not yet sealed"). Read again now: a seal may have
    signed more since the pass began."""
    origin, mark = task.origin, parameter_mark(conn)
    held = {
        int(size)
        for (size,) in conn.exec_driver_sql(
            f"SELECT tree_size FROM log_checkpoint WHERE family = {mark} AND month = {mark}",
            (task.family, task.month),
        )
    }
    for size in unseen:
        if size <= count and size not in held:
            yield f"log {origin} checkpoint {size}, kept, is no longer in the store (deleted)"
    newest = max(held, default=0)
    if newest < count:
        leaves = f"leaf {newest} is" if count - newest == 1 else f"leaves {newest}-{count - 1} are"
        newest_said = f"the newest is of size {newest}" if newest else "it has none"
        yield Note(
            f"log {origin} {leaves} in no signed checkpoint ({newest_said}): an ingest is "
            "running or stopped before it sealed (the next seal signs them), or the "
            "checkpoints that held them were deleted"
        )


def _retired(conn: Connection, family: str, month: str) -> bool:
    """Whether the month went as retention removes one: the trail's logs with their month's
    partitions (PostgreSQL), the access log's with its entries of the month and of every
    earlier one. Someone with the database can do as much; the signed retirement
    (`_retirement_signed`) is what tells retention apart."""
    # retention drops only months before the current one: a current month gone with every
    # older one looked retired, and a trail wiped whole passed (audit 46d)
    now = datetime.now(UTC)
    if month >= f"{now.year:04d}-{now.month:02d}":
        return False
    if family == ACCESS_FAMILY:
        return access_month_dropped(conn, month)
    return family == RECORD_FAMILY and month_dropped(conn, month)


def _retirement_signed(task: Roots, last: StoredCheckpoint) -> bool:
    """Whether a trusted retirement names the log's last stored checkpoint, and every
    checkpoint kept of it agrees (none past it, the same root at its size)."""
    if (last.size, last.root) not in task.retired_at:
        return False
    return all(
        size < last.size or (size == last.size and root == last.root) for size, root in task.kept
    )


@dataclass(frozen=True)
class _Blamed:
    """Leaves [start, end) of a log: the checkpoint of size `start` matched its leaves, and
    every one from `end` on did not, so one of them was rewritten (with its entry, which
    pass 1 then finds unchanged). Named when the last tile's ids still hold them all."""

    start: int
    end: int
    entry_ids: tuple[int, ...]

    def said(self, origin: str, noun: str) -> str:
        if len(self.entry_ids) == 1:
            before = f"checkpoint {self.start} holds the leaves before it, " if self.start else ""
            return (
                f"{noun} {self.entry_ids[0]} changed (rewritten with its leaf {self.start} "
                f"of log {origin}: {before}checkpoint {self.end} does not hold it)"
            )
        ids = ", ".join(map(str, self.entry_ids))
        return (
            f"log {origin}: one of leaves {self.start}-{self.end - 1} was rewritten with its "
            f"{noun} (between checkpoints {self.start} and {self.end}), one of {ids}"
        )


def _suspects(family: str, count: int, entry_ids: deque[int]) -> str:
    """A lowest tile whose leaves hash as stored but not to the stored tile: one of its
    leaves was rewritten with its entry (the leaf hash matches the edited entry), and which
    one the log cannot tell, so all its entries are named."""
    first = count - len(entry_ids)
    ids = ", ".join(str(i) for i in entry_ids)
    noun = family_named(family).noun
    return f": one of leaves {first}-{count - 1} was rewritten with its {noun}, one of {ids}"


# the widest run of ids between two leaves that is searched for the entries of missing ones
_GAP_SEARCHED = 100_000


def _removed_with_their_leaves(
    conn: Connection, family: str, after: int | None, before: int, missing: int
) -> Iterator[str]:
    """The entries whose leaves were deleted with them, named when they can be told: a log's
    leaves hold increasing entry ids, so the `missing` leaves between the leaf of entry `after`
    and that of `before` held ids between the two; those of them that are neither an entry
    nor any log's leaf nor queued are the ones gone. Only when exactly `missing` ids are such
    is each named (an id never given, a rolled-back one, would make the count differ). A
    log's first leaves have no leaf before them: then every id from 1 up is searched, if few."""
    after = 0 if after is None else after  # ids are positive
    if not missing <= before - after - 1 <= _GAP_SEARCHED:
        return
    found = family_named(family)
    mark = parameter_mark(conn)
    present = {
        int(entry_id)
        for (entry_id,) in conn.exec_driver_sql(
            f"SELECT id FROM {found.table} WHERE id > {mark} AND id < {mark} UNION ALL "
            f"SELECT entry_id FROM log_leaf WHERE family = {mark} "
            f"AND entry_id > {mark} AND entry_id < {mark} UNION ALL "
            f"SELECT entry_id FROM log_pending WHERE family = {mark} "
            f"AND entry_id > {mark} AND entry_id < {mark}",
            (after, before, family, after, before, family, after, before),
        )
    }
    gone = [entry_id for entry_id in range(after + 1, before) if entry_id not in present]
    if len(gone) == missing:
        for entry_id in gone:
            yield f"{found.noun} {entry_id} removed"
