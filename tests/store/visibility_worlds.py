"""Worlds of Parties, Devices, responsibility intervals and records drawn by Hypothesis, for
the properties of the visibility rule and of the watches."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from hypothesis import strategies as st

from servicetrail.domain.model import DEVICE_TYPES, KINDS, Device, Responsibility, SatRecord, User
from servicetrail.domain.times import parse_time


BASE = parse_time("2025-01-01T00:00:00Z")
GRID = [BASE + timedelta(hours=h) for h in range(8)]
NUDGE = timedelta(microseconds=1)
ROLES = ("IS", "ES", "GS", "ED", "GT", "OU", "RSA", "XR", "ZZ9")
DCC_ID = "90-B3-D5-1F-30-00-00-02"
UNREGISTERED = ("90-B3-D5-1F-30-EE-00-01", "90-B3-D5-1F-30-EE-00-02")
UNKNOWN_DEVICE = "00-DB-12-34-56-78-FF-FF"
CANCEL = parse_time("3000-12-31T00:00:00Z")


HOLDS_NO_USER_ID = "PZ"  # a Party with Responsibilities and no User ID: rule 1 never holds for it


@dataclass
class WorldSpec:
    users: list[User]
    devices: list[Device]
    registry: list[Responsibility]  # as it ends up, after every correction
    records: list[SatRecord]
    # the order of writing: ("user", User), ("interval", Responsibility, possibly a wrong version
    # that a later ("interval", ...) of the same device, relation and start corrects) and
    # ("records", [SatRecord]), interleaved
    steps: list[tuple] = None  # type: ignore[assignment]

    @property
    def parties(self) -> list[str]:
        return sorted({u.party_id for u in self.users} | {HOLDS_NO_USER_ID})


def user_id(p: int, u: int) -> str:
    return f"90-B3-D5-1F-30-{p:02X}-00-{u:02X}"


def device_id(d: int) -> str:
    return f"00-DB-12-34-56-78-90-{d:02X}"


# the calendar's ends, which every input accepts: an open interval runs to the last instant
CALENDAR_ENDS = [parse_time("0001-01-01T00:00:00Z"), parse_time("9999-12-31T23:59:59.999999Z")]
record_time = st.one_of(
    st.builds(
        lambda at, nudge: at + nudge * NUDGE,
        st.sampled_from(GRID),
        st.sampled_from([-1, 0, 0, 0, 1]),
    ),
    st.sampled_from(CALENDAR_ENDS),
)


@st.composite
def intervals_for(draw, device: str, relation: str, parties: list[str]) -> list[Responsibility]:
    """Consecutive, never-overlapping intervals on the grid: some adjacent (a change of holder),
    some separated by gaps, the last one possibly open."""
    points = sorted(draw(st.sets(st.sampled_from(GRID), max_size=5)))
    out: list[Responsibility] = []
    for start, end in zip(points, points[1:]):
        if draw(st.booleans()):  # else a gap
            out.append(Responsibility(device, draw(st.sampled_from(parties)), relation, start, end))
    if points and draw(st.booleans()):
        out.append(
            Responsibility(device, draw(st.sampled_from(parties)), relation, points[-1], None)
        )
    return out


@st.composite
def worlds(draw) -> WorldSpec:
    n_parties = draw(st.integers(1, 4))
    parties = [f"P{p}" for p in range(n_parties)]
    users = []
    for p, party_id in enumerate(parties):
        roles = draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True))
        users += [User(user_id(p, u), party_id, role) for u, role in enumerate(roles)]
    devices = [
        Device(device_id(d), draw(st.sampled_from(DEVICE_TYPES)), draw(st.sampled_from([1, 2])))
        for d in range(draw(st.integers(1, 3)))
    ]
    registry = []
    for dev in devices:
        for relation in ("supplier", "network_operator"):
            registry += draw(intervals_for(dev.device_id, relation, [*parties, HOLDS_NO_USER_ID]))
    # three times in four, one holder's interval of the other relation inside one of its
    # closed ones: a device search reads the union of the viewer's intervals, and with the
    # inner interval's end taken for the union's, only fixed worlds failed (dev_merge_max,
    # session 62: two intervals of one holder on one Device, one inside the other, were rare)
    closed = [r for r in registry if r.valid_to is not None]
    inner_ends = []
    if closed and draw(st.integers(0, 3)):
        registry, inner = nest_inside(draw(st.sampled_from(closed)), registry)
        inner_ends.append(inner.valid_to)
    senders = [u.user_id for u in users] + list(UNREGISTERED)
    targets = [d.device_id for d in devices] + [UNKNOWN_DEVICE, ""]
    # an interval's end drawn as such too: on the grid alone, another User's shared record
    # exactly at the end of an interval its holder does not renew came too rarely for `<=` in
    # held_clause to fail this test in most runs (audit 60c; 3 of 4 seeds passed, session 60)
    ends = sorted({r.valid_to for r in registry if r.valid_to})
    when = st.one_of(record_time, st.sampled_from(ends)) if ends else record_time
    ended_on = {end: sorted({r.device_id for r in registry if r.valid_to == end}) for end in ends}
    records = []
    for counter in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(KINDS))
        sender = draw(st.sampled_from(senders))
        target = draw(
            st.sampled_from([t for t in targets if t] if kind == "device_alert" else targets)
        )
        at = draw(when)
        # a quarter of the time at the nested interval's end: drawn only as one end among the
        # others, 2 worlds in 100 held another User's shared record between the two ends; as
        # half of all times, too few records fell elsewhere, and re_end_first and
        # re_new_party_only passed on seed 1 (session 62)
        if inner_ends and draw(st.integers(0, 3)) == 0:
            at = inner_ends[0]
        # at an interval's end, often on its Device: a record there is what a wrong end
        # re-derived shows, or a stale row of a wrong version ending later (session 61)
        if at in ended_on and draw(st.booleans()):
            target = draw(st.sampled_from(ended_on[at]))
        # now and then the time and Device of an earlier record: without it, a device
        # search's cursor fell between two records of one time, both another User's, too
        # rarely for a cursor not passed by a microsecond to fail this test (session 61)
        devices_records = [r for r in records if r.device_id]
        if devices_records and draw(st.integers(0, 2)) == 0:
            earlier = draw(st.sampled_from(devices_records))
            at, target = earlier.logged_at, earlier.device_id
        srv = (
            ""
            if kind in ("device_alert", "dcc_alert")
            else draw(st.sampled_from(["4.1.1", "8.2", "11.2", "99.9"]))
        )
        code = "" if kind == "request" else draw(st.sampled_from(["I0", "I99", "E4"]))
        payload = draw(st.sampled_from(["", f"<payload {counter}>"]))
        request_id = f"{sender}:{target or DCC_ID}:{counter}"
        # SPEC 4.1's fields: the command variant a title; the execution time and the Device a
        # non-device request names are read from the body, so own-only like the payload
        request = kind == "request"
        variant = draw(st.sampled_from([None, 1, 4, 5, 8])) if request else None
        execution = draw(st.sampled_from([None, GRID[3], CANCEL])) if request else None
        subject = (
            draw(st.sampled_from(["", *(d.device_id for d in devices)]))
            if request and not target
            else ""
        )
        response_id = (
            f"{target or DCC_ID}:{sender}:{counter}" if not request and draw(st.booleans()) else ""
        )
        # an exchange: answers sharing an earlier Request ID (told apart from each other by their
        # ResponseIDs, and by kind or time for the test's own map of ids)
        taken = {r.request_id for r in records if r.kind == kind and r.logged_at == at}
        shareable = sorted({r.request_id for r in records} - taken)
        if response_id and shareable and draw(st.booleans()):
            request_id = draw(st.sampled_from(shareable))
        records.append(
            SatRecord(
                at,
                kind,
                request_id,
                srv,
                sender,
                target,
                code,
                payload,
                variant,
                execution,
                subject,
                response_id,
            )
        )
    return WorldSpec(
        users, devices, registry, records, draw(interleaving(users, registry, records))
    )


@st.composite
def interleaving(
    draw, users: list[User], registry: list[Responsibility], records: list[SatRecord]
) -> list[tuple]:
    """The writes in a random order: records ingested in batches before, between and after the
    registry changes that decide who sees them, some intervals first loaded wrong (another
    Party, ending early, ending later as far as the next interval leaves room, by the same
    Party or another, or starting late) and corrected later, and User IDs registered after
    their traffic. The index must end up as `decide()` says for the final registry, whatever
    the order."""
    steps: list[tuple] = [("user", u) for u in users]
    corrections = []
    for interval in registry:
        wrong = None
        if draw(st.booleans()):
            early_end = interval.valid_from + timedelta(minutes=30)
            late_start = interval.valid_from + timedelta(minutes=15)
            # the Party's interval first loaded from a later start, then re-dated (audit 26a)
            redated = (
                [replace(interval, valid_from=late_start)]
                if interval.valid_to is None or late_start < interval.valid_to
                else []
            )
            # first loaded ending later, by the same Party, or by another (a holder and an end
            # corrected at once): the same Party's correction re-derives only the span between
            # the two ends, two Parties' the whole of both (`touched_by`), and each left stale
            # rows when it took the wrong end (session 61)
            later = late_ends(interval, registry)
            late = (
                [
                    replace(interval, valid_to=later[-1]),
                    replace(
                        interval,
                        party_id=draw(
                            st.sampled_from(sorted({"P0", HOLDS_NO_USER_ID} - {interval.party_id}))
                        ),
                        valid_to=draw(st.sampled_from(later)),
                    ),
                ]
                if later
                else []
            )
            # a later end half the time there is room for one: as one choice among the
            # others, too few worlds wrote a record between the two ends before the
            # correction, and re_lower_max still passed this test on seed 2 (session 61)
            wrong = draw(
                st.sampled_from(
                    late
                    if late and draw(st.booleans())
                    else redated
                    + [
                        replace(interval, party_id=draw(st.sampled_from(["P0", HOLDS_NO_USER_ID]))),
                        replace(
                            interval,
                            valid_to=early_end
                            if interval.valid_to is None or early_end < interval.valid_to
                            else interval.valid_to,
                        ),
                    ]
                )
            )
        if wrong is not None and wrong != interval:
            corrections.append((("interval", wrong), ("interval", interval)))
        else:
            steps.append(("interval", interval))
    cuts = sorted(draw(st.lists(st.integers(0, len(records)), max_size=3)))
    bounds = [0, *cuts, len(records)]
    steps += [("records", records[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
    steps += [first for first, _ in corrections]
    order = draw(st.permutations(steps))
    # each correction lands somewhere after the wrong version it corrects
    for first, then in corrections:
        at = draw(st.integers(order.index(first) + 1, len(order)))
        order.insert(at, then)
    return order


def nest_inside(
    outer: Responsibility, registry: list[Responsibility]
) -> tuple[list[Responsibility], Responsibility]:
    """`registry` with an interval of `outer`'s holder and Device, of the other relation,
    starting and ending strictly inside `outer`, in place of the intervals of that relation
    it would overlap; and that interval."""
    other = "network_operator" if outer.relation == "supplier" else "supplier"
    start, end = outer.valid_from + timedelta(minutes=20), outer.valid_from + timedelta(minutes=40)
    inner = Responsibility(outer.device_id, outer.party_id, other, start, end)
    kept = [
        r
        for r in registry
        if (r.device_id, r.relation) != (inner.device_id, other)
        or not (r.valid_from < end and (r.valid_to is None or start < r.valid_to))
    ]
    return [*kept, inner], inner


def late_ends(interval: Responsibility, registry: list[Responsibility]) -> list[datetime | None]:
    """Ends later than `interval`'s that a wrong version of it may be loaded with: up to the
    next interval of its Device and relation, which the loader would otherwise refuse as an
    overlap, or open, or three hours on, when none follows. None for an open interval, or one
    the next adjoins."""
    if interval.valid_to is None:
        return []
    starts = [
        r.valid_from
        for r in registry
        if (r.device_id, r.relation) == (interval.device_id, interval.relation)
        and r.valid_from >= interval.valid_to
    ]
    if not starts:  # the closed end last
        return [None, interval.valid_to + timedelta(hours=3)]
    return [min(starts)] if min(starts) > interval.valid_to else []
