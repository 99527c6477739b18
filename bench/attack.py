#!/usr/bin/env python3
"""Issue 10's attacks on a running `servicetrail serve`, measured from another Party's side.

    .venv/bin/python bench/attack.py --store URL          # every scenario on a store you have
    .venv/bin/python bench/attack.py --records 1000000    # build SQLite and PostgreSQL stores first
    .venv/bin/python bench/attack.py --store URL --pythonpath OLD/src    # ... against other code

- `stalled` (finding 1): one Party asks for its own-traffic report on 20 sockets with a 4 KB
  receive buffer that read 100 bytes and then stop reading, holds them for --hold seconds,
  and closes them. Meanwhile one client of other Parties searches by Device ID without a
  pause. Prints those searches' p50/p95 before and during the attack (and any that failed),
  the recovery time (from the close until 20 searches in a row answer 200 within twice the
  usual p95), what the 20 sockets got, and on PostgreSQL the sessions held in a transaction
  for more than a second during the attack.
- `heavy` (finding 9): one Party runs 8 broad searches in parallel, again and again (a client
  told 429 waits its Retry-After); the other Parties' device searches are measured before and
  during.

- `backlog` (audit 49d): one Party's watch holds --backlog events (written straight into the
  store, as a watch matching all its Party may see gathers them over months), and the Party
  deletes it while the other Parties' device searches are measured: on SQLite the deletion's
  transaction held the one write lock, which every read waits for to append its access-log
  entry (1M events: every search stood 4.4 s). Prints the deletion's time and the searches
  before, during and after it.

- `strangers` (audit 49d): no account at all. 80 connections from 40 loopback addresses
  (127.0.0.2 to .41: Linux routes all of 127/8 to lo) ask for the sign-in page again and
  again; the other Parties' device searches are measured before and during. Each address
  is within its share of requests in flight (web.gate); all together they draw on one budget
  a second (gate.ANONYMOUS_RATE), without which others' searches took 30 times as long.
- `forged`: as `strangers`, but each request presents a made-up bearer token, for the logs:
  each is looked up in the store (a share of 4 per address of credentials not yet seen).
- `scattered` (audit 51c 1): as `forged`, but each request comes on a new connection from a
  new address, each of a /24 of its own for its first 254 (127.A.B.C: 20,320 /24s in all), as
  a botnet's would: no address and no network has sent a made-up token before. Halfway
  through, a Party's token never used yet asks from a network of its own (a Party's first
  request after a restart), again after each 429's Retry-After: its tries and seconds.
- `held` (finding 52g 1): made-up tokens from one IPv6 /48, each client alternating a new /64
  of it and the last of its /64s that was looked up (said in X-Forwarded-For: the server
  trusts 127.0.0.1 as a proxy, loopback having no /48 to send from). Once 4 of its /64s are
  remembered, so is the /48 (web.suspects): its /64s looked up draw on the budget of what
  carries none, its new ones on the first look-ups, in its turn. Halfway through, a Party's
  token never used yet asks from a /64 of the same /48, again after each Retry-After (as in
  `scattered`).

- `burst` (audit 59f): a Party's token never used yet, asked halfway through from one address
  of a /24, 0.8 s after 400 made-up tokens from 200 other addresses of it: whether its finding
  lets the network's waiting made-up tokens go past the first look-ups' budget. Prints their
  statuses, the token's answer and the other Parties' searches.
- `overdue` (audit 59f): made-up tokens from 64 addresses of a fresh /24 at once, a new /24
  each second, while one Party's 8 broad searches keep the server's threads busy: each
  network's first look-ups take turns (web.first_lookups), and a request whose wait runs out
  while one of its network's is under way waits for its answer, up to LOOKUP_WAIT (5 s) more.
  Prints how many of them were answered after 1.5 s, and the other Parties' searches.

`--pythonpath DIR` runs the server on the code in DIR (for example the commit before the
fix, from `git archive COMMIT src | tar -x -C DIR`), to measure the same attack before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (search_targets)
from harness import Store, percentile, serve, stop, store_at, stores  # noqa: E402

from servicetrail.store.accounts import create_account, create_token  # noqa: E402
from servicetrail.store.driver_sql import mark_of  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402

STALLED_SOCKETS = (
    20  # the pool of one server process on PostgreSQL (10 + 10 overflow); SQLite's is 15
)
HEAVY_CLIENTS = 8


def answer_of(
    conn: http.client.HTTPConnection,
) -> tuple[int, http.client.HTTPConnection | None]:
    """The status of the answer to the request just sent, read whole, and the connection if
    the server keeps it open (None if it said it closes it)."""
    response = conn.getresponse()
    response.read()
    if response.getheader("connection", "").lower() == "close":
        conn.close()
        return response.status, None
    return response.status, conn


class Searches:
    """One client of other Parties searching by Device ID without a pause, in a thread:
    (start, seconds, status) for every search; status 0 for no answer within the timeout."""

    def __init__(self, port: int, plan: list[tuple[str, str]], timeout: float = 60.0) -> None:
        self.port, self.plan, self.timeout = port, plan, timeout
        self.log: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = None
        rng = random.Random(7)
        while not self._stop.is_set():
            token, path = rng.choice(self.plan)
            start = time.monotonic()
            try:
                conn = conn or http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                status, conn = answer_of(conn)
            except OSError:
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            self.log.append((start, time.monotonic() - start, status))

    def start(self) -> Searches:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def between(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [entry for entry in self.log if start <= entry[0] < end]


def summary(entries: list[tuple[float, float, int]]) -> dict:
    good = [seconds * 1000 for _, seconds, status in entries if status == 200]
    failed = [status for _, _, status in entries if status != 200]
    if not good:
        return {"searches": len(entries), "failed": len(failed)}
    return {
        "searches": len(entries),
        "failed": len(failed),
        "statuses_failed": sorted(set(failed)),
        "p50_ms": round(percentile(good, 50), 2),
        "p95_ms": round(percentile(good, 95), 2),
        "max_ms": round(max(good), 1),
    }


def stalled_socket(port: int, path: str, token: str, results: list, lock: threading.Lock) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(120)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"{token}\r\n\r\n".encode()
        )
        head = sock.recv(100)
        status = int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0
    except OSError:
        status = 0
    with lock:
        results.append((sock, status))


def held_sessions(store: Store, url: str) -> int | None:
    """PostgreSQL sessions in a transaction for more than a second: held, not passing through
    (a report's COPY waiting on its reader is 'active'; a suspended one 'idle in transaction')."""
    if store.kind != "postgresql":
        return None
    conn = store.raw(url)
    try:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND now() - xact_start > interval '1 second'"
        ).fetchone()[0]
    finally:
        conn.close()


