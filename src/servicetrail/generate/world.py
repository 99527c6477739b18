"""The World (what to generate), the millisecond clock the generator keeps, and the weighted
picker that the registry and the traffic both draw with."""

from __future__ import annotations

from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

UTC = timezone.utc

#: The DCC's own ID: the target of non-device requests and the originator of DCC alerts.
DCC_ID = "90-B3-D5-1F-30-00-00-02"
#: A User Role code that does not exist yet (SPEC: accepted, and treated like OU).
FUTURE_ROLE = "XR"
#: The well-known Device whose trail demonstrates MP141 (present when `World.showcase`).
SHOWCASE_DEVICE_ID = "00-DB-12-00-00-00-01-41"

MIN_PARTIES = 9  # two dual-fuel suppliers, two of ED and GT, one each of OU, RSA and XR
MIN_DEVICES = 18  # one premises of every device type in SMETS1 and in SMETS2
MIN_SPAN = timedelta(days=7)
MAX_DEVICES_BY_DEFAULT = 20_000

_DAY = 86_400_000  # milliseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    """What to generate. Same World, same output, byte for byte."""

    n_records: int = 100_000
    n_devices: int | None = None  # default: n_records // 20, between MIN_DEVICES and 20,000
    n_parties: int = 130
    seed: int = 141
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    showcase: bool = True  # include SHOWCASE_DEVICE_ID and its scripted MP141 story

    def __post_init__(self) -> None:
        if self.n_records < 0:
            raise ValueError("n_records must be 0 or more")
        if self.n_parties < MIN_PARTIES:
            raise ValueError(
                f"n_parties must be at least {MIN_PARTIES} (every User Role, changes of supplier)"
            )
        if self.n_devices is not None and self.n_devices < MIN_DEVICES:
            raise ValueError(
                f"n_devices must be at least {MIN_DEVICES} (every device type in SMETS1 and 2)"
            )
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if self.end - self.start < MIN_SPAN:
            raise ValueError(f"end must be at least {MIN_SPAN.days} days after start")
        # the registry begins years before the traffic: year 1 ran out of dates (audit 23a)
        if not (EARLIEST <= self.start and self.end <= LATEST):
            raise ValueError(
                f"start and end must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
            )

    @property
    def devices(self) -> int:
        if self.n_devices is not None:
            return self.n_devices
        return max(MIN_DEVICES, min(MAX_DEVICES_BY_DEFAULT, self.n_records // 20))

    @property
    def start_ms(self) -> int:
        return _to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _to_ms(self.end)


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _to_ms(value: datetime) -> int:
    delta = value.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_datetime(t_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=t_ms)


_DAY_TEXT: dict[int, str] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _day_text(day: int) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    return text


_HOUR_MINUTE = [f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440)]
_SECOND_MILLI: list[str] = []  # "SS.mmmZ" for every millisecond of a minute, built on first use


def format_ms(t_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2025-03-01T06:43:49.844Z (table look-ups, no
    datetime)."""
    if not _SECOND_MILLI:
        _SECOND_MILLI.extend(f"{i // 1000:02d}.{i % 1000:03d}Z" for i in range(60_000))
    minute, rest = divmod(t_ms, 60_000)
    day, minute = divmod(minute, 1440)
    text = _DAY_TEXT.get(day) or _day_text(day)
    return text + _HOUR_MINUTE[minute] + _SECOND_MILLI[rest]


def _midnight(t_ms: int) -> int:
    return t_ms - t_ms % _DAY


class _Picker:
    """Weighted choice by bisection over cumulative weights: one random() and one bisect."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0

    def pick(self, rand: Callable[[], float]) -> Any:
        return self.items[min(bisect(self.cum, rand() * self.total), len(self.items) - 1)]

    def __bool__(self) -> bool:
        return bool(self.items)
