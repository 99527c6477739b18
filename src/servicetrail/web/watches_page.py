"""The Watches page of the web screen (SPEC section 6): the Party's watches, the newest events
of one of them (unread ones marked), a form to add a watch, and deleting one once asked."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..domain.model import KINDS
from ..domain.watches import (
    Listed,
    WatchSpec,
    never_matches,
    split_list,
    watch_problems,
    watch_spec,
)
from ..store.parties import party_names
from ..store.watch_events import NO_EVENT_YET, UNREAD_CAP, mark_read, read_position, unread_in_watch
from ..store.watches import (
    WatchLimit,
    create_watch,
    get_watch,
    list_watches,
    delete_watch_at_once,
)
from ..store.limits import SearchTooBroad
from ..store.logged_reads import logged_read
from ..webhooks.outbound import UnsafeUrl, check_url
from ..webhooks.signing import new_secret
from .fairness import limits_of
from .head_requests import asked_head
from .presenters import DEVICE_ID_EXAMPLE, TRY_AGAIN, pasted_device_ids, readable, stopped
from .rendering import error_page, not_found, render
from .signin import (
    SignedIn,
    Who,
    checked_form,
    count_or_none,
    unread_now,
    web_reader,
    with_unread,
)
from .state import engine_of, reader_of

EVENTS_SHOWN = 50
BAD_PAGE_LINK = (
    "That page link is not valid. Open the watch from the list to see its newest events."
)


def describe(watch: dict[str, Any]) -> str:
    """A watch's filters in words, for its row in the list."""
    devices = (
        "my Devices"
        if watch["devices"] == "mine"
        else f"{len(watch['devices'])} listed Device" + ("s" if len(watch["devices"]) != 1 else "")
    )
    srvs = (
        {"all": "any SRV", "critical": "critical SRVs"}.get(watch["srvs"])
        if isinstance(watch["srvs"], str)
        else "SRV " + ", ".join(watch["srvs"][:6]) + (" …" if len(watch["srvs"]) > 6 else "")
    )
    kinds = ", ".join(k.replace("_", " ") + "s" for k in watch["kinds"])
    senders = "from other Users" if watch["senders"] == "others" else "from anyone, me included"
    return f"{kinds} on {devices}, {srvs}, {senders}"


@dataclass(frozen=True)
class EventsShown:
    """The events on the page, newest first, and where its links to more of them lead."""

    events: list[dict[str, Any]]
    read_up_to: int  # the newest event read before this page
    oldest_unread_first: bool = False  # more unread than a page: the oldest of them are shown
    older: int | None = None  # `before=` of the page of older events, if there are any
    newer: int | None = None  # `after=` of the page of newer events, if there are any
    marks_read: bool = False  # the page shows every unread event up to its newest


def _events_shown(
    read: Any, conn: Any, who: SignedIn, watch_id: int, at: Position, unread: int | None
) -> EventsShown:
    """Which events the page shows: the newest; or, with more unread than a page, the oldest
    unread ones (the newest page was marked read whole, its older unread never shown); or
    the page the links asked for. Only a page showing every unread event up to its newest
    marks them read (audit 25c)."""
    read_up_to = read_position(conn, who.viewer.party_id, watch_id)
    after = at.after
    if at.before is None and after is None:
        if unread is None:  # not counted in time: the newest events, marking none read
            return replace(_older_page(read, watch_id, read_up_to, None), marks_read=False)
        if unread > EVENTS_SHOWN:
            after = read_up_to
    if after is not None:
        found = read.newer_events(watch_id, after, EVENTS_SHOWN)
        events, more = (list(reversed(found[0])), found[1]) if found else ([], False)
        return EventsShown(
            events,
            read_up_to,
            oldest_unread_first=at.after is None,
            older=events[-1]["event_id"] if events and after > 0 else None,
            newer=events[0]["event_id"] if more else None,
            marks_read=after <= read_up_to,
        )
    return _older_page(read, watch_id, read_up_to, at.before)


def _older_page(read: Any, watch_id: int, read_up_to: int, before: int | None) -> EventsShown:
    """The newest page of events before `before` (None: the newest of all)."""
    found = read.recent_events(watch_id, EVENTS_SHOWN, before or NO_EVENT_YET)
    events, beyond = found if found else ([], None)
    return EventsShown(
        events,
        read_up_to,
        older=events[-1]["event_id"] if beyond is not None else None,
        newer=events[0]["event_id"] if before is not None and events else None,
        marks_read=beyond is None or beyond <= read_up_to,
    )


def events_count(shown: EventsShown) -> str:
    """The events heading's count: "newest 3" said of a watch's only three events read as if
    there were more, and a page of older ones had a bare number (review of the screen, 54d)."""
    count = len(shown.events)
    if shown.oldest_unread_first:
        return f"the oldest {count} unread"
    if shown.older is not None and shown.newer is None:
        return f"the newest {count}"
    return f"{count} event{'s' if count != 1 else ''}"