def scenario_stalled(
    store: Store,
    url: str,
    port: int,
    victims: list,
    attacker: tuple[str, str],
    hold: float,
    recovery_limit: float,
) -> dict:
    token, party = attacker
    report = "/api/v1/reports/own.csv?from=2025-03-01T00:00:00Z&to=2025-04-01T00:00:00Z"
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port}{report}", headers={"Authorization": f"Bearer {token}"}
        )
    ) as whole:
        report_bytes = len(whole.read())
    searches = Searches(port, victims).start()
    time.sleep(10)
    attack_at = time.monotonic()
    sockets: list = []
    lock = threading.Lock()
    openers = [
        threading.Thread(target=stalled_socket, args=(port, report, token, sockets, lock))
        for _ in range(STALLED_SOCKETS)
    ]
    for opener in openers:
        opener.start()
    time.sleep(hold)
    held = held_sessions(store, url)
    closed_at = time.monotonic()
    for opener in openers:
        opener.join(1)
    with lock:
        for sock, _ in sockets:
            sock.close()
    usual = summary(searches.between(0, attack_at))
    good_enough = 2 * usual["p95_ms"] / 1000
    recovered_at = None
    while time.monotonic() < closed_at + recovery_limit and recovered_at is None:
        time.sleep(1)
        after = searches.between(closed_at, time.monotonic())
        for i in range(len(after) - 19):
            if all(
                status == 200 and seconds <= good_enough for _, seconds, status in after[i : i + 20]
            ):
                recovered_at = after[i][0]
                break
    searches.stop()
    statuses = [status for _, status in sockets]
    return {
        "attacker": party,
        "report_bytes": report_bytes,
        "sockets": STALLED_SOCKETS,
        "hold_s": hold,
        "socket_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "postgresql_sessions_held_during": held,
        "others_before": usual,
        "others_during": summary(searches.between(attack_at, closed_at)),
        "recovery_s": round(recovered_at - closed_at, 2)
        if recovered_at is not None
        else f"> {recovery_limit}",
    }


