"""The Who-looked page (`/access-log`, SPEC section 8 on the screen) at a size: a SQLite store
holding `--entries` access-log entries of `--parties` Parties, served, and the page asked for
through HTTP by a Party's analyst and by an auditor (all Parties, one Party, a second page, a
one-hour window), each beside the raw floor: the same page's SQL on the same file.

    .venv/bin/python bench/who_looked.py [--entries 1000000] [--parties 40] [--requests 200]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, ROOT, percentile, serve, stop  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
from servicetrail.domain.access_log import Reader, Tally  # noqa: E402
from servicetrail.store.access_log import append_entries  # noqa: E402
from servicetrail.store.engine import open_store  # noqa: E402

PASSWORD = "a long bench password 42"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
BATCH = 5000


def build(folder: Path, entries: int, parties: int) -> str:
    """The store: Parties, a Party analyst's and an auditor's accounts, and the entries, a
    batch at a time (each batch one `at`), spread over the Parties in turn."""
    url = f"sqlite:///{folder / 'who.db'}"
    users = folder / "users.csv"
    users.write_text(
        "user_id,party_id,party_name,role\n"
        + "".join(f"90-B3-D5-1F-30-{n:02X}-00-01,P{n:03d},Party {n},IS\n" for n in range(parties))
    )
    for args, given in (
        (["load", "users", str(users)], None),
        (["accounts", "create", "analyst", "--party", "P000"], PASSWORD + "\n"),
        (["accounts", "create", "auditor", "--auditor"], PASSWORD + "\n"),
    ):
        subprocess.run([BIN, "--db", url, *args], input=given, text=True, check=True,
                       capture_output=True)  # fmt: skip
    engine = open_store(url)
    tally = Tally()
    tally.count({"access": "mp141", "device_id": f"00-DB-12-00-00-00-{n:02X}-01"} for n in range(5))
    for start in range(0, entries, BATCH):
        reads = [
            (Reader(f"P{n % parties:03d}", "analyst", "api"), "search", {"n": str(n)}, tally)
            for n in range(start, min(start + BATCH, entries))
        ]
        with engine.begin() as conn:
            append_entries(conn, reads)
    engine.dispose()
    return url


def signed_in(base: str, username: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = opener.open(base + "/login").read().decode()
    data = urllib.parse.urlencode(
        {"username": username, "password": PASSWORD, "csrf_token": TOKEN.search(form).group(1)}
    ).encode()
    landed = opener.open(base + "/login", data=data)
    assert "/login" not in landed.url, f"{username} did not sign in"
    return opener


def timed(opener: urllib.request.OpenerDirector, url: str, requests: int) -> dict[str, float]:
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        with opener.open(url) as answer:
            body = answer.read()
        times.append((time.perf_counter() - start) * 1000)
    assert b"entry-" in body, url
    return {"p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2)}


def floor(path: str, party: str | None, requests: int) -> dict[str, float]:
    """The page's rows by raw SQL: the newest 51 entries (of a Party) by (at, id)."""
    db = sqlite3.connect(path)
    where, args = ("WHERE party_id = ?", (party,)) if party else ("", ())
    sql = f"SELECT * FROM access_log {where} ORDER BY at DESC, id DESC LIMIT 51"
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        db.execute(sql, args).fetchall()
        times.append((time.perf_counter() - start) * 1000)
    db.close()
    return {"p50_ms": round(percentile(times, 50), 3), "p95_ms": round(percentile(times, 95), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--parties", type=int, default=40)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as work:
        started = time.perf_counter()
        url = build(Path(work), args.entries, args.parties)
        built = time.perf_counter() - started
        proc, port = serve(url)
        try:
            base = f"http://127.0.0.1:{port}"
            analyst, auditor = signed_in(base, "analyst"), signed_in(base, "auditor")
            second = re.search(
                r'href="(/access-log\?[^"]*cursor=[^"]+)"',
                analyst.open(base + "/access-log").read().decode(),
            )
            hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
            window = "/access-log?" + urllib.parse.urlencode({"from": hour_ago})
            figures = {
                "entries": args.entries,
                "parties": args.parties,
                "build_s": round(built, 1),
                "party, first page": timed(analyst, base + "/access-log", args.requests),
                "party, second page": timed(
                    analyst, base + second.group(1).replace("&amp;", "&"), args.requests
                ),
                "party, last hour": timed(analyst, base + window, args.requests),
                "auditor, every Party": timed(auditor, base + "/access-log", args.requests),
                "auditor, one Party": timed(
                    auditor, base + "/access-log?party=P007", args.requests
                ),
                "floor, a Party's page (SQL)": floor(
                    url.removeprefix("sqlite:///"), "P000", args.requests
                ),
                "floor, every Party's page (SQL)": floor(
                    url.removeprefix("sqlite:///"), None, args.requests
                ),
            }
        finally:
            stop(proc)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
