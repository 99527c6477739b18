"""The "Who looked" page of the web screen (SPEC section 8): the access log's entries, newest
first, between two times, a page at a time; a Party's account reads its own Party's, an
auditor's every Party's (one Party's if it asks). The same store call as `GET
/api/v1/access-log`; reading the access log reads no SAT record, so it adds no entry of its
own."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from ..domain.access_log import INTERFACES, AccessEntry, entry_time
from ..domain.ids import InvalidValue, hidden_characters, party_id
from ..domain.search import Cursor
from ..domain.times import format_time
from ..store.access_log import EntryFilter, NoSuchParty, readable_page
from ..store.accounts import AccountError, account_name
from ..store.parties import party_names
from ..store.watches import list_watches
from ..store.limits import SearchTooBroad
from .errors import ParameterError
from .query_guard import nul_in, shows_nul_beside
from .fairness import Busy, limits_of, share_of
from .params import REPEATED, build_search, cursor_of, repeated_parameter
from .presenters import (
    narrower,
    page_link,
    page_number,
    said_on_screen,
    show_clock_time,
    show_time,
    stopped,
    utc_field,
)
from .rendering import render
from .search_back import search_href
from .signin import SignedIn, SignedInAuditor, WhoOrAuditor
from .state import reader_of

PAGE = "/access-log"
ENTRIES_SHOWN = 50
DEVICES_SHOWN = 3  # the rest of an entry's Devices fold away under "N more"
# `party`: an auditor's; a Party's account reads its own
FIELDS = ("party", "actor", "action", "reads", "from", "to")
FIELD_LABELS = {
    "party": "Party",
    "actor": "Who",
    "action": "What",
    "reads": "Reads",
    "from": "From (UTC)",
    "to": "To (UTC)",
}
LONGEST = {"actor": 64}  # an actor is stored to 64 characters; the rest, 40 at most
ONLY_MP141 = "mp141"
STALE_PAGE_LINK = "That page link is no longer valid. Start again from the newest entries."

ACTION_LABELS = {
    "search": "Search",
    "record": "Record",
    "why": "Why visible",
    "triggers": "Possible triggers",
    "proof": "Proof",
    "report": "Own-traffic report",
    "watch_events": "Watch events",
    "stream": "Event stream",
    "deliver": "Webhook delivery",
}
INTERFACE_LABELS = {"api": "API", "web": "Screen", "cli": "Command line", "webhook": "Webhook"}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Shown:
    """One entry as the page lays it out."""

    id: int
    party_id: str | None
    at: str  # ISO-8601, or the stored text of a time that is not one
    when: str  # as the screen shows times
    actor: str
    interface: str
    action: str
    filters: list[tuple[str, str]]  # as asked, but for `record_id` when it is the link below
    record_id: int | None  # the record a record page, why, triggers or proof was of
    device_page: str  # the Device whose page this read was ("": another read)
    # the search a record page was opened from (its `back`: the screen's own way back, which
    # read like a filter the Party asked for; review of the screen, 54d), as an address
    from_search: str
    records_returned: int
    mp141_records_returned: int
    device_ids: list[str]


WATCH_ACTIONS = ("watch_events", "stream", "deliver")
WATCH_KEYS = ("watch", "watch_id")  # the screen's parameter, the API's path


def _watch_of(entry: AccessEntry) -> tuple[str, int] | None:
    """The watch a read of watch events was of: the filter that names it, and its id."""
    if entry.action not in WATCH_ACTIONS or not isinstance(entry.filters, dict):
        return None
    key = next((k for k in WATCH_KEYS if k in entry.filters), "")
    found = entry.filters.get(key)
    return (key, found) if isinstance(found, int) and not isinstance(found, bool) else None


def shown(entry: AccessEntry, watch_names: dict[int, str] | None = None) -> Shown:
    """`watch_names`: the Party's watches by id, for the reads of their events: "watch 3"
    named nothing the screen ever shows (review of the screen, 55e)."""
    at = entry_time(entry.at)
    filters = entry.filters if isinstance(entry.filters, dict) else {"": str(entry.filters)}
    record_id = filters.get("record_id")
    if not isinstance(record_id, int) or isinstance(record_id, bool) or record_id < 1:
        record_id = None  # a search's parameter of that name (kept as asked), or no id at all
    back = filters.get("back") if record_id is not None and entry.interface == "web" else None
    if not isinstance(back, str):
        back = None
    device_page = _device_page_of(entry, filters)
    watch = _watch_of(entry) if watch_names is not None else None
    if watch is not None:
        key, watch_id = watch
        name = (watch_names or {}).get(watch_id)
        named = f"“{name}”" if name is not None else f"{watch_id} (deleted)"
        filters = {**filters, key: named}  # in its place, under the name it was asked by
    devices = entry.device_ids
    return Shown(
        id=entry.id,
        party_id=entry.party_id,
        at=at,
        when=show_clock_time(at) if not isinstance(entry.at, str) else at,
        actor=entry.actor,
        interface=INTERFACE_LABELS.get(entry.interface, entry.interface),
        action=DEVICE_PAGE if device_page else ACTION_LABELS.get(entry.action, entry.action),
        filters=[
            (str(name), _cursor_text(value) if name == "cursor" else _text(value))
            for name, value in filters.items()
            if not (name == "record_id" and record_id is not None)
            and not (name == "back" and back is not None)
            and not (device_page and name in DEVICE_PAGE_KEYS)
        ],
        record_id=record_id,
        device_page=device_page,
        from_search="" if back is None else search_href(back),
        records_returned=entry.records_returned,
        mp141_records_returned=entry.mp141_records_returned,
        # a str: stored text that is not a list (store.access_log._entry), shown as stored
        device_ids=[devices] if isinstance(devices, str) else list(devices),
    )


DEVICE_PAGE = "Device page"
DEVICE_PAGE_KEYS = ("device_id", "device_page")


def _device_page_of(entry: AccessEntry, filters: dict[Any, Any]) -> str:
    """The Device whose page the screen read ("" for any other read): stored as a search by
    that Device (SPEC 8 has no other name for it) and marked `device_page` true, a value no
    query parameter can give (web.pages.device)."""
    device = filters.get("device_id")
    if not isinstance(device, str) or filters.get("device_page") is not True:
        return ""
    return device if entry.interface == "web" and entry.action == "search" else ""


def _cursor_text(value: Any) -> str:
    """A page's cursor as where that page began: its opaque token said nothing to whoever
    reads the log (review of the screen, 56). One this server did not issue, as stored."""
    try:
        after = Cursor.decode(value) if isinstance(value, str) else None
    except InvalidValue:
        after = None
    if after is None:
        return _text(value)
    return f"older than {show_time(format_time(after.logged_at))} UTC"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


@dataclass
class Found:
    entries: list[Shown]
    more: Cursor | None = None
    problem: str = ""
    busy: Busy | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # an auditor's: the registered name of each Party listed, by its code, which alone told
    # someone of no Party little (review of the screen, 56)
    party_names: dict[str, str] = field(default_factory=dict)


def _entries(
    request: Request, who: SignedIn | SignedInAuditor, asked: EntryFilter, after: Cursor | None
) -> Found:
    """The page's entries, as the store gives them to this account (store.access_log)."""
    own_party = None if isinstance(who, SignedInAuditor) else who.viewer.party_id
    try:
        # a read slot, as every read takes (web.fairness), and the store's time limit. The
        # narrower filters walk all of the Party's entries in the period that fail them: a
        # heavy slot too, as a broad search takes (audit 49d: 2M entries of a Party's cheap
        # reads, a day's at 700 a second, and a page that matched none took 1.7 s)
        narrowed = asked.only_mp141 or asked.action is not None or asked.actor is not None
        with (
            limits_of(request).search(share_of(own_party, who.session.username), broad=narrowed),
            reader_of(request) as conn,
        ):
            if asked.actor is not None:
                asked = replace(asked, actor=_as_logged(conn, asked.actor))
            entries, more = readable_page(conn, own_party, asked, ENTRIES_SHOWN, after)
            names = None
            if own_party is not None and any(_watch_of(e) is not None for e in entries):
                names = {w["id"]: w["name"] for w in list_watches(conn, own_party)}
            parties = party_names(conn, (e.party_id for e in entries)) if own_party is None else {}
    except NoSuchParty as e:
        return Found([], errors={"party": e.words()})
    except SearchTooBroad as e:
        narrow = narrower(
            ("a shorter period", False),
            ("one person (Who)", asked.actor is not None),
            ("one kind of read (What)", asked.action is not None),
        )
        return Found([], problem=stopped(e.seconds, "The search", narrow))
    except Busy as e:
        return Found([], problem=e.sentence(), busy=e)
    return Found([shown(e, names) for e in entries], more, party_names=parties)


def _as_logged(conn: Connection, typed: str) -> str:
    """Who, as the log names them: an account's name as stored, for a name typed in any case,
    as sign-in takes it (`Supplier` signed in as `supplier`, and found none of its reads;
    review of the screen, 55e); `cli` and `webhook` in lower case; anything else as typed."""
    if typed.lower() in INTERFACES:
        return typed.lower()
    try:
        return account_name(conn, typed)
    except AccountError:
        return typed


def _narrower(values: dict[str, str]) -> dict[str, Any]:
    """Who made the reads, what kind, and whether they returned MP141 titles: the questions
    an analyst asks of the log (audit 43c), beyond SPEC's times and Party."""
    actor, action, reads = values["actor"], values["action"], values["reads"]
    if hidden_characters(actor):  # (no stored actor has one: usernames are ASCII)
        raise ParameterError(
            "actor", "a login, a token’s account, cli or webhook; no controls or invisible marks"
        )
    if action and action not in ACTION_LABELS:
        raise ParameterError("action", "not a kind of read: choose one from the list")
    if reads not in ("", ONLY_MP141):
        raise ParameterError("reads", "choose one from the list")
    return {"actor": actor or None, "action": action or None, "only_mp141": bool(reads)}


def _asked(
    query: Any, auditor: bool
) -> tuple[dict[str, str], EntryFilter | None, Cursor | None, dict[str, str]]:
    """The Party (an auditor's choice; a Party's account reads its own Party's, whatever it
    asks), times and narrower filters the form asks for, as typed and as read (None: not
    valid), the page it is on, and the errors by field."""
    fields = FIELDS if auditor else FIELDS[1:]
    values = {name: query.get(name, "").strip()[: LONGEST.get(name, 40)] for name in fields}
    # the API's name for it too: `?party_id=X` pasted from an API call listed every Party's
    # entries (audit 38d)
    party = (values.get("party") or query.get("party_id", "").strip()[:40]) if auditor else ""
    # upper case for ASCII alone: "ſ" (U+017F) became an "S" that the API would refuse
    values["party"] = party.upper() if party.isascii() else party
    repeated = repeated_parameter(query, (*fields, *(("party_id",) if auditor else ()), "cursor"))
    if repeated is not None:
        return values, None, None, {repeated: REPEATED}
    if auditor and query.get("party") and query.get("party_id"):
        return values, None, None, {"party": "give party or party_id, not both"}
    try:
        if values["party"]:
            party_id(values["party"])
        period = build_search(
            time_from=utc_field(values["from"]) or None, time_to=utc_field(values["to"]) or None
        )
        narrower = _narrower(values)
        after = cursor_of(query.get("cursor") or None)
    except InvalidValue as e:
        return values, None, None, {"party": str(e)}
    except ParameterError as e:
        return values, None, None, e.every
    asked = EntryFilter(values["party"] or None, period.time_from, period.time_to, **narrower)
    return values, asked, after, {}


def _problem_title(found: Found) -> str:
    if found.busy:
        return "Too much at once"
    return "Page link expired" if found.problem == STALE_PAGE_LINK else "Narrow the search"


def _title(found: Found, errors: dict[str, str], values: dict[str, str], first: int) -> str:
    """The title a browser's tabs and history and a screen reader give the page: what it
    lists, and for what, as the search's does (web.pages); every page of entries was "Who
    looked" whatever its filters (review of the screen, 54d)."""
    if errors or found.problem:
        return "Who looked"
    count = len(found.entries)
    if count and first > 1:
        said = f"entries {first}–{first + count - 1}"
    elif found.more is not None:
        said = f"first {count} entries"
    else:
        said = f"{count or 'no'} entr{'ies' if count != 1 else 'y'}"
    named = {**values, "action": ACTION_LABELS.get(values["action"], values["action"])}
    named["reads"] = "Other Users’ titles (MP141)" if values["reads"] else ""
    asked_for = [
        f"{FIELD_LABELS[name].removesuffix(' (UTC)')} {named[name]}"
        for name in FIELDS
        if named.get(name)
    ]
    return f"Who looked: {said}" + (f" for {', '.join(asked_for)}" if asked_for else "")


@router.get("/access-log")
@shows_nul_beside(*FIELDS[1:])  # every account's fields; an auditor's Party: a page of its own
def access_log_page(request: Request, who: WhoOrAuditor) -> Response:
    values, asked, after, errors = _asked(request.query_params, who.auditor)
    if refused := nul_in(request, FIELDS[1:]):
        asked, errors = None, refused
    page = page_number(request.query_params.get("page"))
    found = Found([])
    if asked is not None:
        found = _entries(request, who, asked, after)
        errors = found.errors
    elif "cursor" in errors:
        found.problem, errors = STALE_PAGE_LINK, {}
    status = 429 if found.busy else 422 if errors or found.problem else 200
    first = (page - 1) * ENTRIES_SHOWN + 1 if after is not None else 1
    return render(
        request,
        "access_log.html",
        who,
        status=status,
        title=_title(found, errors, values, first),
        headers={"Retry-After": str(found.busy.retry_after)} if found.busy else None,
        values=values,
        errors=said_on_screen(errors, values),
        field_labels=FIELD_LABELS,
        actions=ACTION_LABELS,
        only_mp141=ONLY_MP141,
        narrowed=any(values.get(name) for name in ("actor", "action", "reads")),
        problem=found.problem,
        problem_title=_problem_title(found),
        entries=found.entries,
        party_names=found.party_names,
        devices_shown=DEVICES_SHOWN,
        auditor=who.auditor,
        next_link=(
            page_link(values, at=PAGE, cursor=found.more.encode(), page=str(page + 1))
            if found.more
            else ""
        ),
        first_link=page_link(values, at=PAGE) if after is not None else "",
        first=first,
        page=page if after is not None else 1,
    )