def scenario_heavy(
    port: int, victims: list, attacker: tuple[str, str], query: str, seconds: float
) -> dict:
    token, party = attacker

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        def broad_searches() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while not stop.is_set():
                conn.request("GET", query, headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                count(response.status)
                if response.status == 429:
                    stop.wait(float(response.getheader("retry-after", "1")))
            conn.close()

        return [threading.Thread(target=broad_searches) for _ in range(HEAVY_CLIENTS)]

    counts, others = attack_with(port, victims, seconds, clients, join_within=130)
    return {
        "attacker": party,
        "query": query,
        "clients": HEAVY_CLIENTS,
        "attacker_statuses": counts,
        **others,
    }


AttackingClients = Callable[[threading.Event, Callable[[int], None]], list[threading.Thread]]


def attack_with(
    port: int, victims: list, seconds: float, clients_of: AttackingClients, join_within: float
) -> tuple[dict[int, int], dict]:
    """The victims' searches for `seconds` quiet, then for `seconds` while the threads that
    `clients_of(stop, count)` makes attack (each counting its answers' statuses); the
    statuses the attackers were answered, and the victims' summaries before and during."""
    searches = Searches(port, victims).start()
    time.sleep(seconds)
    attack_at = time.monotonic()
    stop = threading.Event()
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def count(status: int) -> None:
        with lock:
            counts[status] = counts.get(status, 0) + 1

    ended_at = attack_for(clients_of(stop, count), seconds, stop, join_within)
    searches.stop()
    return counts, {
        "others_before": summary(searches.between(0, attack_at)),
        "others_during": summary(searches.between(attack_at, ended_at)),
    }


def attack_for(
    clients: list[threading.Thread], seconds: float, stop: threading.Event, join_within: float
) -> float:
    """The attacking threads run for `seconds`, then are told to stop and awaited (each up to
    `join_within`, a request's longest); the time the attack ended."""
    for client in clients:
        client.start()
    time.sleep(seconds)
    ended_at = time.monotonic()
    stop.set()
    for client in clients:
        client.join(join_within)
    return ended_at


CHEAP_CLIENTS = 12
CHEAP_PATHS = ("/api/v1/logs", "/api/v1/records/999999999")


def scenario_cheap(port: int, victims: list, attacker: tuple[str, str], seconds: float) -> dict:
    token, party = attacker

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        def cheap_reads(n: int) -> None:
            path = CHEAP_PATHS[n % len(CHEAP_PATHS)]
            conn = None
            while not stop.is_set():
                try:
                    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except OSError:
                    status, conn = 0, None
                count(status)

        return [threading.Thread(target=cheap_reads, args=(n,)) for n in range(CHEAP_CLIENTS)]

    counts, others = attack_with(port, victims, seconds, clients, join_within=65)
    return {
        "attacker": party,
        "clients": CHEAP_CLIENTS,
        "paths": CHEAP_PATHS,
        "attacker_statuses": counts,
        **others,
    }


STRANGER_ADDRESSES, STRANGER_CONNECTIONS = 40, 2


def scenario_strangers(port: int, victims: list, seconds: float, forged: bool = False) -> dict:
    """`forged`: each request a made-up bearer token's, for the logs (`forged`)."""

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        def sign_in_pages(address: str) -> None:
            conn = None
            while not stop.is_set():
                try:
                    conn = conn or http.client.HTTPConnection(
                        "127.0.0.1", port, timeout=60, source_address=(address, 0)
                    )
                    if forged:
                        made_up = {"Authorization": f"Bearer {random.randbytes(32).hex()}"}
                        conn.request("GET", "/api/v1/logs", headers=made_up)
                    else:
                        conn.request("GET", "/login")
                    status, conn = answer_of(conn)
                except OSError:
                    status, conn = 0, None
                count(status)

        return [
            threading.Thread(target=sign_in_pages, args=(f"127.0.0.{2 + n}",))
            for n in range(STRANGER_ADDRESSES)
            for _ in range(STRANGER_CONNECTIONS)
        ]

    counts, others = attack_with(port, victims, seconds, clients, join_within=65)
    return {
        "addresses": STRANGER_ADDRESSES,
        "connections": STRANGER_ADDRESSES * STRANGER_CONNECTIONS,
        "stranger_statuses": counts,
        **others,
    }


SCATTERED_CLIENTS = 80


def first_request(port: int, token: str, address: str, forwarded: str | None = None) -> dict:
    """A Party's token never used yet, from a network that sent nothing yet (a Party's first
    request after a restart), asked until it is answered other than 429, each time after the
    Retry-After it was given: the tries, and the seconds until then. `forwarded`: the address
    a trusted proxy says it comes from (`held`)."""
    started, tries, status = time.monotonic(), 0, 429
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    while status == 429 and tries < 60:
        if tries:
            time.sleep(1)
        tries += 1
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=60, source_address=(address, 0)
        )
        try:
            conn.request("GET", "/api/v1/logs", headers=headers)
            status, _ = answer_of(conn)
        except OSError:
            status = 0
        conn.close()
    return {"status": status, "tries": tries, "seconds": round(time.monotonic() - started, 2)}


