"""Watches (SPEC section 6): a Party's standing filters over the records it may see.

Pure: the store decides which (record, Party) pairs are visible, through the rule; this
module reads a watch from outside, and decides which of a Party's watches a visible record
matches. Visibility itself is never decided here.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .catalogue import CATALOGUE, typed_srv
from .ids import (
    MOST_STACKED_MARKS,
    ZERO_WIDTH_JOINERS,
    InvalidValue,
    eui64,
    is_srv_form,
    hidden_characters,
    shown,
    stacked_marks,
)
from .model import KINDS
from .records import ITEM_FIELDS

MINE, ALL, CRITICAL, OTHERS = "mine", "all", "critical", "others"
DEFAULT_KINDS = ("request",)
MAX_NAME = 200
# A watch is a standing query paid for on every ingested record: its lists are bounded, and
# so is how many one Party keeps (SPEC's target is 100 a Party; twice that is allowed).
MAX_DEVICES = 1000
MAX_SRVS = 500
MAX_WATCHES_PER_PARTY = 200
MAX_URL = 2000
CRITICAL_SRVS = frozenset(srv for srv, row in CATALOGUE.items() if row.critical)


class InvalidWatch(InvalidValue):
    """A watch from outside that is not well formed; `field` names the part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Listed(frozenset[str]):
    """A set of a watch's values that remembers the order they were given in (a repeated one
    at its first place): matching asks the set, and the API shows the watch back as it was
    posted (SPEC section 6: it "answers 201 with the watch")."""

    __slots__ = ("order",)
    order: tuple[str, ...]

    def __new__(cls, values: Iterable[str] = ()) -> Listed:
        order = tuple(dict.fromkeys(values))
        listed = super().__new__(cls, order)
        listed.order = order
        return listed

    def __iter__(self) -> Iterator[str]:  # in the order given, wherever it is listed
        return iter(self.order)

    def __reduce__(self) -> tuple[Any, ...]:
        return Listed, (self.order,)


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What a Party asks to be told about. `devices`/`srvs` are a word or a set of values."""

    name: str
    devices: str | Listed = MINE
    srvs: str | Listed = ALL
    kinds: Listed = Listed(DEFAULT_KINDS)
    senders: str = OTHERS
    webhook_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The filters as the API shows them: each list in the order it was given."""
        return {
            "name": self.name,
            "devices": self.devices if isinstance(self.devices, str) else list(self.devices),
            "srvs": self.srvs if isinstance(self.srvs, str) else list(self.srvs),
            "kinds": list(self.kinds),
            "senders": self.senders,
        }


# Zero-width joiners (ids.ZERO_WIDTH_JOINERS) spell words and pictures: Persian and the
# Indic scripts write some words with a ZWNJ, and emoji such as a family or a flag are joined
# by ZWJs; the other format characters (direction overrides) stay refused (audit 46c:
# "پایش می‌شود" was a 422)
# a joiner between two visible characters, not at an end, beside a space or another joiner
_LOOSE_JOINER = re.compile(r"(?:^|[\s\u200c\u200d])[\u200c\u200d]|[\u200c\u200d](?=$|\s)")
# category Z but breaking a line as \n does (refused as a control character)
_LINE_BREAKS = re.compile(r"[\u2028\u2029]")


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidWatch("name", "must be a string")
    text = unicodedata.normalize("NFC", value.strip())
    if not 1 <= len(text) <= MAX_NAME:
        raise InvalidWatch("name", f"must be 1 to {MAX_NAME} characters")
    if (
        hidden_characters(text, allowed=ZERO_WIDTH_JOINERS)
        or _LOOSE_JOINER.search(text)
        or _LINE_BREAKS.search(text)
    ):
        raise InvalidWatch(
            "name",
            "must be printable text on one line, without control, direction or zero-width "
            f"characters (a joiner inside a word aside): {shown(value)}",
        )
    if stacked_marks(text):
        raise InvalidWatch(
            "name",
            f"must have at most {MOST_STACKED_MARKS} combining marks on a character: "
            f"{shown(value)}",
        )
    return text


def split_list(text: str) -> list[str]:
    """Device IDs or SRVs as a person types them, on the screen or the command line: split
    at commas, semicolons or white space (neither an EUI-64 nor an SRV holds one)."""
    return [part for part in re.split(r"[\s,;]+", text.strip()) if part]