@dataclass(frozen=True)
class Position:
    """Which events of the watch were asked for: `before` or `after` an event id, or (both
    None) the page the Watches link opens."""

    before: int | None = None
    after: int | None = None


def _page(
    request: Request,
    who: SignedIn,
    selected: int | None = None,
    status: int = 200,
    values: dict[str, Any] | None = None,
    errors: dict[str, Any] | None = None,
    created: dict[str, Any] | None = None,
    at: Position = Position(),
    asked_for: bool = False,
    done: str = "",
) -> Response:
    """`asked_for`: `selected` is the watch the address names, a 404 if it is not the Party's
    (another Party's, and one that never was, showed the Party's first; audit 26b)."""
    with reader_of(request) as conn:
        watches = list_watches(conn, who.viewer.party_id, with_state=True)
    chosen = next((w for w in watches if w["id"] == selected), None)
    if chosen is None and asked_for:
        return not_found(request, who)
    # the Watches link opens the first watch with unread events (the navigation's count, by
    # watch): it said 9 while the first watch, opened, had none (audits 42f, 43c)
    new_events = dict(who.unread_by_watch)
    chosen = chosen or next((w for w in watches if new_events.get(w["id"])), None)
    chosen = chosen or (watches[0] if watches else None)
    shown = EventsShown([], 0)
    names: dict[str, str] = {}
    problem = ""
    if chosen is not None:
        filters = {"watch": chosen["id"], **{k: v for k, v in vars(at).items() if v is not None}}
        unread = count_or_none(
            request, lambda conn: unread_in_watch(conn, who.viewer, chosen["id"], EVENTS_SHOWN + 1)
        )
        try:
            with (
                limits_of(request).search(who.viewer.party_id),
                reader_of(request) as conn,
                logged_read(conn, who.viewer, web_reader(who), "watch_events", filters) as read,
            ):
                shown = _events_shown(read, conn, who, chosen["id"], at, unread)
        except SearchTooBroad as e:
            # said in the events' panel, the watches and the form still there: the generic
            # page told the analyst to name a Device ID or a Request ID (audit 53e)
            problem = stopped(e.seconds, "Reading this watch’s events", TRY_AGAIN)
            status = 422 if status == 200 else status
        with engine_of(request).begin() as conn:
            names = party_names(conn, [e["record"]["party_id"] for e in shown.events])
            newest = shown.events[0]["event_id"] if shown.events else 0
            # a HEAD is no look at the page (it marked events read)
            marking = shown.marks_read and newest > shown.read_up_to and not asked_head(request)
            if marking:
                mark_read(conn, who.viewer.party_id, chosen["id"], newest)
        if marking:  # the counts as they are now, not as they were before this page marked
            who = with_unread(who, unread_now(request, who.viewer))
    return render(
        request,
        "watches.html",
        who,
        status=status,
        title=_title(chosen, errors),
        watches=watches,
        new_events=dict(who.unread_by_watch),
        # past the cap, the count stopped part way, in no set order: which watches have
        # unread events is known only of those it walked, and how many of none (review 43d)
        new_at_least=who.unread >= UNREAD_CAP,
        chosen=chosen,
        shown=shown,
        paged=at != Position(),
        events=shown.events,
        read_up_to=shown.read_up_to,
        names=names,
        describe=describe,
        events_count=events_count,
        values=values or {"devices": "mine", "srvs": "all", "senders": "others"},
        chosen_kinds=(values or {}).get("kinds", ["request"]),
        all_kinds=KINDS,
        errors=_in_form_order(errors or {}),
        watch_field_labels=WATCH_FIELD_LABELS,
        created=created,
        problem=problem,
        done=_done(done, chosen if chosen is not None and chosen["id"] == selected else None),
    )


def _done(done: str, chosen: dict[str, Any] | None) -> str:
    """What the page says of the add or delete that led to it (`done`, the address's word):
    the form's redirect said nothing, and an analyst, a screen reader's above all, was left to
    work out from the list whether it had worked (review of the screen, 55e)."""
    if done == "created" and chosen is not None:
        return (
            f"Watch “{readable(chosen['name'])}” created: its events are listed below as "
            "matching records arrive."
        )
    if done == "deleted":
        return "Watch deleted, with its events. The records themselves stay in the trail."
    return ""


def _title(chosen: dict[str, Any] | None, errors: dict[str, Any] | None) -> str:
    """The page's title as what the analyst is at: the form that went wrong ("Error: Watches:
    events of ..." named the events the list shows beside it), or one watch's events (every
    watch's page was "Watches" in a browser's tabs and history; review of the screen, 54d)."""
    if errors:
        return "Watches: add a watch"
    return f"Watches: events of “{readable(chosen['name'])}”" if chosen else "Watches"


def _watch_body(values: dict[str, Any]) -> dict[str, Any]:
    """The API's JSON body from the form's fields (the same validation then reads it)."""
    body: dict[str, Any] = {
        "name": values["name"],
        "kinds": values["kinds"] or [],
        "senders": values["senders"],
    }
    if values["devices"] == "list":
        # written in the SSI's form as the search writes them (audit 43c): a paste the
        # search took was refused here (review of the screen, 47d), spaced octets too (47j)
        body["devices"] = pasted_device_ids(values["device_list"])
    if values["srvs"] in ("all", "critical"):
        body["srvs"] = values["srvs"]
    else:
        body["srvs"] = split_list(values["srv_list"])
    if values["webhook_url"].strip():
        body["webhook"] = {"url": values["webhook_url"].strip()}
    return body


# the most of each free-text field the form takes: past its domain bound with room for the
# separators and spaces a paste brings (1,000 Devices of 23 characters and a separator)
FORM_FIELD_MOST = {"name": 300, "device_list": 40_000, "srv_list": 10_000, "webhook_url": 2100}

# the error summary's words for each field (its links said "must be 1 to 200 characters"
# with no word of which field; audit 25c)
WATCH_FIELD_LABELS = {
    "name": "Name",
    "devices": "Devices",
    "device_list": "Device IDs",
    "srvs": "SRVs",
    "srv_list": "SRV numbers",
    "kinds": "Kinds of record",
    "senders": "Senders",
    "webhook_url": "Webhook URL",
}


