"""One webhook attempt's request (Standard Webhooks), as the delivery worker sends it: to the
checked address, signed, no redirect followed, the answer's body read a moment at most."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson

from ..store.outbox import Due
from ..domain.times import seconds_text
from .addresses import Addresses
from .outbound import UnsafeUrl, parse_url
from .signing import signed_headers

if TYPE_CHECKING:  # imported by the first attempt (`client_session`), not by a server's start
    import aiohttp

REFUSED = "refused: "  # servicetrail's own words on the URL, said to its Party as they are
MAX_RESPONSE_BYTES = 64 * 1024
BODY_SECONDS = 1.0  # how long an answer's body is read for, after its status


async def post(
    session: aiohttp.ClientSession,
    delivery: Due,
    addresses: Addresses,
    no_answer: str,
    answered: list[int],
) -> tuple[int | None, str]:
    """An attempt's status (None: none came) and error (`no_answer` when the client's time
    ran out); `answered` is given the status as soon as it comes, for the caller whose time
    runs out while the body is read."""
    import aiohttp  # imported already: the session is

    try:
        target = parse_url(delivery.url)
        address = await addresses.of(target, delivery.party_id)
    except UnsafeUrl as e:
        return None, f"{REFUSED}{e}"
    timestamp = int(time.time())  # the attempt's, signed in the headers
    body = orjson.dumps(
        {
            "type": "record.matched",
            # Standard Webhooks: when the event occurred, so every retry sends the same body
            "timestamp": delivery.event["matched_at"],
            "data": delivery.event,
        }
    )
    headers = signed_headers(delivery.secret, delivery.watch_id, delivery.event_id, timestamp, body)
    headers["host"] = target.host_header
    headers["user-agent"] = "servicetrail-webhooks/1"
    shown = f"[{address}]" if address.version == 6 else str(address)
    url = f"{target.scheme}://{shown}:{target.port}{target.target}"
    # the connection goes to the checked address; TLS still checks the certificate against the
    # name
    server_hostname = target.host if target.scheme == "https" else None
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            server_hostname=server_hostname,
        ) as response:
            # the answer is its status: a 2xx whose body never came was a failure, tried
            # again and given up (audit 26b). The body is read (so that the connection is
            # kept for the next) a moment at most, and the connection closed if it stalls.
            answered.append(response.status)
            try:
                async with asyncio.timeout(BODY_SECONDS):
                    await response.content.read(MAX_RESPONSE_BYTES)
            except (TimeoutError, aiohttp.ClientError, OSError):
                response.close()
            return response.status, ""
    except TimeoutError:  # the client's own limit, the attempt's: "TimeoutError: " said nothing
        return None, no_answer
    except (aiohttp.ClientError, ValueError, OSError) as e:
        return None, f"{type(e).__name__}: {e}"[:200]


def shown_error(status: int | None, error: str, timeout: float) -> str:
    """An attempt's error as its Party is shown it: an answer's status, or servicetrail's
    refusal of the URL, as they are; anything else, before an answer came, in one class. The
    HTTP client's words told a refused connection, a TLS failure and a timeout apart for any
    public host and port a logged-in User named, a port scanner (audit 56c); they stay in
    the operator's log (`Outcome.detail`)."""
    if status is not None:
        return error or f"answered {status}"
    if error.startswith(REFUSED):
        return error
    return f"no answer: the connection or TLS failed, or no answer came in {seconds_text(timeout)}"


def client_session(concurrency: int, timeout: float) -> aiohttp.ClientSession:
    """The outbound client: no proxies or netrc from the environment, no cookies kept, no
    redirects (per request), connections kept alive up to the worker's concurrency. aiohttp
    is imported here, by the first delivery due: at every server's start it was 0.2 s of CPU
    (it loads the system's CA certificates), for a server that may never send a webhook."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=concurrency, use_dns_cache=False, enable_cleanup_closed=True
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )
