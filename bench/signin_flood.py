#!/usr/bin/env python3
"""One Party's sign-in flood, measured from another Party's side (session 63g).

    .venv/bin/python bench/signin_flood.py --port 20700 [--accounts 8] [--clients 8]
        [--seconds 15] [--pythonpath OLD/src]

A SQLite store of `generate --records 5000`; Party A (the attacker) holds --accounts
accounts, Party B one with an API token and one it signs in with. Three phases of --seconds
each: B alone, B signing in too, A's --clients signing in with the right passwords (each
client from an address of its own, a browser of its own per account, keeping the device
cookie it is given, as a hostile User would), and with wrong ones. Throughout, B searches
(`/api/v1/records?limit=50&kind=request`, one client in a process of its own, 0.05 s
between); from the second phase on it also signs in every B_SIGN_IN_EVERY seconds (its own
browser, trusted after its first sign-in). Prints each phase's search p50/p95, B's sign-in
statuses and latencies, A's statuses, and the load average.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import shutil
import http.cookiejar
import json
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, load_registry, percentile, run_cli, serve, stop  # noqa: E402

from servicetrail.store.accounts import create_account, create_token  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402

ATTACKER, VICTIM = "KINTYREUTIL", "BRECKLANDENERGY"
RIGHT, WRONG = "benchmark password 1", "not the password 1"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class FromAddress(urllib.request.HTTPHandler):
    """Connections from one loopback address (Linux routes all of 127/8 to lo): the attacker's
    wrong passwords pause its own addresses, not the victim's."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connect = functools.partial(http.client.HTTPConnection, source_address=(self.address, 0))
        return self.do_open(connect, req)


def browser(address: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar), NoRedirect, FromAddress(address)
    )
    opener.jar = jar  # type: ignore[attr-defined]
    return opener


def sign_in(base: str, opener: urllib.request.OpenerDirector, user: str, password: str) -> int:
    """The status of one sign-in (303: signed in), the browser's session dropped first (the
    form redirects a signed-in browser without checking anything); its device cookie kept."""
    jar = opener.jar  # type: ignore[attr-defined]
    for cookie in [c for c in jar if c.name == "st_session"]:
        jar.clear(cookie.domain, cookie.path, cookie.name)
    try:
        form = opener.open(base + "/login", timeout=60).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        data = urllib.parse.urlencode(
            {"username": user, "password": password, "csrf_token": token.group(1) if token else ""}
        ).encode()
        return opener.open(base + "/login", data=data, timeout=60).status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except OSError:
        return 0


def searches(base: str, token: str, until: float, out: multiprocessing.Queue) -> None:
    times, statuses = [], Counter()
    request = urllib.request.Request(
        base + "/api/v1/records?limit=50&kind=request",
        headers={"Authorization": f"Bearer {token}"},
    )
    while time.time() < until:
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                r.read()
                statuses[r.status] += 1
        except urllib.error.HTTPError as e:
            statuses[e.code] += 1
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.05)
    out.put((times, dict(statuses)))


# B's sign-ins are every this many seconds (each one an argon2 check, of a core's second)
B_SIGN_IN_EVERY = 2.0


def victim_sign_ins(base: str, user: str, until: float, out: multiprocessing.Queue) -> None:
    opener, times, statuses = browser("127.0.0.50"), [], Counter()
    while time.time() < until:
        start = time.perf_counter()
        statuses[sign_in(base, opener, user, RIGHT)] += 1
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(max(0.0, B_SIGN_IN_EVERY - (time.perf_counter() - start)))
    out.put((times, dict(statuses)))


def flood(base: str, users: list[str], clients: int, password: str, until: float) -> dict:
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(n: int) -> None:
        openers = {user: browser(f"127.0.0.{2 + n}") for user in users}
        i = n
        while time.time() < until:
            user = users[i % len(users)]
            status = sign_in(base, openers[user], user, password)
            with lock:
                statuses[status] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(statuses)


def phase(
    base: str, a: argparse.Namespace, users: list[str], password: str | None, b_signs_in: bool
) -> dict:
    until = time.time() + a.seconds
    load_before = os.getloadavg()[0]
    out: multiprocessing.Queue = multiprocessing.Queue()
    sign_out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=searches, args=(base, a.token, until, out))]
    if b_signs_in:
        procs.append(
            multiprocessing.Process(target=victim_sign_ins, args=(base, a.victim, until, sign_out))
        )
    for p in procs:
        p.start()
    attacker = flood(base, users, a.clients, password, until) if password else {}
    times, statuses = out.get()
    sign_times, sign_statuses = sign_out.get() if b_signs_in else ([float("nan")], {})
    for p in procs:
        p.join()
    ms = lambda values, p: round(percentile(values, p), 1)  # noqa: E731
    return {
        "load_1min_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "search_n": len(times),
        "search_p50_p95_ms": [ms(times, 50), ms(times, 95)],
        "search_statuses": statuses,
        "b_sign_in_statuses": sign_statuses,
        "b_sign_in_p50_max_ms": [ms(sign_times, 50), round(max(sign_times), 1)],
        "attacker_statuses": attacker,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--accounts", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--pythonpath")
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="signin-flood-"))
    a = ap.parse_args()
    work = Path(a.work)
    template, url = work / "template.db", f"sqlite:///{work / 'store.db'}"
    if not template.exists():
        made = f"sqlite:///{template}"
        run_cli(["generate", str(work / "world"), "--records", "5000"])
        load_registry(made, work / "world")
        run_cli(["--db", made, "ingest", str(work / "world" / "sat.jsonl")])
    for suffix in ("-wal", "-shm"):
        (work / f"store.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, work / "store.db")  # no pause left by a run before
    tag = str(os.getpid())
    engine = open_store(url)
    with engine.begin() as conn:
        users = [f"flood{tag}_{n}" for n in range(a.accounts)]
        for user in users:
            create_account(conn, user, ATTACKER, RIGHT)
        a.victim = f"victim{tag}"
        create_account(conn, a.victim, VICTIM, RIGHT)
        a.token = create_token(conn, a.victim)
    engine.dispose()
    proc, port = serve(url, pythonpath=a.pythonpath, port=a.port)
    base = f"http://127.0.0.1:{port}"
    try:
        results = {
            "server": BIN,
            "pythonpath": a.pythonpath or os.environ.get("PYTHONPATH"),
            "accounts": a.accounts,
            "clients": a.clients,
            "alone": phase(base, a, users, None, False),
            "b_signs_in": phase(base, a, users, None, True),
            "right_passwords": phase(base, a, users, RIGHT, True),
        }
        time.sleep(2)
        results["wrong_passwords"] = phase(base, a, users, WRONG, True)
    finally:
        stop(proc)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
