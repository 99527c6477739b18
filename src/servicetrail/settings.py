"""Every setting servicetrail takes from the environment, read and checked in one place.

Nothing else in the package reads `os.environ`. A value that does not parse is refused with
the variable's name, the value, and what it should be (the CLI turns that into exit 2). The
docs/operating.md's table of settings is `markdown_table()`, and a test keeps the two in step.

The settings are read once per process, on first use. The command line reads them afresh at
each invocation, so that it is the command's own environment that counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

PREFIX = "SERVICETRAIL_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


class SettingError(ValueError):
    """A variable of the environment holds a value servicetrail cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        super().__init__(f"{variable}={value!r} is not valid: {expected}")
        self.variable = variable
        self.value = value


# Upper bounds that no setting needs to pass, and past which a value failed only when used:
# a batch of 10^23 rows in `islice`, a statement limit past PostgreSQL's (2^31 ms), a retry
# wait past what a date can hold (audit, session 19)
MOST_WHOLE = 10**15  # a petabyte, for the settings in bytes
MOST_SECONDS = 2_000_000.0  # 23 days


def whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        stripped = text.strip()
        # the digits 0-9 only: int() also takes '1_000' and other scripts' digits
        if not (stripped.isascii() and stripped.isdigit()) or not (
            minimum <= int(stripped) <= MOST_WHOLE
        ):
            raise ValueError(f"expected a whole number of {minimum} or more, at most {MOST_WHOLE}")
        return int(stripped)

    return parse


def _seconds_value(text: str) -> float:
    """A number of seconds in ASCII (float() also reads other scripts' digits), or NaN."""
    try:
        return float(text) if text.strip().isascii() else math.nan
    except ValueError:
        return math.nan


