"""Reads: filters, keyset pagination (newest first, ties broken by id), and the time limit."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from servicetrail.domain.ids import InvalidValue
from servicetrail.domain.model import SatRecord
from servicetrail.domain.search import MAX_PAGE, Cursor, Search
from servicetrail.domain.times import parse_time
from servicetrail.domain.visibility import Scope, Viewer
from servicetrail.store.engine import open_store
from servicetrail.store.limits import SearchTooBroad
from servicetrail.store.read_transaction import time_limit
from servicetrail.store.queries import get_visible, iter_search, search_page, viewer_for
from servicetrail.store.writer import append_records
from tests.store.work_counted import statements_sent
from tests.personas import (
    ESME_1,
    LOOKER,
    NORTHPOWER,
    SOUTHENERGY,
    WIRESCO,
    World,
    load_personas,
    starts_with_personas,
    LK_OU,
    SE_IS,
    START,
    record_ids,
    t,
)
from tests.store.stored_times import _stored
from tests import personas as P


def pages(world: World, viewer: Viewer, search: Search, limit: int) -> list[dict]:
    """Every page's items, following next_cursor (through its encoded form, as a client would)."""
    out: list[dict] = []
    cursor = None
    with world.engine.connect() as conn:
        for _ in range(1000):
            items, cursor = search_page(conn, viewer, search, limit, cursor)
            assert len(items) <= limit
            out += items
            if cursor is None:
                return out
            cursor = Cursor.decode(cursor.encode())
    raise AssertionError("pagination did not end")


def walk(world: World, party: str, search: Search, limit: int) -> list[int]:
    return [i["id"] for i in pages(world, world.viewer(party), search, limit)]


def key(world: World, record_id: int) -> tuple[datetime, int]:
    return world.records[world.names_by_id[record_id]].logged_at, record_id


@pytest.mark.parametrize("party", [NORTHPOWER, SOUTHENERGY, WIRESCO])
@pytest.mark.parametrize("scope", list(Scope))
def test_pages_of_one_walk_the_same_records_as_one_big_page(
    world: World, party: str, scope: Scope
) -> None:
    search = Search(scope=scope)
    big = walk(world, party, search, MAX_PAGE)
    assert big, "the persona world gives every one of these parties something to see"
    assert walk(world, party, search, 1) == big
    assert walk(world, party, search, 3) == big
    # newest first, and equal times ordered by id (highest first)
    keys = [key(world, i) for i in big]
    assert keys == sorted(keys, reverse=True)
    assert len(set(big)) == len(big)


def test_ties_on_logged_at_are_broken_by_id(world: World) -> None:
    # the request and acknowledgement of LOOKER's exchange share a logged_at
    a, b = world.ids["lk_cos_req"], world.ids["lk_cos_ack"]
    assert world.records["lk_cos_req"].logged_at == world.records["lk_cos_ack"].logged_at
    seen = walk(world, WIRESCO, Search(), 1)
    assert seen.index(max(a, b)) + 1 == seen.index(min(a, b))
    # and the cursor after the first of them resumes at the second, not after both
    with world.engine.connect() as conn:
        at = world.records["lk_cos_req"].logged_at
        items, _ = search_page(conn, world.viewer(WIRESCO), Search(), 1, Cursor(at, max(a, b)))
    assert items[0]["id"] == min(a, b)


def test_the_last_page_has_no_cursor(world: World) -> None:
    with world.engine.connect() as conn:
        viewer = world.viewer(WIRESCO)
        everything, cursor = search_page(conn, viewer, Search(), MAX_PAGE)
        assert cursor is None
        exact, cursor = search_page(conn, viewer, Search(), len(everything))
        assert cursor is None and len(exact) == len(everything)
        short, cursor = search_page(conn, viewer, Search(), len(everything) - 1)
        assert cursor is not None and len(short) == len(everything) - 1


