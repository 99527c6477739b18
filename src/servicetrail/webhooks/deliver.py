"""The delivery worker: matches new records into events, and posts the outbox's due events
to their webhooks (Standard Webhooks), from `servicetrail serve` and `servicetrail deliver`.

Bounded everywhere a receiver could hold it up:
- at most CONCURRENCY deliveries in flight, and PER_HOST to one receiver (host and port);
  a receiver's watches are left out of the next lease while it has its share in flight, so
  a slow one cannot fill the worker;
- each attempt ends within TIMEOUT_SECONDS (connect, send, answer, all together), reads at
  most MAX_RESPONSE_BYTES of the answer, and follows no redirect;
- the address is resolved and checked (webhooks.outbound) before every connection, and the
  connection goes to that checked address, not to a second resolution of the name.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import orjson
from sqlalchemy.engine import Engine

from ..domain.times import format_time
from ..store.outbox import Due, Outcome, lease_due, record_outcomes
from ..store.watches import catch_up
from .outbound import IPAddress, Target, UnsafeUrl, parse_url, resolve
from .signing import signed_headers

log = logging.getLogger("servicetrail.webhooks")
UTC = timezone.utc

# Standard Webhooks' schedule: the waits before attempts 2, 3, ... (then it is given up)
STANDARD_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
TIMEOUT_SECONDS = float(os.environ.get("SERVICETRAIL_WEBHOOK_TIMEOUT", "15"))
CONCURRENCY = int(os.environ.get("SERVICETRAIL_WEBHOOK_CONCURRENCY", "64"))
PER_HOST = int(os.environ.get("SERVICETRAIL_WEBHOOK_PER_HOST", "16"))
MAX_RESPONSE_BYTES = 64 * 1024
IDLE_SECONDS = 0.1  # how often an idle worker looks for new records and due deliveries
RESOLVE_SECONDS = 5.0  # a checked address is reused this long (then resolved and checked again)


def retry_schedule() -> list[float]:
    """SERVICETRAIL_WEBHOOK_RETRY_SECONDS (comma-separated seconds), else Standard Webhooks'."""
    text = os.environ.get("SERVICETRAIL_WEBHOOK_RETRY_SECONDS", "").strip()
    if not text:
        return list(STANDARD_SCHEDULE)
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"SERVICETRAIL_WEBHOOK_RETRY_SECONDS must be comma-separated seconds: {text!r}") from None
    if any(v < 0 or v != v or v == float("inf") for v in values):
        raise ValueError(f"SERVICETRAIL_WEBHOOK_RETRY_SECONDS must be seconds, 0 or more: {text!r}")
    return values


@dataclass
class Stats:
    delivered: int = 0
    failed: int = 0
    gone: int = 0
    given_up: int = 0
    matched_records: int = 0
    errors: Counter = field(default_factory=Counter)