def _string_list(field: str, value: Any, limit: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidWatch(field, "must be a non-empty list of strings")
    if len(value) > limit:
        raise InvalidWatch(field, f"at most {limit} entries")
    if not all(isinstance(v, str) for v in value):
        raise InvalidWatch(field, "must be a non-empty list of strings")
    return value


def _devices(value: Any) -> str | Listed:
    if value is None or value == MINE:
        return MINE
    if isinstance(value, str):
        raise InvalidWatch("devices", f"must be \"mine\" or a list of Device IDs: {shown(value)}")
    try:
        return Listed(eui64(v) for v in _string_list("devices", value, MAX_DEVICES))
    except InvalidWatch:
        raise
    except InvalidValue as e:
        raise InvalidWatch("devices", str(e)) from None


def _srv(value: str) -> str:
    """An SRV, or a family of them (`4.1`, or `4` as the search's `srv=4` takes it: a watch
    refused the family the search box had just found records by; audit 30c), read as the
    search reads one."""
    text = typed_srv(value)
    if not (is_srv_form(text) or _TOP_FAMILY.fullmatch(text)):
        raise InvalidWatch(
            "srvs", f"not a Service Reference Variant such as 4.1.1, or a family: {shown(value)}"
        )
    return text


_TOP_FAMILY = re.compile(r"[1-9][0-9]{0,2}", re.ASCII)


def _srvs(value: Any) -> str | Listed:
    if value is None or value == ALL:
        return ALL
    if value == CRITICAL:
        return CRITICAL
    if isinstance(value, str):
        raise InvalidWatch(
            "srvs", f"must be \"all\", \"critical\" or a list of SRVs: {shown(value)}"
        )
    return Listed(_srv(v) for v in _string_list("srvs", value, MAX_SRVS))


def _kinds(value: Any) -> Listed:
    if value is None:
        return Listed(DEFAULT_KINDS)
    kinds = _string_list("kinds", value, len(KINDS) * 4)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InvalidWatch("kinds", f"each must be one of {', '.join(KINDS)}: {shown(unknown[0])}")
    return Listed(kinds)


def _senders(value: Any) -> str:
    if value is None:
        return OTHERS
    if value not in (OTHERS, ALL):
        raise InvalidWatch("senders", f"must be \"others\" or \"all\": {shown(value)}")
    return value


def _webhook(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"url"} or not isinstance(value["url"], str):
        raise InvalidWatch("webhook", "must be null or {\"url\": \"https://...\"}")
    url = value["url"].strip()
    if not url or len(url) > MAX_URL:
        raise InvalidWatch("webhook.url", f"must be 1 to {MAX_URL} characters")
    return url


FIELDS = ("name", "devices", "srvs", "kinds", "senders", "webhook")


NOT_NULL = "must not be null (leave it out for its default)"


def _nulls(raw: Mapping[str, Any]) -> list[str]:
    """The fields given as null that have a default instead (all but the name and webhook)."""
    return [field for field in FIELDS[1:-1] if field in raw and raw[field] is None]


def watch_spec(raw: Any) -> WatchSpec:
    """A watch from the API's JSON (or the CLI's options made into it); InvalidWatch names
    the field. The webhook URL is checked for form only here: its safety is outbound's."""
    if not isinstance(raw, Mapping):
        raise InvalidWatch("body", "must be a JSON object")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InvalidWatch(unknown[0][:40], f"unknown field; the fields are {', '.join(FIELDS)}")
    if "name" not in raw:
        raise InvalidWatch("name", "is required")
    # SPEC 6 allows null for `webhook` alone; the others have defaults when left out, and a
    # null was taken for one where the letter makes it a bad parameter (audit 42a)
    null = next(iter(_nulls(raw)), None)
    if null is not None:
        raise InvalidWatch(null, NOT_NULL)
    return WatchSpec(
        _name(raw["name"]),
        _devices(raw.get("devices")),
        _srvs(raw.get("srvs")),
        _kinds(raw.get("kinds")),
        _senders(raw.get("senders")),
        _webhook(raw.get("webhook")),
    )


def watch_problems(raw: Mapping[str, Any]) -> dict[str, str]:
    """Every field's problem at once, by field ({} if none): the screen's form says them
    together, where the API's first refusal named one and the next try the next (audit 43c).
    The same checks as watch_spec, field by field."""
    checks = (  # each raises InvalidWatch naming its field
        lambda: _name(raw["name"]) if "name" in raw else None,
        lambda: _devices(raw.get("devices")),
        lambda: _srvs(raw.get("srvs")),
        lambda: _kinds(raw.get("kinds")),
        lambda: _senders(raw.get("senders")),
        lambda: _webhook(raw.get("webhook")),
    )
    problems = {}
    for check in checks:
        try:
            check()
        except InvalidWatch as e:
            problems[e.field] = e.message
    if "name" not in raw:
        problems["name"] = "is required"
    problems.update({field: NOT_NULL for field in _nulls(raw)})
    return problems


def never_matches(spec: WatchSpec) -> bool:
    """Alerts alone, from other Users: an alert a Party may see is addressed to it (rule 2),
    so such a watch never fires (SPEC section 6 says so; the API still takes it)."""
    return spec.senders == OTHERS and not spec.kinds - {"device_alert", "dcc_alert"}


@dataclass(frozen=True, slots=True)
class Watch:
    """A stored watch: its id, its Party and its filters."""

    watch_id: int
    party_id: str
    spec: WatchSpec


@dataclass(frozen=True, slots=True)
class Candidate:
    """A record the store found visible to a Party, with what the filters need: `own` (rule
    1 holds: the Party's User sent it or was sent it) and `held` (the Party was supplier or
    network operator of its Device at its time, what devices "mine" means)."""

    record_id: int
    kind: str
    srv: str
    device_id: str
    own: bool
    held: bool


def matches(spec: WatchSpec, record: Candidate) -> bool:
    """Whether a visible record is one the watch asks for (SPEC section 6's filters)."""
    if record.kind not in spec.kinds:
        return False
    if spec.senders == OTHERS and record.own:
        return False
    if spec.srvs == CRITICAL:
        if record.srv not in CRITICAL_SRVS:
            return False
    elif (
        spec.srvs != ALL
        and record.srv not in spec.srvs
        and not any(family in spec.srvs for family in _srv_and_families(record.srv)[1:])
    ):
        return False
    if spec.devices == MINE:
        return record.held
    return record.device_id in spec.devices


def _srv_and_families(srv: str | None) -> list[str]:
    """An SRV and the families it is of, as a watch may list them: `4.8.1`, `4.8`, `4`. A family
    matches its variants, as the search's `srv=4.8` does: a watch on `4.8` was taken and
    never matched a 4.8.1 request (audit 29e)."""
    if not srv:
        return []
    found = [srv]
    while "." in found[-1]:
        found.append(found[-1].rpartition(".")[0])
    return found


_ANY_SRV = object()


class PartyWatches:
    """A Party's watches indexed by kind and SRV, so that a record is tested against the few
    watches that can match it rather than all of a Party's hundred. Watches with the same
    filters (their names or webhooks aside) are tested once for all of them: SPEC section 6
    lets a Party repeat a watch, and 199 copies of one catch-all watch had every record
    tested 199 times (20,000 of the Party's own records: 0.86 s more of the matcher's time
    for no event; audit 56c)."""

    def __init__(self, watches: Iterable[Watch]) -> None:
        alike: dict[tuple[object, ...], list[Watch]] = defaultdict(list)
        for watch in watches:
            alike[_filters(watch.spec)].append(watch)
        self._by: dict[tuple[str, object], list[list[Watch]]] = defaultdict(list)
        for same in alike.values():
            spec = same[0].spec
            srvs = (
                (_ANY_SRV,)
                if spec.srvs == ALL
                else CRITICAL_SRVS
                if spec.srvs == CRITICAL
                else spec.srvs
            )
            for kind in spec.kinds:
                for srv in srvs:
                    self._by[kind, srv].append(same)

    def matching(self, record: Candidate) -> list[Watch]:
        found: list[Watch] = []
        seen: set[int] = set()  # one watch listing both an SRV and its family is found once
        for srv in (*_srv_and_families(record.srv), _ANY_SRV):
            for same in self._by.get((record.kind, srv), ()):
                first = same[0]
                if first.watch_id not in seen and matches(first.spec, record):
                    seen.add(first.watch_id)
                    found += same
        return found


def _filters(spec: WatchSpec) -> tuple[object, ...]:
    """What decides which records a watch matches: equal for two watches that match the same
    (its lists as sets, in whatever order they were given)."""
    return (spec.devices, spec.srvs, spec.kinds, spec.senders)


def titles_only(record_item: dict[str, Any]) -> dict[str, Any]:
    """An event carries titles: none of the fields read from the body, even for the Party's
    own records (the payload stays behind the record's URL). Named by what it keeps, so that
    a field added to records later stays out of events until it is chosen."""
    return {k: record_item[k] for k in ITEM_FIELDS if k in record_item}