@pytest.mark.parametrize("scope", list(Scope))
def test_the_last_page_of_a_device_search_has_no_cursor(world: World, scope: Scope) -> None:
    """A device search decides whether there is a next page itself (not by the index walk of
    the search above): a last page exactly full offered a next page, which was empty
    (audit 27c)."""
    search = Search(device_id=ESME_1, scope=scope)
    with world.engine.connect() as conn:
        viewer = world.viewer(WIRESCO)
        everything, cursor = search_page(conn, viewer, search, MAX_PAGE)
        assert cursor is None and len(everything) >= 2
        exact, cursor = search_page(conn, viewer, search, len(everything))
        assert cursor is None and exact == everything
        short, cursor = search_page(conn, viewer, search, len(everything) - 1)
        assert cursor is not None and short == everything[:-1]


def test_a_page_is_never_larger_than_the_largest_page_whatever_is_asked(world: World) -> None:
    """The store holds a page to MAX_PAGE records whoever asks for more (the API refuses a
    larger limit, but the store is called with other callers' limits too): asked for 5,000,
    it returned every one (audit 27c)."""
    _april_traffic_on_esme_1(world, MAX_PAGE + 1)  # titles WIRESCO sees
    with world.engine.connect() as conn:
        viewer = world.viewer(WIRESCO)
        for search in (Search(), Search(device_id=ESME_1)):
            items, cursor = search_page(conn, viewer, search, 5000)
            assert len(items) == MAX_PAGE and cursor is not None, search
            rest, _ = search_page(conn, viewer, search, MAX_PAGE, cursor)
            assert rest and not {i["id"] for i in rest} & {i["id"] for i in items}


def test_page_size_is_clamped(world: World) -> None:
    with world.engine.connect() as conn:
        items, cursor = search_page(conn, world.viewer(WIRESCO), Search(), 0)
        assert len(items) == 1 and cursor is not None


def test_iter_search_limit(world: World) -> None:
    with world.engine.connect() as conn:
        viewer = world.viewer(WIRESCO)
        everything = [i["id"] for i in iter_search(conn, viewer, Search())]
        assert [i["id"] for i in iter_search(conn, viewer, Search(), limit=4)] == everything[:4]
        assert list(iter_search(conn, viewer, Search(), limit=0)) == []


def view(world: World, party: str, **filters) -> set[str]:
    with world.engine.connect() as conn:
        return {
            world.names_by_id[i["id"]]
            for i in iter_search(conn, world.viewer(party), Search(**filters))
        }


def test_filters(world: World) -> None:
    assert view(world, NORTHPOWER, request_id=world.records["np_req"].request_id) == {
        "np_req",
        "np_ack",
        "np_resp",
    }
    assert view(world, LOOKER, device_id=ESME_1) == {
        "lk_prehistory_req",
        "lk_cos_req",
        "lk_cos_ack",
        "lk_cos_resp",
    }
    assert view(world, NORTHPOWER, srvs=("8.2",)) == {"np_non_device_req", "np_non_device_resp"}
    assert view(world, NORTHPOWER, srvs=()) == set()
    assert view(world, NORTHPOWER, kinds=("acknowledgement",)) == {"np_ack", "lk_cos_ack"}
    assert view(world, WIRESCO, kinds=("request",), device_id=ESME_1, scope=Scope.OWN) == {"ws_req"}


def test_time_filters_from_inclusive_to_exclusive(world: World) -> None:
    change = parse_time("2025-03-01T00:00:00Z")
    before = view(world, WIRESCO, device_id=ESME_1, time_to=change)
    after = view(world, WIRESCO, device_id=ESME_1, time_from=change)
    assert "np_late_resp" in after and "np_late_resp" not in before
    assert "lk_cos_resp" in after and "lk_cos_req" in before
    assert before | after == view(world, WIRESCO, device_id=ESME_1)
    assert not before & after
    # an empty window
    assert view(world, WIRESCO, time_from=change, time_to=change) == set()


def test_viewer_for(world: World) -> None:
    with world.engine.connect() as conn:
        assert viewer_for(conn, "NOBODY") is None
        assert viewer_for(conn, SOUTHENERGY).user_ids == world.user_ids[SOUTHENERGY]