class Deliverer:
    """One worker's loop: match, lease what is due, post it, record what came of it."""

    def __init__(self, engine: Engine, schedule: list[float] | None = None, concurrency: int = CONCURRENCY,
                 per_host: int = PER_HOST, timeout: float = TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.schedule = retry_schedule() if schedule is None else schedule
        self.concurrency = max(1, concurrency)
        self.per_host = max(1, per_host)
        self.timeout = timeout
        # a lease outlives any attempt: a row comes due again only if its worker died
        self.lease = timedelta(seconds=timeout * 2 + 5)
        self.stats = Stats()
        self._in_flight: Counter[tuple[str, int]] = Counter()
        self._host_of_watch: dict[int, tuple[str, int]] = {}
        self._outcomes: list[Outcome] = []
        self._resolved: dict[tuple[str, int], tuple[float, IPAddress]] = {}

    def _busy_watches(self) -> frozenset[int]:
        full = {host for host, n in self._in_flight.items() if n >= self.per_host}
        return frozenset(w for w, host in self._host_of_watch.items() if host in full)

    async def run(self, stop: asyncio.Event) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False,
                                     timeout=httpx.Timeout(self.timeout)) as client:
            tasks: set[asyncio.Task] = set()
            while not stop.is_set():
                worked = await self.step(client, tasks)
                if not worked:
                    try:
                        await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
                    except asyncio.TimeoutError:
                        pass
            if tasks:  # let what is in flight finish (each is bounded by the timeout)
                await asyncio.wait(tasks, timeout=self.timeout + 1)
            await asyncio.to_thread(self._record)

    async def step(self, client: httpx.AsyncClient, tasks: set[asyncio.Task]) -> bool:
        """One round; whether it found any work."""
        matched = await asyncio.to_thread(catch_up, self.engine, 20)
        self.stats.matched_records += matched
        await asyncio.to_thread(self._record)
        free = self.concurrency - len(tasks)
        due: list[Due] = []
        if free > 0:
            due = await asyncio.to_thread(self._lease, free)
        for delivery in due:
            task = asyncio.create_task(self._attempt(client, delivery))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if not due and tasks:
            await asyncio.wait(tasks, timeout=IDLE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            return True
        return bool(matched or due)

    def _lease(self, free: int) -> list[Due]:
        """Lease what is due, at most PER_HOST in flight to any one receiver."""
        taken: Counter[tuple[str, int]] = Counter()

        def accept(delivery: Due) -> bool:
            try:
                target = parse_url(delivery.url)
                host = (target.host, target.port)
            except UnsafeUrl:
                host = ("", 0)  # refused when attempted, and retried on the schedule
            self._host_of_watch[delivery.watch_id] = host
            if self._in_flight[host] + taken[host] >= self.per_host:
                return False
            taken[host] += 1
            return True

        with self.engine.begin() as conn:
            return lease_due(conn, datetime.now(UTC), free, self.lease, self._busy_watches(), accept)

    def _record(self) -> None:
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        with self.engine.begin() as conn:
            self.stats.given_up += record_outcomes(conn, outcomes, datetime.now(UTC), self.schedule)

    async def _address(self, target: Target) -> IPAddress:
        key = (target.host, target.port)
        cached = self._resolved.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        address = await asyncio.to_thread(resolve, target)
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[key] = (time.monotonic() + RESOLVE_SECONDS, address)
        return address

    async def _attempt(self, client: httpx.AsyncClient, delivery: Due) -> None:
        host = self._host_of_watch.get(delivery.watch_id, ("", 0))
        self._in_flight[host] += 1
        try:
            status, error = await asyncio.wait_for(self._post(client, delivery), self.timeout)
        except asyncio.TimeoutError:
            status, error = None, f"no answer in {self.timeout:g} s"
        finally:
            self._in_flight[host] -= 1
            if not self._in_flight[host]:
                del self._in_flight[host]
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif status == 410:
            outcome = "gone"
        else:
            outcome = "failed"
            error = error or f"answered {status}"
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if error:
            self.stats.errors[error[:60]] += 1
        self._outcomes.append(Outcome(delivery.watch_id, delivery.event_id, delivery.attempts, outcome, error))

    async def _post(self, client: httpx.AsyncClient, delivery: Due) -> tuple[int | None, str]:
        try:
            target = parse_url(delivery.url)
            address = await self._address(target)
        except UnsafeUrl as e:
            return None, f"refused: {e}"
        timestamp = int(time.time())
        body = orjson.dumps({"type": "record.matched", "timestamp": format_time(datetime.fromtimestamp(timestamp, UTC)),
                             "data": delivery.event})
        headers = signed_headers(delivery.secret, delivery.watch_id, delivery.event_id, timestamp, body)
        headers["host"] = target.host_header
        headers["user-agent"] = "servicetrail-webhooks/1"
        shown = f"[{address}]" if address.version == 6 else str(address)
        url = f"{target.scheme}://{shown}:{target.port}{target.target}"
        # the connection goes to the checked address; TLS still checks the certificate against the name
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            request = client.build_request("POST", url, content=body, headers=headers, extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                read = 0
                async for chunk in response.aiter_raw():  # the answer matters by its status; read a little
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
            return response.status_code, ""
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"[:200]


class BackgroundDeliverer:
    """The worker in a thread of its own (with its own event loop), for `servicetrail serve`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="servicetrail-deliver", daemon=True)
        self._ready = threading.Event()

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            self._loop.run_until_complete(Deliverer(self.engine).run(self._stop))
        except Exception:  # the server keeps serving; the outbox keeps the work for later
            log.exception("the webhook worker stopped")
        finally:
            self._loop.close()

    def start(self) -> BackgroundDeliverer:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self, seconds: float = 20) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(seconds)
