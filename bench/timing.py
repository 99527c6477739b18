#!/usr/bin/env python3
"""Issue 10 finding 7: does a hidden record (or Request ID) answer in another time than a
missing one? A benchmark, not a timed test: it prints the two distributions' medians and the
p-values of two-sided Mann-Whitney U and Kolmogorov-Smirnov tests (scipy, the `dev` extra:
`.venv/bin/pip install -e '.[dev]'`).

    .venv/bin/python bench/timing.py                        # 200k records, SQLite and PostgreSQL
    .venv/bin/python bench/timing.py --store URL            # a store you have
    git archive 88de499 src | tar -x -C /tmp/old            # the code before the visibility index
    .venv/bin/python bench/timing.py --pythonpath /tmp/old/src   # ... builds its store, serves it

One viewer Party (the one with the most traffic of its own) asks, over one keep-alive HTTP
connection and in one random interleaving, for --samples ids of each kind:
- hidden: another Party's alerts, and another Party's traffic on Devices the viewer never held;
- missing: ids no record has (gaps, and past the last id);
- visible: the viewer's own records and MP141 titles (the positive control: a difference
  there shows the test can see one);
and the same for `/records/{id}/why`, `/triggers` and `/proof`; for `/watches/{id}/events`
and `/watches/{id}` with other Parties' watches (made for the run), ids past the last one
and the viewer's own; and for `/records?request_id=` with Request IDs of that hidden
traffic, unused ones (the same originator and target, a counter no message has) and the
viewer's own. Each pair also gets a 95% bootstrap interval of the difference of its
medians. A generated store has no gaps, so its missing ids are all past the end, in the
viewer's last (always cached) index leaf: `--gaps-only` on a store with gaps (ids deleted
from a copy) puts them among the rest.
The samples are chosen by plain SQL over the store, not by the code under test, and every
answer is checked (404 or an empty page for hidden and missing), so a leak stops the run
instead of being timed.

`--repeat R` asks each probe R times, spread over the sequence, and keeps its fastest answer
(an attacker's filter for a busy machine: the minimum drops most of the scheduling noise).
`--pythonpath DIR` builds the store and runs the server on the code in DIR (its schema may
be older), so a before/after pair is measured on the same machine with the same world.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BIN, Store, serve, stop, store_at, stores, timed_child  # noqa: E402

try:
    from scipy import stats
except ImportError:  # a benchmark-only dependency
    raise SystemExit("bench/timing.py needs scipy: .venv/bin/pip install -e '.[dev]'") from None

ALERTS = "('device_alert', 'dcc_alert')"
MP141_KINDS = "('request', 'acknowledgement', 'response')"
SIGNIFICANT = 1e-3  # the brief's bar: a pair that differs below this on main must be explained


# ------------------------------------------------------------------ the samples


class Sql:
    """The raw engine (sqlite3 or psycopg), with `?` placeholders on both."""

    def __init__(self, store: Store, url: str) -> None:
        self.kind, self.conn = store.kind, store.raw(url)

    def rows(self, sql: str, *params) -> list[tuple]:
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()


def _never_held(alias: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM responsibility r WHERE r.device_id = {alias}.device_id "
        "AND r.party_id = ?)"
    )


def _held_then(alias: str) -> str:
    return (
        f"EXISTS (SELECT 1 FROM responsibility r WHERE r.device_id = {alias}.device_id AND "
        f"r.party_id = ? AND r.valid_from <= {alias}.logged_at AND (r.valid_to IS NULL OR "
        f"{alias}.logged_at < r.valid_to))"
    )


def _sample(values: list, n: int, rng: random.Random) -> list:
    return rng.sample(values, min(n, len(values)))


def choose(
    sql: Sql, n: int, rng: random.Random, gaps_only: bool = False
) -> tuple[str, dict[str, list]]:
    """The viewer Party and, per kind of probe, what it asks for (the rule of SPEC section 1,
    written out in SQL here so that the code under test does not pick its own samples)."""
    viewer = sql.rows(
        "SELECT u.party_id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id "
        "GROUP BY u.party_id ORDER BY count(*) DESC LIMIT 1"
    )[0][0]
    other = "FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id WHERE u.party_id <> ?"
    alerts = [i for (i,) in sql.rows(f"SELECT s.id {other} AND s.kind IN {ALERTS}", viewer)]
    foreign = sql.rows(
        f"SELECT s.id, s.request_id {other} AND s.kind IN {MP141_KINDS} AND s.device_id <> '' "
        f"AND {_never_held('s')}",
        viewer,
        viewer,
    )
    hidden = _sample(alerts, n // 2, rng)
    hidden += _sample([i for i, _ in foreign], n - len(hidden), rng)

    last = sql.rows("SELECT max(id) FROM sat_record")[0][0] or 0
    gaps = [
        i
        for (i,) in sql.rows(
            "SELECT s.id + 1 FROM sat_record s WHERE s.id < ? AND NOT EXISTS "
            "(SELECT 1 FROM sat_record t WHERE t.id = s.id + 1)",
            last,
        )
    ]
    missing = _sample(gaps, n if gaps_only else n // 2, rng)
    missing += rng.sample(range(last + 1, last + 1 + 100 * n), n - len(missing))

    own = [
        i
        for (i,) in sql.rows(
            "SELECT s.id FROM sat_record s JOIN dcc_user u ON u.user_id = s.user_id "
            "WHERE u.party_id = ?",
            viewer,
        )
    ]
    mp141 = [
        i
        for (i,) in sql.rows(
            f"SELECT s.id {other} AND s.kind IN {MP141_KINDS} AND s.device_id <> '' "
            f"AND {_held_then('s')}",
            viewer,
            viewer,
        )
    ]
    visible = _sample(mp141, n // 2, rng)
    visible += _sample(own, n - len(visible), rng)

    # a Request ID is hidden when none of its messages is the viewer's or on a Device it ever held
    seen_ids = {
        r
        for (r,) in sql.rows(
            "SELECT DISTINCT s.request_id FROM sat_record s LEFT JOIN dcc_user u "
            "ON u.user_id = s.user_id WHERE s.request_id <> '' AND (u.party_id = ? "
            f"OR NOT {_never_held('s')})",
            viewer,
            viewer,
        )
    }
    hidden_requests = _sample(sorted({r for _, r in foreign if r} - seen_ids), n, rng)
    unused = []
    for (
        request_id
    ) in hidden_requests:  # the counter an attacker would probe next, far enough to be free
        head, counter = request_id.rsplit(":", 1)
        candidate = f"{head}:{int(counter) + rng.randrange(10**6, 10**9)}"
        if not sql.rows("SELECT 1 FROM sat_record WHERE request_id = ?", candidate):
            unused.append(candidate)
    own_requests = [
        r
        for (r,) in sql.rows(
            "SELECT DISTINCT s.request_id FROM sat_record s JOIN dcc_user u "
            "ON u.user_id = s.user_id WHERE u.party_id = ? AND s.request_id <> ''",
            viewer,
        )
    ]
    return viewer, {
        "hidden": hidden,
        "missing": missing,
        "visible": visible,
        "hidden_request": hidden_requests,
        "unused_request": unused,
        "visible_request": _sample(own_requests, n, rng),
    }


# ------------------------------------------------------------------ the probes

ENDPOINTS = {  # endpoint: (path of a probe, the probe kinds it interleaves)
    "record": ("/api/v1/records/{}", ("hidden", "missing", "visible")),
    "why": ("/api/v1/records/{}/why", ("hidden", "missing", "visible")),
    "request_id": (
        "/api/v1/records?request_id={}&limit=100",
        ("hidden_request", "unused_request", "visible_request"),
    ),
    "triggers": ("/api/v1/records/{}/triggers", ("hidden", "missing", "visible")),
    "proof": ("/api/v1/records/{}/proof", ("hidden", "missing", "visible")),
    "watch_events": (
        "/api/v1/watches/{}/events",
        ("hidden_watch", "missing_watch", "visible_watch"),
    ),
    "watch": ("/api/v1/watches/{}", ("hidden_watch", "missing_watch", "visible_watch")),
}
PAIRS = {  # endpoint: (the pair that must not differ, the positive control that should)
    "record": (("hidden", "missing"), ("visible", "missing")),
    "why": (("hidden", "missing"), ("visible", "missing")),
    "triggers": (("hidden", "missing"), ("visible", "missing")),
    "proof": (("hidden", "missing"), ("visible", "missing")),
    "watch_events": (("hidden_watch", "missing_watch"), ("visible_watch", "missing_watch")),
    "watch": (("hidden_watch", "missing_watch"), ("visible_watch", "missing_watch")),
    "request_id": (("hidden_request", "unused_request"), ("visible_request", "unused_request")),
}


def _expected(kind: str, status: int, body: bytes, endpoint: str) -> bool:
    if endpoint == "proof" and kind == "visible":  # an unsealed record is 409 (not_sealed)
        return status in (200, 409)
    if kind.startswith("visible"):
        return status == 200 and (kind != "visible_request" or json.loads(body)["items"] != [])
    if kind.endswith("request"):
        return status == 200 and json.loads(body)["items"] == []
    return status == 404


def probe(
    port: int,
    token: str,
    samples: dict[str, list],
    endpoint: str,
    rng: random.Random,
    warmup: int,
    repeat: int,
) -> dict[str, list[float]]:
    """Microseconds per probe, per probe kind, from one shuffled sequence on one connection:
    each probe is asked `repeat` times (spread over the sequence) and keeps its fastest
    answer, as an attacker filters a busy machine's noise."""
    template, kinds = ENDPOINTS[endpoint]
    # keyed by the probe's place too: a watch id is asked for by many probes
    plan = [
        (kind, n, template.format(value)) for kind in kinds for n, value in enumerate(samples[kind])
    ] * repeat
    rng.shuffle(plan)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    fastest: dict[tuple[str, int], float] = {}
    for n, (kind, place, path) in enumerate(
        plan[:warmup] + plan
    ):  # the first `warmup` again, untimed
        start = time.perf_counter_ns()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter_ns() - start) / 1000
        if not _expected(kind, response.status, body, endpoint):
            raise SystemExit(
                f"{endpoint}: a {kind} probe {path} got {response.status} {body[:200]!r}: "
                "the samples are wrong, or the server shows what it must not"
            )
        if n >= warmup:
            fastest[kind, place] = min(elapsed, fastest.get((kind, place), elapsed))
    conn.close()
    timings: dict[str, list[float]] = {kind: [] for kind in kinds}
    for (kind, _), elapsed in fastest.items():
        timings[kind].append(elapsed)
    return timings