def test_cursor_round_trip_and_garbage() -> None:
    cursor = Cursor(parse_time("2025-03-01T00:00:00.000001Z"), 42)
    assert Cursor.decode(cursor.encode()) == cursor
    forged = [
        Cursor(cursor.logged_at, n).encode() for n in (0, -5, 2**63, 10**30)
    ]  # ids no record has
    # times the server never writes in a cursor, though each is a time: a seventh digit of
    # the second (dropped, the page began elsewhere), an offset, a lower-case z
    unissued = [
        base64.urlsafe_b64encode(f"{when}|42".encode()).decode()
        for when in (
            "2025-03-01T00:00:00.0000015Z",
            "2025-03-01T00:00:00.000001+00:00",
            "2025-03-01T00:00:00.000001z",
        )
    ]
    for bad in (
        "",
        "garbage!",
        "MjAyNS0wMy0wMVQwMDowMDowMFp8MA",
        "bm90aGluZw",
        *forged,
        *unissued,
    ):  # ...|0, "nothing"
        with pytest.raises(InvalidValue, match="cursor"):
            Cursor.decode(bad)


def test_the_largest_possible_id_is_a_valid_cursor(world: World) -> None:
    cursor = Cursor.decode(Cursor(parse_time("2030-01-01"), 2**63 - 1).encode())
    with world.engine.connect() as conn:
        items, _ = search_page(conn, world.viewer(WIRESCO), Search(), MAX_PAGE, cursor)
    assert len(items) == len(walk(world, WIRESCO, Search(), MAX_PAGE))


# about 3 s uninterrupted on a quiet machine: long enough to be stopped, short enough not to hang if
# it is not
SLOW = text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
    "SELECT count(*) FROM c"
)


def test_a_statement_past_its_time_limit_raises_search_too_broad(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(SearchTooBroad, match="narrow it"), time_limit(conn, 0.05):
            conn.execute(SLOW).scalar()
        if engine.dialect.name == "postgresql":
            # PostgreSQL aborts the transaction; every caller's `with` block ends it so
            conn.rollback()
        # the connection is still usable, and the limit is gone once the block is left
        assert conn.execute(text("SELECT 1")).scalar() == 1
        medium = text(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
            "SELECT count(*) FROM c"
        )
        assert conn.execute(medium).scalar() == 300000


def test_a_statement_stopped_while_its_rows_are_fetched_raises_search_too_broad(
    engine: Engine,
) -> None:
    """The hot reads fetch through the driver's cursor (store.compiled_statements), where
    SQLite's interruption came up unwrapped by SQLAlchemy: a device search past its limit
    was a 500 (the session-13 audit)."""
    from sqlalchemy import Integer

    from servicetrail.store.compiled_statements import fetch_all

    many_rows = text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
        "SELECT x FROM c"
    ).columns(x=Integer)
    with engine.connect() as conn:
        with pytest.raises(SearchTooBroad), time_limit(conn, 0.05):
            fetch_all(conn, many_rows, {})


def test_a_0_s_limit_stops_a_statement_s_first_run_and_leaves_nothing_behind() -> None:
    """SQLite's progress handler first looked at the clock up to 10,000 steps into a
    statement, counted over its runs since the driver prepared it: the first run of a small
    read went through a 0 s limit, the next was stopped (59c). And a BEGIN stopped by it (a
    read of one snapshot) left the handler on the connection, which then stopped every
    later statement, as a 500. No store needed: any SQLite connection is SQLite's."""
    from sqlalchemy import create_engine

    small = text("SELECT count(*) FROM (SELECT 1 UNION ALL SELECT 2)")
    with create_engine("sqlite://").connect() as conn:
        for one_snapshot in (False, True, False):
            with pytest.raises(SearchTooBroad), time_limit(conn, 0, one_snapshot=one_snapshot):
                conn.execute(small).scalar()
        assert conn.execute(small).scalar() == 2  # outside a limit, nothing stops it


