"""How much of what is due the delivery worker leases to each watch, and each Party's share
of its queue: a slow receiver or a hostile Party cannot fill the worker, and a Party that
comes is leased at once however many wait (webhooks.deliver)."""

from __future__ import annotations

from collections import defaultdict

from .outbound import UnsafeUrl, parse_url
from .queues import Queues


def share_of(total: int, parties: int) -> int:
    """Of the worker's queue (`total` deliveries leased ahead), what each of `parties`
    Parties may hold: as much is always left for one more Party. With a fixed half, two
    Parties whose receivers never answer filled the queue, nothing more was leased, and a
    third Party's deliveries were not even read for ten minutes (audit 30c)."""
    return max(1, total // (max(parties, 1) + 1))


def lease_shares(
    due: list[tuple[int, str, str]],
    queues: Queues,
    queue_depth: int,
    total: int,
    waiting_parties: frozenset[str],
) -> dict[int, int]:
    """How many of each due watch's deliveries to lease: a Party's queue to a receiver
    (host and port) gets what it has room for, split between its watches, once it is down
    to half (so leases come in rounds, not one row at a time); one that is full gets
    nothing, so a slow receiver cannot fill the worker or walk the lease. Each Party's
    queue to a receiver is its own: one queue a receiver, filled by a Party whose
    endpoint there never answers, leased nothing for that host to any other Party for
    two minutes (audit 26b). A Party gets no more than its share of the worker's queue
    (`share_of`: a half alone, less while others wait too), whatever number of receivers its
    watches name."""
    watches_of: dict[tuple[str, tuple[str, int]], list[int]] = defaultdict(list)
    party_of: dict[int, str] = {}
    for watch_id, url, party in due:
        watches_of[(party, host_of(url))].append(watch_id)
        party_of[watch_id] = party
    shares: dict[int, int] = {}
    for party_here, watch_ids in watches_of.items():
        room = queue_depth - queues.queued_at(*party_here)
        if room < queue_depth // 2:
            continue
        per_watch = -(-room // len(watch_ids))  # rounded up: every watch gets some
        shares.update((watch_id, per_watch) for watch_id in watch_ids)
    parties = set(party_of.values())
    party_share = share_of(total, len(parties | waiting_parties))
    party_room = {party: party_share - queues.queued_for(party) for party in parties}
    for watch_id in list(shares):
        room = party_room[party_of[watch_id]]
        shares[watch_id] = min(shares[watch_id], max(room, 0))
        party_room[party_of[watch_id]] = room - shares[watch_id]
    return shares


def host_of(url: str) -> tuple[str, int]:
    """The receiver a URL goes to (host and port), which its limits are counted by."""
    try:
        target = parse_url(url)
    except UnsafeUrl:
        return ("", 0)  # refused when attempted, and retried on the schedule
    return (target.host, target.port)