def median_difference_interval(
    a: list[float], b: list[float], rounds: int = 1000, seed: int = 1
) -> list[float]:
    """A 95% bootstrap interval of median(a) - median(b) (percentile method)."""
    rng = random.Random(seed)
    differences = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(rounds)
    )
    return [round(differences[int(0.025 * rounds)], 1), round(differences[int(0.975 * rounds)], 1)]


def compare(a: list[float], b: list[float]) -> dict:
    return {
        "median_us": [round(statistics.median(a), 1), round(statistics.median(b), 1)],
        "difference_us": round(statistics.median(a) - statistics.median(b), 1),
        "difference_95": median_difference_interval(a, b),
        "mann_whitney_p": float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue),
        "ks_p": float(stats.ks_2samp(a, b).pvalue),
        "samples": [len(a), len(b)],
    }


# ------------------------------------------------------------------ stores and servers


def cli(url: str, env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [BIN, "--db", url, *args], input=stdin, capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {done.stderr[-500:]}")
    return done.stdout


def code_env(pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def build_store(store: Store, records: int, env: dict) -> str:
    """run.build_store's world (seed 2025), migrated and generated by the code under test: the
    code before the visibility index cannot open a store migrated past its own schema."""
    url = store.fresh("timing")
    cli(url, env, "db", "upgrade")
    wall, _, done = timed_child(
        [
            BIN,
            "--db",
            url,
            "generate",
            "--records",
            str(records),
            "--seed",
            "2025",
            "--into-store",
        ],
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"generate --into-store failed: {done.stderr[-500:]}")
    if store.kind == "postgresql":
        conn = store.raw(url)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.close()
    print(f"[{store.kind}] {records} records generated in {wall:.0f} s", file=sys.stderr)
    return url


def token_for(url: str, party: str, env: dict) -> str:
    """An API token of the viewer, made by the code under test's CLI (as attack.tokens_for
    does in-process, which would migrate an older store to this code's schema)."""
    username = f"timing{os.getpid()}_{party.lower()}"  # a rerun on a kept store needs a new name
    cli(url, env, "accounts", "create", username, "--party", party, stdin="benchmark password 1\n")
    return cli(url, env, "tokens", "create", username).strip()


# watches each other Party keeps for the watch probes (their ids are the hidden ones)
WATCHES_OF_OTHERS = 5
WATCH_PARTIES = 8


def watches(sql: Sql, url: str, env: dict, viewer: str, n: int, rng: random.Random) -> dict:
    """Watch ids to probe: other Parties' (made here, by the CLI of the code under test),
    ids past the last one, and the viewer's own (the control, a page of events)."""
    others = [
        p
        for (p,) in sql.rows(
            "SELECT party_id FROM party WHERE party_id <> ? ORDER BY party_id", viewer
        )
    ][:WATCH_PARTIES]
    hidden = [
        json.loads(cli(url, env, "watch", "add", "--party", p, "--name", f"t{k}"))["id"]
        for p in others
        for k in range(WATCHES_OF_OTHERS)
    ]
    own = [json.loads(cli(url, env, "watch", "add", "--party", viewer, "--name", "own"))["id"]]
    last = max(hidden + own)
    return {
        "hidden_watch": [rng.choice(hidden) for _ in range(n)],
        "missing_watch": rng.sample(range(last + 1, last + 1 + 100 * n), n),
        "visible_watch": [own[0]] * n,
    }


def measure(store: Store, url: str, a: argparse.Namespace) -> dict:
    rng = random.Random(a.seed)
    sql = Sql(store, url)
    env = code_env(a.pythonpath)
    try:
        viewer, samples = choose(sql, a.samples, rng, a.gaps_only)
        if {"watch_events", "watch"} & set(a.endpoints.split(",")):
            samples |= watches(sql, url, env, viewer, a.samples, rng)
    finally:
        sql.close()
    token = token_for(url, viewer, env)
    proc, port = serve(url, pythonpath=a.pythonpath)
    results: dict = {
        "engine": store.kind,
        "viewer": viewer,
        "code": a.pythonpath or "this checkout",
        "repeat": a.repeat,
        "samples": {k: len(v) for k, v in samples.items()},
    }
    try:
        for endpoint in a.endpoints.split(","):
            print(f"[{store.kind}] {endpoint} ...", file=sys.stderr)
            timings = probe(port, token, samples, endpoint, rng, a.warmup, a.repeat)
            hidden, control = PAIRS[endpoint]
            results[endpoint] = {
                f"{hidden[0]}_vs_{hidden[1]}": compare(timings[hidden[0]], timings[hidden[1]]),
                f"{control[0]}_vs_{control[1]}": compare(timings[control[0]], timings[control[1]]),
            }
    finally:
        stop(proc)
    return results


def report(results: dict) -> None:
    print(
        f"\n[{results['engine']}] viewer {results['viewer']}, code: {results['code']}, "
        f"repeat {results['repeat']}, samples {results['samples']}"
    )
    print(
        f"  {'endpoint':<11} {'pair':<36} {'median a':>9} {'median b':>9} {'a - b':>8} "
        f"{'95% of a - b':>16} {'MWU p':>9} {'KS p':>9}"
    )
    for endpoint in ENDPOINTS:
        for pair, c in results.get(endpoint, {}).items():
            flag = "  <- differs" if min(c["mann_whitney_p"], c["ks_p"]) < SIGNIFICANT else ""
            print(
                f"  {endpoint:<11} {pair:<36} {c['median_us'][0]:>7.0f}us "
                f"{c['median_us'][1]:>7.0f}us {c['difference_us']:>6.1f}us "
                f"{str(c['difference_95']):>16} "
                f"{c['mann_whitney_p']:>9.2g} {c['ks_p']:>9.2g}{flag}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--store", help="an existing store, served by the code of --pythonpath (else one is built)"
    )
    ap.add_argument("--records", type=int, default=200_000, help="records of a generated store")
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--samples", type=int, default=2500, help="probes of each kind per endpoint")
    ap.add_argument(
        "--repeat", type=int, default=1, help="ask each probe this often, keep its fastest answer"
    )
    ap.add_argument(
        "--warmup", type=int, default=300, help="probes answered, untimed, before each endpoint"
    )
    ap.add_argument("--endpoints", default=",".join(ENDPOINTS))
    ap.add_argument(
        "--pythonpath", help="build the store and run the server on the code in this folder"
    )
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument(
        "--gaps-only",
        action="store_true",
        help="missing ids from the store's gaps alone (as many as it has), none past the end: "
        "a probe past the end lands in the viewer's last index leaf, always cached",
    )
    ap.add_argument("--keep", help="build stores in this folder and keep them (SQLite)")
    a = ap.parse_args()
    if a.store:
        results = measure(store_at(a.store), a.store, a)
        report(results)
        print(json.dumps(results))
        return 0
    with stores(a.engines, "servicetrail-timing-", Path(a.keep) if a.keep else None) as each:
        for store in each:
            results = measure(store, build_store(store, a.records, code_env(a.pythonpath)), a)
            report(results)
            print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