def test_a_statement_within_its_limit_runs(engine: Engine) -> None:
    with engine.connect() as conn, time_limit(conn, 30):
        assert conn.execute(text("SELECT 41 + 1")).scalar() == 42


def test_times_before_year_1000_keep_their_order_in_the_store(world: World) -> None:
    """SQLite compares times as fixed-width text: a year below 1000 must still be four digits."""
    ancient = replace(world.records["ws_req"], logged_at=parse_time("0999-06-01T00:00:00Z"))
    with world.engine.begin() as conn:
        assert append_records(conn, [ancient]) == (1, 0)

    def ids(**filters) -> list[int]:
        with world.engine.connect() as conn:
            return [
                i["id"]
                for i in iter_search(
                    conn, world.viewer(WIRESCO), Search(scope=Scope.OWN, **filters)
                )
            ]

    everything = ids()
    assert len(everything) == 4
    assert ids(time_from=parse_time("0500-01-01")) == everything
    assert ids(time_from=parse_time("2025-01-01")) == everything[:-1]
    assert len(ids(time_to=parse_time("1000-01-01"))) == 1
    with world.engine.connect() as conn:
        oldest = get_visible(conn, world.viewer(WIRESCO), everything[-1])
    assert oldest["logged_at"] == "0999-06-01T00:00:00Z"  # oldest, so last
    assert walk(world, WIRESCO, Search(scope=Scope.OWN), 1) == everything


def device_pages(world: World, viewer: Viewer, search: Search) -> list[tuple[int, str]]:
    return [(i["id"], i["access"]) for i in pages(world, viewer, search, 2)]


@pytest.mark.parametrize("party", [NORTHPOWER, SOUTHENERGY, WIRESCO, LOOKER])
@pytest.mark.parametrize("scope", list(Scope))
def test_a_device_search_past_the_interval_first_limits_falls_back_to_the_same_answer(
    world: World, party: str, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Party with more User IDs than the interval-first form takes branches for is
    answered by the general form, with the same rows, in the same order, on every engine."""
    viewer = world.viewer(party)
    search = Search(device_id=ESME_1, scope=scope)
    usual = device_pages(world, viewer, search)
    # User IDs that sent nothing change no answer, but push the Party past the branch limit
    crowded = replace(
        viewer, user_ids=viewer.user_ids | {f"00-00-00-00-00-00-00-{n:02X}" for n in range(33)}
    )
    assert device_pages(world, crowded, search) == usual
    monkeypatch.setattr("servicetrail.store.device_search.MAX_OWN_BRANCHES", 0)
    assert device_pages(world, viewer, search) == usual
    if scope is Scope.ALL:
        assert usual, "the persona world shows each of these parties something on ESME_1"


@pytest.mark.parametrize("crowded", [False, True], ids=["interval-first", "general"])
def test_a_search_of_the_requests_on_a_device_leaves_out_those_naming_it(
    world: World, crowded: bool
) -> None:
    """A search by Device also finds the viewer's own non-device requests whose body names
    it (SPEC 4.1 subject_device_id); the triggers' window asks for the requests on it alone
    (SPEC 6), in both forms of the search."""

    naming = SatRecord(
        P.t("2025-04-01T12:00:00Z"),
        "request",
        P._rid(P.WS_ED, P.ESME_S1, 7001),
        "12.2",
        P.WS_ED,
        "",
        "",
        "<pre-notification>",
        subject_device_id=ESME_1,
    )
    with world.engine.begin() as conn:
        append_records(conn, [naming])
    viewer = world.viewer(WIRESCO)
    if crowded:  # past the interval-first form's branches: the general form answers
        extra = {f"00-00-00-00-00-00-00-{n:02X}" for n in range(40)}
        viewer = replace(viewer, user_ids=viewer.user_ids | extra)
    with_it = pages(world, viewer, Search(device_id=ESME_1), 2)
    on_it = pages(world, viewer, Search(device_id=ESME_1, device_in_body=False), 2)
    assert [i["srv"] for i in with_it if not i["device_id"]] == ["12.2"]
    assert on_it == [i for i in with_it if i["device_id"]]
    assert on_it


def test_a_driver_without_pipeline_mode_gives_the_same_device_search(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL sends BEGIN, the viewer's settings and the Responsibility read in one
    pipeline; a libpq without pipeline mode sends them one by one, with the same answer."""
    import psycopg

    viewer = world.viewer(WIRESCO)
    search = Search(device_id=ESME_1)
    pipelined = device_pages(world, viewer, search)
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    assert device_pages(world, viewer, search) == pipelined
    assert pipelined


@starts_with_personas
def test_a_next_page_reads_its_records_by_id_not_by_the_viewers_traffic(sqlite_url: str) -> None:
    """A device-less next page fetches the page's records by the ids the visibility index
    gave (index_search). With the cursor's time range applied again there, SQLite's planner
    walked all of the viewer's own records older than the cursor by User ID and time instead:
    82 ms for the biggest supplier's second page of its own traffic at 10M, the first 4 ms."""
    engine = open_store(sqlite_url)
    viewer = load_personas(engine).viewer(SOUTHENERGY)
    with engine.connect() as conn:
        _, cursor = search_page(conn, viewer, Search(scope=Scope.OWN), 1)
        assert cursor is not None
        with statements_sent(engine) as sent:
            search_page(conn, viewer, Search(scope=Scope.OWN), 1, cursor)
    engine.dispose()
    records = [(s, p) for s, p in sent if "FROM sat_record" in s and "candidate" in s]
    assert len(records) == 1
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + records[0][0], records[0][1])]
    raw.close()
    assert any("SEARCH sat_record USING INTEGER PRIMARY KEY" in step for step in plan), plan