MadeUpTokens = Callable[[int, threading.Event, Callable[[int], None]], None]


def with_a_party_amid(
    port: int,
    victims: list,
    seconds: float,
    connections: int,
    made_up_tokens: MadeUpTokens,
    party_first: Callable[[], dict],
) -> dict:
    """`connections` clients sending made-up tokens (`made_up_tokens(n, stop, count)`), and
    halfway through the attack a Party's first request (`party_first`): scattered's and
    held's shared frame."""
    party: dict = {}

    def party_amid(stop: threading.Event) -> None:
        if not stop.wait(seconds / 2):
            party.update(party_first())

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        return [
            *(
                threading.Thread(target=made_up_tokens, args=(n, stop, count))
                for n in range(connections)
            ),
            threading.Thread(target=party_amid, args=(stop,)),
        ]

    counts, others = attack_with(port, victims, seconds, clients, join_within=65)
    return {
        "connections": connections,
        "stranger_statuses": counts,
        "party_first_request": party,
        **others,
    }


def made_up_request(port: int, address: str) -> int:
    """A made-up bearer token's request on a new connection from `address`: its status (0 for
    no answer)."""
    try:
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=60, source_address=(address, 0)
        )
        made_up = {"Authorization": f"Bearer {random.randbytes(32).hex()}"}
        conn.request("GET", "/api/v1/logs", headers=made_up)
        status, _ = answer_of(conn)
        conn.close()
        return status
    except OSError:
        return 0