def _in_form_order(errors: dict[str, str]) -> dict[str, str]:
    """The error summary in the form's order: it listed the checks' order (Kinds of record,
    then Name), not the order the eye and the tab key meet the fields (audit 53e)."""
    order = list(WATCH_FIELD_LABELS)
    return dict(
        sorted(errors.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    )


FIELD_OF = {
    "devices": "device_list",
    "srvs": "srv_list",
    "webhook": "webhook_url",
    "webhook.url": "webhook_url",
}


# An empty choice said in the form's words, not the API's ("must be a non-empty list of
# strings"; audit of the screen, session 18)
NOTHING_CHOSEN = {
    "kinds": "Tick at least one kind of record.",
    "devices": "List at least one Device ID, or choose “Mine”.",
    "srvs": "List at least one SRV, or choose “All”.",
}


LISTED_BUT_NOT_CHOSEN = [
    (
        "device_list",
        "devices",
        "You listed Device IDs: choose “These Device IDs”, or clear the list.",
    ),
    ("srv_list", "srvs", "You listed SRVs: choose “These SRVs”, or clear the list."),
]


# the form's choices: a value that is none of them was not sent by the form (it was read as
# "Mine", and a senders value the API refused pointed at nothing on the page; audit 23b)
CHOICES = {
    "devices": ("mine", "list"),
    "srvs": ("all", "critical", "list"),
    "senders": ("others", "all"),
}


NEVER_FIRES = (
    "Alerts you may see are addressed to you, so from “Other Users only” this watch would "
    "never fire: choose “Anyone” under Senders, or tick another kind."
)


def _checked_spec(values: dict[str, Any]) -> tuple[WatchSpec | None, dict[str, str]]:
    """The form's watch, or every field it got wrong at once (one at a time took a try for
    each; audit 43c)."""
    unoffered = {f: "Choose one of the options." for f, o in CHOICES.items() if values[f] not in o}
    if unoffered:
        return None, unoffered
    # a list typed under another choice was dropped without a word: the watch was "Mine",
    # which covers no Device for an agent or an Other User (audit 25c)
    errors = {
        field: message
        for field, choice, message in LISTED_BUT_NOT_CHOSEN
        if values[field].strip() and values[choice] != "list"
    }
    body = _watch_body(values)
    for field, message in NOTHING_CHOSEN.items():
        if isinstance(body.get(field), list) and not body[field]:
            errors.setdefault(FIELD_OF.get(field, field), message)
    for field, message in watch_problems(body).items():
        if field == "devices" and message.startswith("not an EUI-64"):
            # with the example the search form's Device ID gives: the reason alone left the
            # analyst to guess what a Device ID looks like (review of the screen, 54d)
            stop = "" if message.endswith((".", "\u2026")) else "."
            message += f"{stop} Write each as 8 pairs of hex digits, {DEVICE_ID_EXAMPLE}."
        errors.setdefault(FIELD_OF.get(field, field), message)
    if "webhook_url" not in errors and "webhook" in body:
        try:
            check_url(body["webhook"]["url"])
        except UnsafeUrl as e:
            errors["webhook_url"] = str(e)
    # SPEC 6 lets the API take it; on the screen, a watch that cannot fire is a mistake, said
    # with the others (review 43d)
    if not {"kinds", "senders"} & errors.keys() and never_matches(
        WatchSpec("", kinds=Listed(body["kinds"]), senders=body["senders"])
    ):
        errors["kinds"] = NEVER_FIRES
    if errors:
        return None, errors
    return watch_spec(body), {}


# module-level, as every other page's: added to each app, these routes were built again for
# each (their parameters' models, their dependencies), 4-5 ms of CPU a create_app, which
# the suite makes for nearly every web test (session 64)
router = APIRouter()


@router.get("/watches", include_in_schema=False)
def watches_page(request: Request, who: Who) -> Response:
    def event_id(name: str) -> int | None:
        wanted = request.query_params.get(name, "")
        return int(wanted) if re.fullmatch(r"[0-9]{1,18}", wanted) else None

    at = Position(before=event_id("before"), after=event_id("after"))
    if any(request.query_params.get(n) and getattr(at, n) is None for n in vars(at)):
        # read as the newest page, it marked 50 events read (review 25f)
        return error_page(request, who, 422, "Page link not valid", BAD_PAGE_LINK)
    asked_for = bool(request.query_params.get("watch"))
    done = request.query_params.get("done", "")
    return _page(request, who, event_id("watch"), at=at, asked_for=asked_for, done=done)


@router.post("/watches", include_in_schema=False)
def add_watch(
    request: Request,
    who: Annotated[SignedIn, Depends(checked_form("watch"))],
    name: str = Form(""),
    devices: str = Form("mine"),
    device_list: str = Form(""),
    srvs: str = Form("all"),
    srv_list: str = Form(""),
    kinds: list[str] = Form([]),  # noqa: B008 - FastAPI's form
    senders: str = Form("others"),
    webhook_url: str = Form(""),
) -> Response:
    given = {"name": name, "device_list": device_list, "srv_list": srv_list}
    given |= {"webhook_url": webhook_url}
    too_long = {
        field: f"Too long: at most {most:,} characters. Nothing was added."
        for field, most in FORM_FIELD_MOST.items()
        if len(given[field]) > most
    }
    if len(kinds) > len(KINDS):
        too_long["kinds"] = "Choose one of the options."
    # what is shown again is cut to its field's bound; what was too long is refused, not
    # cut: a padded list lost its last Devices without a word (audit 51d)
    values: dict[str, Any] = {f: v[: FORM_FIELD_MOST[f]] for f, v in given.items()}
    values |= {"devices": devices, "srvs": srvs, "senders": senders}
    values["kinds"] = kinds[: len(KINDS)]
    # one of the Party's requests in flight while the URL's name resolves (web.watches_api)
    with limits_of(request).holding(who.viewer.party_id, "request"):
        spec, errors = _checked_spec(values)
        errors |= too_long
        if spec is None or errors:
            return _page(request, who, status=422, values=values, errors=errors)
        try:
            with engine_of(request).begin() as conn:
                made = create_watch(
                    conn, who.viewer.party_id, spec, new_secret() if spec.webhook_url else None
                )
        except WatchLimit as e:
            return _page(request, who, status=422, values=values, errors={"name": str(e)})
    if made["webhook"] is not None:  # the secret is shown on this page, once: no redirect
        return _page(request, who, made["id"], status=201, created=made)
    return RedirectResponse(f"/watches?watch={made['id']}&done=created", status_code=303)


@router.get("/watches/{watch_id}/delete", include_in_schema=False)
def confirm_removal(request: Request, who: Who, watch_id: str) -> Response:
    """Asks first: one click took a watch, its unread events and its webhook (audit 25c)."""
    found = None
    if re.fullmatch(r"[0-9]{1,18}", watch_id):
        with reader_of(request) as conn:
            found = get_watch(conn, who.viewer.party_id, int(watch_id))
    if found is None:  # another Party's watch is one that is not there
        return not_found(request, who)
    return render(
        request,
        "watch_delete.html",
        who,
        # quoted as its heading quotes it: a name of words ran into the sentence (54d)
        title=f"Delete the watch “{readable(found['name'])}”?",
        watch=found,
        describe=describe,
    )


@router.post("/watches/{watch_id}/delete", include_in_schema=False)
def remove_watch(
    request: Request,
    who: Annotated[SignedIn, Depends(checked_form("delete button's"))],
    watch_id: str,
) -> Response:
    gone = re.fullmatch(r"[0-9]{1,18}", watch_id) is not None and delete_watch_at_once(
        engine_of(request), who.viewer.party_id, int(watch_id)
    )
    return RedirectResponse("/watches?done=deleted" if gone else "/watches", status_code=303)