def test_index_rows_gone_stale_leave_a_page_short_not_the_listing_ended(world: World) -> None:
    """A device-less page reads its keys from the visibility index, then the records with the
    rule on top. A registry correction committed between the two statements leaves index
    rows the rule then drops; the page used to be counted after the drop, so it came back
    short with no next cursor and the listing ended there (audit of races, session 16). Here
    the correction is written to the registry alone, as if between the two statements."""
    april = _april_traffic_on_esme_1(world, 30)
    wiresco = world.viewer(WIRESCO)
    search = Search(scope=Scope.OTHERS)
    with world.engine.connect() as conn:
        before = [i["id"] for i in iter_search(conn, wiresco, search)]
    with world.engine.begin() as conn:  # WIRESCO's interval now ends before the newest ten
        conn.execute(
            text(
                "UPDATE responsibility SET valid_to = :end "
                "WHERE party_id = 'WIRESCO' AND device_id = :device"
            ),
            {"end": _stored(world.engine, april + timedelta(minutes=20)), "device": ESME_1},
        )
    with world.engine.connect() as conn:
        still = [i["id"] for i in iter_search(conn, wiresco, search)]
    assert len(still) == len(before) - 10
    assert walk(world, WIRESCO, search, 5) == still
    # and the pages the rule cut short are filled from the next (a few at the most): the
    # first page is whole, though its first two pages' worth of index rows are stale
    with world.engine.connect() as conn:
        first, cursor = search_page(conn, wiresco, search, 5)
        # the first few of an export or `records --limit` (the same index walk) too
        few = [i["id"] for i in iter_search(conn, wiresco, search, 5)]
    assert [i["id"] for i in first] == still[:5] and cursor is not None
    assert few == still[:5]


def _april_traffic_on_esme_1(world: World, count: int) -> datetime:
    """`count` requests by another User to ESME_1, a minute apart from April 2025 on, which
    WIRESCO (its network operator) sees as titles; returns the first one's time."""
    from servicetrail.domain.model import SatRecord

    april = t("2025-04-01T00:00:00Z")
    with world.engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    april + timedelta(minutes=n),
                    "request",
                    f"{LK_OU}:{ESME_1}:{7000 + n}",
                    "11.2",
                    LK_OU,
                    ESME_1,
                    "",
                    "<b/>",
                )
                for n in range(count)
            ],
        )
    return april