def seconds(*, zero_allowed: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _seconds_value(text)
        if (
            not math.isfinite(value)
            or value < 0
            or (value == 0 and not zero_allowed)
            or value > MOST_SECONDS
        ):
            lowest = "0 or more" if zero_allowed else "more than 0"
            raise ValueError(f"expected a number of seconds, {lowest}, at most {MOST_SECONDS:.0f}")
        return value

    return parse


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip().lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text.strip().lower()

    return parse


def retry_waits(text: str) -> tuple[float, ...] | None:
    """Comma-separated seconds, each 0 or more; blank is the default (None), and a comma
    alone no retries. A comma may end the list; an empty value between two commas is refused
    (`5,,300` was taken as two retries: a value left out, or a wait too few)."""
    if not text.strip():
        return None
    parts = [part.strip() for part in text.split(",")]
    if parts[-1] == "":
        parts.pop()
    if "" in parts and parts != [""]:
        raise ValueError("expected comma-separated seconds, such as 5,300,1800 (a value is empty)")
    values = tuple(_seconds_value(part) for part in parts if part)
    if any(not math.isfinite(v) for v in values):
        raise ValueError("expected comma-separated seconds, such as 5,300,1800")
    if any(not 0 <= v <= MOST_SECONDS for v in values):
        raise ValueError(f"expected seconds, 0 or more, at most {MOST_SECONDS:.0f}")
    return values


def url(text: str) -> str:
    if "://" not in text:
        raise ValueError(
            "expected a database URL such as sqlite:///servicetrail.db or postgresql://user@host/db"
        )
    return text


def log_origin(text: str) -> str:
    """A signed note's key name: no spaces, no '+', not empty (C2SP signed-note); and each
    month's origin is it, a '/' and the month, so an empty part (`x/` gave `x//2026-06`;
    audit 46d) is refused rather than mended: checkpoints already signed name the origin."""
    value = text.strip()
    if not value or not value.isprintable() or any(c in value for c in " +"):
        raise ValueError("expected a name without spaces or '+', such as servicetrail/sat")
    if "" in value.split("/"):
        raise ValueError("expected a name without an empty part ('//', or '/' at an end)")
    return value


def setting(name: str, default: Any, parse: Callable[[str], Any], shown: str, what: str) -> Any:
    """A field of Settings: its variable (SERVICETRAIL_ + name), how its text is read, and the
    default and description that docs/operating.md's table shows."""
    return field(
        default=default,
        metadata={"variable": PREFIX + name, "parse": parse, "shown": shown, "what": what},
    )


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = setting(
        "DATABASE_URL",
        "sqlite:///servicetrail.db",
        url,
        "`sqlite:///servicetrail.db`",
        "the store (`--db URL` on any command takes precedence)",
    )
    statement_timeout: float = setting(
        "STATEMENT_TIMEOUT",
        10.0,
        seconds(zero_allowed=True),
        "10",
        'seconds a search may run before "narrow your search" (a report or a CLI listing: '
        "the export limit, below)",
    )
    export_timeout: float = setting(
        "EXPORT_TIMEOUT",
        3600.0,
        seconds(zero_allowed=True),
        "3600",
        "seconds a report or CLI listing may stream",
    )
    pool_size: int = setting(
        "POOL_SIZE", 10, whole(1), "10", "PostgreSQL connections per server process"
    )
    token_cache_seconds: float = setting(
        "TOKEN_CACHE_SECONDS",
        0.0,
        seconds(zero_allowed=True),
        "0",
        "how long a server process trusts a looked-up token (0: never, so a revocation, a "
        "disabled account or a change to a Party's User IDs holds at once; more saves a query "
        "per request, and such changes then take effect within that time)",
    )
    batch: int = setting("BATCH", 20_000, whole(1), "20000", "records per ingest transaction")
    registry_batch: int = setting(
        "REGISTRY_BATCH",
        20_000,
        whole(1),
        "20000",
        "registry rows per transaction of `load users|devices|responsibilities`",
    )
    batch_bytes: int = setting(
        "BATCH_BYTES",
        48 << 20,
        whole(1),
        "50331648 (48 MiB)",
        "payload bytes after which an ingest transaction commits early",
    )
    parse_workers: int | None = setting(
        "PARSE_WORKERS",
        None,
        whole(0),
        "1 (SAT), cores (DUIS)",
        "worker processes that parse and validate input (0: none)",
    )
    worker_min_bytes: int = setting(
        "WORKER_MIN_BYTES",
        1 << 20,
        whole(0),
        "1048576 (1 MiB)",
        "a smaller input file (bytes) is parsed in the loading process itself",
    )
    max_duis_bytes: int = setting(
        "MAX_DUIS_BYTES",
        16 << 20,
        whole(1),
        "16777216 (16 MiB)",
        "the largest DUIS document accepted, in bytes",
    )
    log_level: str = setting(
        "LOG_LEVEL",
        "warning",
        one_of(LOG_LEVELS),
        "warning",
        f"what `serve` logs: {', '.join(LOG_LEVELS)} (see [Security](security.md))",
    )
    max_header_bytes: int = setting(
        "MAX_HEADER_BYTES",
        16 * 1024,
        whole(1),
        "16384",
        "the largest request head (request line and headers) `serve` reads; past it, 431",
    )
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES",
        1 << 20,
        whole(1),
        "1048576 (1 MiB)",
        "the largest request body `serve` reads (a sign-in or a watch is a few hundred bytes); "
        "past it, 413 and the connection is closed",
    )
    max_client_connections: int = setting(
        "MAX_CLIENT_CONNECTIONS",
        256,
        whole(1),
        "256",
        "connections one client address (an IPv6 client's /64) may hold open to a `serve` "
        "process; past it, a new one is closed at once",
    )
    read_timeout: float = setting(
        "READ_TIMEOUT",
        20.0,
        seconds(zero_allowed=False),
        "20",
        "seconds `serve` waits for a request's head to arrive whole, and as long again for its "
        "whole body; past it, 408 and the connection is closed",
    )
    party_requests: int = setting(
        "PARTY_REQUESTS",
        6,
        whole(1),
        "6",
        "reads of the trail one Party may have in flight in a server process "
        "(see [Security](security.md))",
    )
    party_heavy: int = setting(
        "PARTY_HEAVY",
        1,
        whole(1),
        "1",
        "broad searches and reports one Party may have running in a server process",
    )
    party_downloads: int = setting(
        "PARTY_DOWNLOADS",
        2,
        whole(1),
        "2",
        "report downloads one Party may have open in a server process",
    )
    party_streams: int = setting(
        "PARTY_STREAMS",
        4,
        whole(1),
        "4",
        "watch event streams (SSE) one Party may have open in a server process",
    )
    stream_poll_seconds: float = setting(
        "STREAM_POLL_SECONDS",
        1.0,
        seconds(zero_allowed=False),
        "1",
        "how often an open event stream looks for new events",
    )
    match_batch: int = setting(
        "MATCH_BATCH", 5000, whole(1), "5000", "records matched against watches at a time"
    )
    match_gap_seconds: float = setting(
        "MATCH_GAP_SECONDS",
        60.0,
        seconds(zero_allowed=True),
        "60",
        "how long matching waits at a gap in record ids (a loader still writing)",
    )
    webhook_allow_loopback: str = setting(
        "WEBHOOK_ALLOW_LOOPBACK",
        "0",
        one_of(("0", "1")),
        "0",
        "1: webhooks may call http:// URLs on loopback addresses (local receivers, tests)",
    )
    webhook_timeout: float = setting(
        "WEBHOOK_TIMEOUT",
        15.0,
        seconds(zero_allowed=False),
        "15",
        "seconds one webhook attempt may take, connecting and the answer included (a receiver "
        "whose listen queue is full makes the worker wait to connect)",
    )
    webhook_concurrency: int = setting(
        "WEBHOOK_CONCURRENCY", 64, whole(1), "64", "webhook deliveries in flight per worker"
    )
    webhook_per_host: int = setting(
        "WEBHOOK_PER_HOST", 16, whole(1), "16", "webhook deliveries in flight to one receiver"
    )
    # None: Standard Webhooks' schedule (webhooks.deliver.STANDARD_SCHEDULE)
    webhook_retry_seconds: tuple[float, ...] | None = setting(
        "WEBHOOK_RETRY_SECONDS",
        None,
        retry_waits,
        "Standard Webhooks' schedule",
        "comma-separated seconds to wait before each retry of a webhook (a comma alone: none)",
    )
    send_timeout: float = setting(
        "SEND_TIMEOUT",
        60.0,
        seconds(zero_allowed=False),
        "60",
        "seconds a report download may leave a 64 KB piece untaken before it is cut off",
    )
    signing_key: str = setting(
        "SIGNING_KEY",
        "",
        str,
        "`servicetrail.key` beside the SQLite store (the working folder for PostgreSQL)",
        "the Ed25519 key file that signs the logs' checkpoints (PEM PKCS#8; created on first "
        "use, mode 0600; see [Verifying the trail](verifying.md))",
    )
    log_origin: str = setting(
        "LOG_ORIGIN",
        "servicetrail/sat",
        log_origin,
        "`servicetrail/sat`",
        "the logs' origin prefix and the signing key's name (SPEC section 7)",
    )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """The settings the environment gives; an empty variable counts as unset."""
        values: dict[str, Any] = {}
        for each in fields(cls):
            variable = each.metadata["variable"]
            text = environ.get(variable, "")
            if text == "":
                continue
            try:
                values[each.name] = each.metadata["parse"](text)
            except ValueError as e:
                raise SettingError(variable, text, str(e)) from None
        return cls(**values)


def markdown_table() -> str:
    """docs/operating.md's table of settings, one row a variable."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    rows += [
        f"| `{f.metadata['variable']}` | {f.metadata['shown']} | {f.metadata['what']} |"
        for f in fields(Settings)
    ]
    return "\n".join(rows)


_current: Settings | None = None


def current() -> Settings:
    """This process's settings, read from its environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_environment(os.environ)
    return _current


def reload() -> Settings:
    """Read the environment again (the CLI, at each invocation; tests, after changing it)."""
    global _current
    _current = None
    return current()


def malloc_arenas_unless_set(count: int) -> bool:
    """MALLOC_ARENA_MAX for the processes this one starts (glibc reads it as a process
    starts), unless the operator set it; whether it was set here. Not a SERVICETRAIL_ setting:
    the C library's own, which an operator may know and tune."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(count)
    return True