def scenario_scattered(port: int, victims: list, seconds: float, fresh_token: str) -> dict:
    """And halfway through the attack, a Party's first request (`first_request`)."""

    def made_up_tokens(n: int, stop: threading.Event, count: Callable[[int], None]) -> None:
        sent = 0
        while not stop.is_set():
            # 127.A.(n).C: a new /24 for each of the client's first 254 requests, then again
            # with another C (web.suspects remembers a /24 once 4 of its addresses)
            address = f"127.{1 + sent % 254}.{n}.{2 + (sent // 254) % 250}"
            sent += 1
            count(made_up_request(port, address))

    return with_a_party_amid(
        port,
        victims,
        seconds,
        SCATTERED_CLIENTS,
        made_up_tokens,
        lambda: first_request(port, fresh_token, "127.255.255.2"),
    )


HELD_CLIENTS = 80
HELD_NETWORK = "2001:db8:53"


def scenario_held(port: int, victims: list, seconds: float, fresh_token: str) -> dict:
    """And halfway through the attack, a Party's first request from inside the /48."""

    def made_up_tokens(n: int, stop: threading.Event, count: Callable[[int], None]) -> None:
        conn, sent, marked = None, 0, None
        while not stop.is_set():
            # 2001:db8:53:(n)(k)::1, a new /64 (k) on every other request, else the last
            # one looked up (marked: web.gate draws it on the budget of what carries none)
            new = f"{HELD_NETWORK}:{n:02x}{sent // 2 % 256:02x}::1"
            address = marked if sent % 2 and marked else new
            sent += 1
            made_up = {
                "Authorization": f"Bearer {random.randbytes(32).hex()}",
                "X-Forwarded-For": address,
            }
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/api/v1/logs", headers=made_up)
                status, conn = answer_of(conn)
            except OSError:
                status, conn = 0, None
            if status == 401:
                marked = address
            count(status)

    forwarded = f"{HELD_NETWORK}:ffff::7"
    found = with_a_party_amid(
        port,
        victims,
        seconds,
        HELD_CLIENTS,
        made_up_tokens,
        lambda: first_request(port, fresh_token, "127.0.0.1", forwarded),
    )
    return {
        **found,
        "looked_up_a_second": round(found["stranger_statuses"].get(401, 0) / seconds, 1),
    }


OVERDUE_ADDRESSES = 64


def scenario_overdue(
    port: int, victims: list, attacker: tuple[str, str], query: str, seconds: float
) -> dict:
    """Made-up tokens from 64 addresses of a fresh /24 at once, a new /24 each second, while
    one Party's broad searches keep the threads busy (its requests' statuses counted as 1000 +
    status): the made-up tokens' answer times, and the other Parties' searches."""
    token, party = attacker
    held: list[float] = []  # seconds each made-up token's request took to be answered
    lock = threading.Lock()

    def made_up_tokens(n: int, stop: threading.Event, count: Callable[[int], None]) -> None:
        while not stop.is_set():
            # a fresh /24 each second, all the clients' addresses in it at once
            second = int(time.monotonic())
            address = f"127.{100 + second // 250 % 100}.{second % 250}.{2 + n}"
            start = time.monotonic()
            status = made_up_request(port, address)
            with lock:
                held.append(time.monotonic() - start)
            count(status)

    def broad_searches(stop: threading.Event, count: Callable[[int], None]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while not stop.is_set():
            conn.request("GET", query, headers={"Authorization": f"Bearer {token}"})
            status, kept = answer_of(conn)
            conn = kept or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            count(1000 + status)  # told apart from the made-up tokens' statuses
            if status == 429:
                stop.wait(1)

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        return [
            *(
                threading.Thread(target=made_up_tokens, args=(n, stop, count))
                for n in range(OVERDUE_ADDRESSES)
            ),
            *(
                threading.Thread(target=broad_searches, args=(stop, count))
                for _ in range(HEAVY_CLIENTS)
            ),
        ]

    counts, others = attack_with(port, victims, seconds, clients, join_within=130)
    return {
        "attacker": party,
        "made_up_addresses": OVERDUE_ADDRESSES,
        "statuses": counts,  # 1000 + status: the broad searches'
        "made_up_answered_after_1_5_s": sum(1 for h in held if h > 1.5),
        "made_up_p50_s": round(percentile(held, 50), 3) if held else None,
        "made_up_max_s": round(max(held), 2) if held else None,
        **others,
    }


BURST_ADDRESSES, BURST_EACH = 200, 2


def scenario_burst(port: int, victims: list, seconds: float, fresh_token: str) -> dict:
    """A logged-in User's token never used yet, and made-up tokens from 200 other addresses
    of its /24 (2 at once each) sent 0.8 s before it: they wait in the network's turn, and
    the token found lets its network's waiting requests go (first_lookups.let_through)."""
    network = "127.60.0"
    times: dict[str, float] = {}
    go = threading.Event()

    def made_up(n: int, stop: threading.Event, count: Callable[[int], None]) -> None:
        stop.wait(seconds / 2)  # halfway through the attack, once
        if not stop.is_set():
            count(made_up_request(port, f"{network}.{2 + n // BURST_EACH}"))

    def the_users(stop: threading.Event) -> None:
        if stop.wait(seconds / 2 + 0.8):
            return
        times["sent"] = time.monotonic()
        found = first_request(port, fresh_token, f"{network}.250")
        times["answered"] = time.monotonic()
        times["status"] = found["status"]
        go.set()

    def clients(stop: threading.Event, count: Callable[[int], None]) -> list[threading.Thread]:
        return [
            *(
                threading.Thread(target=made_up, args=(n, stop, count))
                for n in range(BURST_ADDRESSES * BURST_EACH)
            ),
            threading.Thread(target=the_users, args=(stop,)),
        ]

    counts, others = attack_with(port, victims, seconds, clients, join_within=65)
    return {
        "made_up_requests": BURST_ADDRESSES * BURST_EACH,
        "made_up_statuses": counts,
        "the_users_status": times.get("status"),
        "the_users_seconds": round(times["answered"] - times["sent"], 2) if go.is_set() else None,
        **others,
    }


def filled_watch(store: Store, url: str, port: int, token: str, events: int) -> int:
    """A new watch of the token's Party with `events` events, written straight into the store."""
    made = urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/watches",
            data=json.dumps({"name": "backlog", "senders": "all"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
    )
    watch_id = json.loads(made.read())["id"]
    conn = store.raw(url)
    if store.kind == "sqlite":
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO watch_event SELECT ?, i, i, '2025-06-01T00:00:00.000000Z', '', "
            "'2026-01-01T00:00:00.000000Z' FROM n",
            (events, watch_id),
        )
    else:
        conn.execute(
            "INSERT INTO watch_event SELECT %s, i, i, now(), '', now() "
            "FROM generate_series(1, %s) AS i",
            (watch_id, events),
        )
    mark = mark_of(store.kind)
    conn.execute(f"UPDATE watch SET last_event_id = {mark} WHERE id = {mark}", (events, watch_id))
    conn.commit()
    conn.close()
    return watch_id


def scenario_backlog(
    store: Store, url: str, port: int, victims: list, attacker: tuple[str, str], events: int
) -> dict:
    token, party = attacker
    watch_id = filled_watch(store, url, port, token, events)
    searches = Searches(port, victims).start()
    time.sleep(10)
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(
        "DELETE", f"/api/v1/watches/{watch_id}", headers={"Authorization": f"Bearer {token}"}
    )
    status = conn.getresponse().status
    ended = time.monotonic()
    time.sleep(5)
    searches.stop()
    return {
        "attacker": party,
        "events": events,
        "delete_status": status,
        "delete_s": round(ended - started, 2),
        "others_before": summary(searches.between(0, started)),
        "others_during": summary(searches.between(started, ended)),
        "others_after": summary(searches.between(ended, ended + 5)),
    }


def tokens_for(url: str, parties: set[str], tag: str = "") -> dict[str, str]:
    engine = open_store(url)
    made = {}
    with engine.begin() as conn:
        for party in parties:
            # a rerun on a kept store needs new names
            username = f"attack{os.getpid()}{tag}_{party.lower()}"
            create_account(conn, username, party, "benchmark password 1")
            made[party] = create_token(conn, username)
    engine.dispose()
    return made


def measure(store: Store, url: str, a: argparse.Namespace) -> dict:
    rng = random.Random(5)
    ordinary, _ = run.search_targets(url, store, 200, rng)
    conn = store.raw(url)
    busiest = conn.execute(
        "SELECT u.party_id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id "
        "GROUP BY u.party_id ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()[0]
    conn.close()
    victims = [(p, d) for p, _, d in ordinary if p != busiest]
    tokens = tokens_for(url, {p for p, _ in victims} | {busiest})
    plan = [(tokens[p], f"/api/v1/records?device_id={d}&limit=100") for p, d in victims]
    results = {}
    for name in a.scenarios.split(","):
        trusting = "127.0.0.1" if name == "held" else None  # its clients' /64s: forwarded
        proc, port = serve(url, a.workers, a.pythonpath, a.port, trusting)
        try:
            print(f"[{store.kind}] {name} ...", file=sys.stderr)
            if name in ("strangers", "forged"):
                results[name] = scenario_strangers(port, plan, a.seconds, name == "forged")
            elif name == "scattered":
                fresh = tokens_for(url, {busiest}, f"first{len(results)}")[busiest]
                results[name] = scenario_scattered(port, plan, a.seconds, fresh)
            elif name == "burst":
                fresh = tokens_for(url, {busiest}, f"first{len(results)}")[busiest]
                results[name] = scenario_burst(port, plan, a.seconds, fresh)
            elif name == "held":
                fresh = tokens_for(url, {busiest}, f"first{len(results)}")[busiest]
                results[name] = scenario_held(port, plan, a.seconds, fresh)
            elif name == "overdue":
                results[name] = scenario_overdue(
                    port, plan, (tokens[busiest], busiest), a.heavy_query, a.seconds
                )
            elif name == "cheap":
                results[name] = scenario_cheap(port, plan, (tokens[busiest], busiest), a.seconds)
            elif name == "backlog":
                results[name] = scenario_backlog(
                    store, url, port, plan, (tokens[busiest], busiest), a.backlog
                )
            elif name == "stalled":
                results[name] = scenario_stalled(
                    store, url, port, plan, (tokens[busiest], busiest), a.hold, a.recovery_limit
                )
            else:
                results[name] = scenario_heavy(
                    port, plan, (tokens[busiest], busiest), a.heavy_query, a.seconds
                )
        finally:
            stop(proc)
        print(json.dumps({store.kind: {name: results[name]}}, indent=2))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", help="an existing store (else one is generated per engine)")
    ap.add_argument("--records", type=int, default=200_000, help="records of a generated store")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--scenarios", default="stalled,heavy,backlog,strangers,cheap")
    ap.add_argument("--pythonpath", help="run the server on the code in this folder")
    ap.add_argument(
        "--workers", type=int, default=1, help="server processes (the bounds are per process)"
    )
    ap.add_argument("--port", type=int, help="the server's port (else a free one)")
    ap.add_argument("--hold", type=float, default=40.0, help="seconds the stalled sockets are held")
    ap.add_argument("--recovery-limit", type=float, default=300.0)
    ap.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="heavy, strangers, cheap: seconds before and during the attack",
    )
    ap.add_argument(
        "--backlog", type=int, default=1_000_000, help="backlog: the deleted watch's events"
    )
    ap.add_argument("--heavy-query", default="/api/v1/records?srv=11.2&limit=100")
    a = ap.parse_args()
    if a.store:
        measure(store_at(a.store), a.store, a)
        return 0
    with stores(a.engines, "servicetrail-attack-") as each:
        for store in each:
            _, url = run.build_store(store, a.records)
            measure(store, url, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