def test_a_device_page_reads_one_snapshot_though_the_registry_changes_under_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device search reads the viewer's intervals, then the records with the rule on top.
    A correction committed between the two statements (here: WIRESCO's interval on ESME_1
    ended before the newest ten records) made the rule drop every candidate the first had
    found: the page came back empty with no next cursor, and the listing ended there,
    though older records were still WIRESCO's to see. Both statements now read one snapshot,
    so the page is the one from before the correction, whole, with its cursor."""
    import servicetrail.store.queries as queries_module

    april = _april_traffic_on_esme_1(world, 30)
    wiresco = world.viewer(WIRESCO)
    search = Search(device_id=ESME_1, scope=Scope.OTHERS)
    with world.engine.connect() as conn:
        before, _ = search_page(conn, wiresco, search, 5)
    real_device_search = queries_module.device_search

    def correct() -> None:
        with world.engine.begin() as other:
            other.execute(
                text(
                    "UPDATE responsibility SET valid_to = :end "
                    "WHERE party_id = 'WIRESCO' AND device_id = :device"
                ),
                {"end": _stored(world.engine, april + timedelta(minutes=20)), "device": ESME_1},
            )

    # after the intervals were read, before the records are: the race's window
    racing = first_call_after(correct, real_device_search)
    monkeypatch.setattr(queries_module, "device_search", racing)
    with world.engine.connect() as conn:
        items, cursor = search_page(conn, wiresco, search, 5)
    assert racing.ran
    assert [i["id"] for i in items] == [i["id"] for i in before]
    assert cursor is not None
    # and the next read sees the correction: the newest ten are gone
    monkeypatch.setattr(queries_module, "device_search", real_device_search)
    with world.engine.connect() as conn:
        after, cursor = search_page(conn, wiresco, search, 5)
    newest_kept = april + timedelta(minutes=20)
    assert after and all(parse_time(i["logged_at"]) <= newest_kept for i in after)
    assert cursor is not None


def test_a_device_less_page_reads_one_snapshot_though_the_registry_changes_under_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race on a device-less page: its keys come from the visibility index, then
    the records with the rule on top. A correction made as the registry loader makes it
    (the index re-derived in the same transaction) between the two statements left the
    page's keys stale, and five pages' worth is more than the page's fill-up reads. Both
    statements now read one snapshot: the page is the one from before the correction."""
    import servicetrail.store.queries as queries_module
    from servicetrail.domain.model import Responsibility
    from servicetrail.store.registry import load_responsibilities

    april = _april_traffic_on_esme_1(world, 30)
    wiresco = world.viewer(WIRESCO)
    search = Search(scope=Scope.OTHERS)
    with world.engine.connect() as conn:
        before, _ = search_page(conn, wiresco, search, 2)
    ended = Responsibility(
        ESME_1, WIRESCO, "network_operator", START, april + timedelta(minutes=20)
    )

    def correct() -> None:
        with world.engine.begin() as other:
            load_responsibilities(other, [ended])

    # after the index's keys were read, before the records are
    racing = first_call_after(correct, queries_module.index_records_statement)
    monkeypatch.setattr(queries_module, "index_records_statement", racing)
    with world.engine.connect() as conn:
        items, cursor = search_page(conn, wiresco, search, 2)
    assert racing.ran
    assert [i["id"] for i in items] == [i["id"] for i in before]
    assert cursor is not None


class first_call_after:  # noqa: N801 - used as a function
    """`real`, whose first call runs `act` first: a change committed at one moment of a read."""

    def __init__(self, act: Callable[[], None], real: Callable[..., object]) -> None:
        self.act, self.real, self.ran = act, real, False

    def __call__(self, *args: object, **kwargs: object) -> object:
        if not self.ran:
            self.ran = True
            self.act()
        return self.real(*args, **kwargs)


def test_a_page_of_large_payloads_ends_early_and_the_next_goes_on(world: World) -> None:
    """A supplier's own firmware images: each page held all of its payloads in the server at
    once, 30-37 MB a record (audit 30a). A page now carries up to PAGE_PAYLOAD_BYTES of
    payloads, counted in bytes (every other one here is 4-byte characters), the first row
    always whole, and ends with a cursor before the row that would pass it; walking the
    pages gives every record, each payload whole, on every path (the index's, the device's,
    and a CLI export's first N)."""
    from servicetrail.domain.model import SatRecord
    from servicetrail.store.items import PAGE_PAYLOAD_BYTES

    big = PAGE_PAYLOAD_BYTES * 3 // 10  # three to a page, the fourth passes the budget

    def payload(n: int) -> str:  # `big` bytes of UTF-8 either way, told apart by their start
        return f"{n}" + ("a" * (big - 1) if n % 2 else "😀" * (big // 4 - 1) + "xyz")

    sent = t("2025-05-01T00:00:00Z")
    with world.engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    sent + timedelta(minutes=n),
                    "request",
                    f"{LK_OU}:{ESME_1}:{8000 + n}",
                    "11.1",
                    LK_OU,
                    ESME_1,
                    "",
                    payload(n),
                )
                for n in range(7)
            ],
        )
    viewer = world.viewer(LOOKER)
    newest_first = [payload(n) for n in range(6, -1, -1)]
    for search in (
        Search(srvs=("11.1",), scope=Scope.OWN),  # through the visibility index
        Search(device_id=ESME_1, srvs=("11.1",), scope=Scope.OWN),  # the device's own form
        Search(device_id=ESME_1, srvs=("11.1",)),
    ):
        with world.engine.connect() as conn:
            first, cursor = search_page(conn, viewer, search, 10)
        assert [i["payload"] for i in first] == newest_first[:3] and cursor is not None
        assert [i["payload"] for i in pages(world, viewer, search, 10)] == newest_first
    with world.engine.connect() as conn:
        few = [i["payload"] for i in iter_search(conn, viewer, Search(srvs=("11.1",)), limit=5)]
        every = [i["payload"] for i in iter_search(conn, viewer, Search(srvs=("11.1",)))]
    assert few == newest_first[:5] and every == newest_first


def test_a_large_page_of_long_payloads_reads_short_heads(world: World) -> None:
    """A page read each payload's first 64K characters before its budget of PAGE_PAYLOAD_BYTES
    applied: a page of 1,000 long payloads of 4-byte characters held 256 MiB of heads (92 MB
    for 300, review 30e). The heads of a page now share a budget of their own: the larger the
    page, the shorter each payload's head, and the longer ones are read whole after, within
    the page's budget. Measured by Python's allocations during the read: the rows of a page
    and every payload on it are Python objects (in both drivers)."""
    import tracemalloc

    from servicetrail.domain.model import SatRecord
    from servicetrail.store.items import PAGE_PAYLOAD_BYTES

    def payload(n: int) -> str:  # 280 KB of UTF-8 and of Python's str: past any head
        return f"{n:04}" + "😀" * 70_000

    sent = t("2025-05-01T00:00:00Z")
    with world.engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    sent + timedelta(seconds=n),
                    "request",
                    f"{LK_OU}:{ESME_1}:{8000 + n}",
                    "11.1",
                    LK_OU,
                    ESME_1,
                    "",
                    payload(n),
                )
                for n in range(120)
            ],
        )
    viewer = world.viewer(LOOKER)
    for search in (
        Search(srvs=("11.1",), scope=Scope.OWN),
        Search(device_id=ESME_1, srvs=("11.1",)),
    ):
        with world.engine.connect() as conn:
            tracemalloc.start()
            try:
                items, cursor = search_page(conn, viewer, search, 1000)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        fitting = PAGE_PAYLOAD_BYTES // len(payload(0).encode())
        assert [i["payload"] for i in items] == [payload(n) for n in range(119, 119 - fitting, -1)]
        assert cursor is not None
        # the page's payloads and its heads (120 of 16K 4-byte characters, 8 MiB) and a
        # little: 120 heads of 64K were 30 MiB, and the peak 47 MiB
        assert peak < PAGE_PAYLOAD_BYTES + (12 << 20), peak >> 20


def test_another_users_long_payload_is_never_read_whole_for_a_page(world: World) -> None:
    """A page reads the long payloads its rows' heads were cut from in a second statement, by
    record id: only rows whose head the rule's guarded column gave (rule 1, own payloads)
    may be read so. Another User's long request on the viewer's Device is a title on every
    path, at every page size, and no statement of the page reads its payload by its id."""
    from servicetrail.domain.model import SatRecord

    sent_at = t("2025-05-01T00:00:00Z")
    records = [
        SatRecord(
            sent_at + timedelta(seconds=n),
            "request",
            f"{user}:{ESME_1}:{8700 + n}",
            "11.1",
            user,
            ESME_1,
            "",
            f"{user} " + "x" * 70_000,
        )
        for n, user in enumerate((LK_OU, SE_IS))
    ]
    with world.engine.begin() as conn:
        append_records(conn, records)
        others = record_ids(conn)[records[0].key]
    viewer = world.viewer(SOUTHENERGY)
    for search in (Search(srvs=("11.1",)), Search(device_id=ESME_1, srvs=("11.1",))):
        for limit in (1, 2, 1000):
            with statements_sent(world.engine) as sent, world.engine.connect() as conn:
                items, _ = search_page(conn, viewer, search, limit)
            by_user = {i["user_id"]: i for i in items}
            if LK_OU in by_user:
                assert "payload" not in by_user[LK_OU] and by_user[LK_OU]["access"] == "mp141"
            if SE_IS in by_user:
                assert by_user[SE_IS]["payload"] == f"{SE_IS} " + "x" * 70_000
            # the second step's statements (the sizes, then the payloads whole)
            by_id = [p for q, p in sent if q.lstrip().startswith("SELECT sat_payload.record_id")]
            assert by_id and not any(others in _values(p) for p in by_id)


def _values(parameters: object) -> list[object]:
    """A statement's parameter values, whichever driver's form they came in."""
    if isinstance(parameters, dict):
        return [
            v
            for value in parameters.values()
            for v in (value if isinstance(value, (list, tuple)) else [value])
        ]
    return list(parameters or ())


def test_an_exchange_of_long_payloads_keeps_its_request(world: World) -> None:
    """Review 30e: a page cut short by its payloads was read as an exchange of more than
    MAX_EXCHANGE messages: a firmware request of 9 MiB, its acknowledgement and a 9 MiB
    response showed the newest two alone, the request left out. Paged on whole, 200 of them
    were held at once (review 30f). An exchange reads each payload's head, as much as a record
    page shows, and one more character to tell it is cut."""
    from servicetrail.store.items import PAYLOAD_HEAD_CHARS
    from servicetrail.web.presenters import MAX_SHOWN_PAYLOAD

    assert MAX_SHOWN_PAYLOAD == PAYLOAD_HEAD_CHARS  # the page shows what the exchange read
    from servicetrail.domain.model import SatRecord
    from servicetrail.store.queries import exchange_of

    request_id = f"{LK_OU}:{ESME_1}:8500"
    sent = t("2025-06-01T00:00:00Z")
    messages = [
        ("request", "q" * (9 << 20), ""),
        ("acknowledgement", "", ""),
        ("response", "r" * (9 << 20), "I0"),
    ]
    with world.engine.begin() as conn:
        append_records(
            conn,
            [
                SatRecord(
                    sent + timedelta(seconds=n), kind, request_id, "11.1", LK_OU, ESME_1, code, body
                )
                for n, (kind, body, code) in enumerate(messages)
            ],
        )
    with world.engine.connect() as conn:
        exchange, cut = exchange_of(conn, world.viewer(LOOKER), request_id)
    assert [(m["kind"], m["payload"]) for m in exchange] == [
        (kind, body[: PAYLOAD_HEAD_CHARS + 1]) for kind, body, _ in messages
    ]
    assert cut is False
