"""The screen's pages: the SAT search, a record with its exchange, a Device, and the own-traffic
report. Every read of the trail goes through `store.queries` with the signed-in Party as the
viewer; this module never reads SAT records itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection

from ..domain.ids import InvalidValue, eui64
from ..domain.model import KINDS, Responsibility
from ..domain.search import DEFAULT_PAGE, Cursor, Search
from ..domain.times import format_time, seconds_text
from ..domain.triggers import MAX_TRIGGERS
from ..domain.visibility import Access, Decision
from ..store.limits import SearchTooBroad
from ..store.logged_reads import LoggedRead, logged_read
from ..store.parties import party_names
from ..store.queries import registry_of
from .device_page import own_intervals, timeline
from .downloads import CredentialEnded, ReportDownload, report_download_headers
from .errors import ParameterError
from .exchange_edges import exchange_edges, held_during
from .fairness import Busy, limits_of
from .params import REPEATED, asked, build_search, cursor_of, record_id_or_404, repeated_parameter
from .presenters import (
    EMPTY_NOTE,
    FIELD_LABELS,
    KIND_LABELS,
    SCOPES,
    SEARCH_FIELDS,
    TRIGGER_WINDOWS,
    TRIGGERED_KINDS,
    exchange_entry,
    older_triggers,
    page_link,
    page_number,
    record_stopped,
    narrower,
    record_title,
    said_on_screen,
    stopped,
    search_values,
    trigger_window,
    utc_field,
)
from .proofs_page import proof_mark
from .query_guard import nul_in, shows_nul_beside
from .rendering import error_page, render, too_busy
from .search_back import back_of, search_href
from .signin import SignedIn, Who, checked_form, session_still_held, to_login, web_reader
from .state import engine_of, reader_of

PAGE_SIZE = min(50, DEFAULT_PAGE)
STALE_PAGE_LINK = "That page link is no longer valid. Start again from the first page."

router = APIRouter(include_in_schema=False)


def relations_of(read: LoggedRead, items: list[dict[str, Any]]) -> dict[int, str]:
    """For MP141 rows, which relation granted them (Responsible Supplier or Network Operator)."""
    shared = [entry for entry in items if entry["access"] == Access.MP141]
    return {
        record_id: why.interval.relation
        for record_id, why in read.why_many(shared).items()
        if why.interval is not None
    }


@dataclass
class Results:
    """One page of a search, with what its rows show beside them, or why there is none."""

    items: list[dict[str, Any]] = field(default_factory=list)
    relations: dict[int, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    more: Cursor | None = None
    problem: str = ""
    busy: Busy | None = None
    # nothing found for a Device: the viewer's own intervals on it (the Device page's), for
    # the empty page said "if you were responsible at that moment" and left the viewer to
    # find out when that was (audit 57f: a new supplier searching before its start)
    held: list[Responsibility] | None = None


def _results(request: Request, who: SignedIn, wanted: Search, after: Cursor | None) -> Results:
    try:
        with (
            limits_of(request).search(who.viewer.party_id, wanted),
            reader_of(request) as conn,
            logged_read(conn, who.viewer, web_reader(who), "search", asked(request)) as read,
        ):
            items, more = read.search_page(wanted, PAGE_SIZE, after, titles_only=True)
            held = None
            if not items and after is None and wanted.device_id:
                held = own_intervals(registry_of(conn, wanted.device_id, who.viewer.party_id))
            return Results(
                items,
                relations_of(read, items),
                party_names(conn, (i["party_id"] for i in items)),
                more,
                held=held,
            )
    except SearchTooBroad as e:
        narrow = narrower(
            ("a Device ID", bool(wanted.device_id)),
            ("a Request ID", bool(wanted.request_id)),
            ("a shorter date range", False),
        )
        return Results(problem=stopped(e.seconds, "The search", narrow))
    except Busy as e:
        return Results(problem=e.sentence(), busy=e)


def _wanted(
    values: dict[str, str], cursor: str | None
) -> tuple[Search | None, Cursor | None, dict[str, str]]:
    """The search the form asks for and the page it is on, or the errors by field (and then
    the fields as the store keeps them, for showing back)."""
    try:
        wanted = build_search(
            values["device_id"] or None,
            values["request_id"] or None,
            values["srv"] or None,
            values["kind"] or None,
            utc_field(values["from"]) or None,
            utc_field(values["to"]) or None,
            values["scope"] or None,
        )
        after = cursor_of(cursor or None)
    except ParameterError as e:
        return None, None, e.every
    values.update(device_id=wanted.device_id or "", request_id=wanted.request_id or "")
    return wanted, after, {}


def _problem_title(stale_link: bool, found: Results) -> str:
    if stale_link:
        return "Page link expired"
    # a busy Party was told to narrow its search (review 38f)
    return "Too much at once" if found.busy else "Narrow your search"


def _found_said(found: Results, first: int) -> str:
    """How many records the page lists, as far as it knows: a full page with more after it
    said "50 records" of a search that found thousands (review of the screen, 47d)."""
    count = len(found.items)
    if count and first > 1:
        return f"records {first}–{first + count - 1}"
    if found.more is not None:
        return f"first {count} records"
    return f"{count or 'no'} record{'s' if count != 1 else ''}"


def _search_title(
    found: Results, errors: dict[str, str], values: dict[str, str], first: int = 1
) -> str:
    """The title a screen reader says first on the page a search opens: what it found, as a
    sighted analyst sees in the results' status line (audit 43c), and for what: searches of
    different Devices were all "Search the trail: 50 records" in a browser's history and tabs."""
    if errors or found.problem:
        return "Search the trail"
    said = f"Search the trail: {_found_said(found, first)}"
    # a kind as the form's list says it ("Device alert"): its token, read aloud as "device
    # underscore alert", was not what the analyst chose (review 46f)
    shown = {**values, "kind": KIND_LABELS.get(values["kind"], values["kind"])}
    asked_for = [
        f"{FIELD_LABELS[name]} {shown[name]}"
        for name in SEARCH_FIELDS
        if values[name] and name != "scope"
    ]
    if values["scope"] in ("own", "others"):
        asked_for.append(dict(SCOPES)[values["scope"]])
    return f"{said} for {', '.join(asked_for)}" if asked_for else said


def _paging(
    request: Request, values: dict[str, str], page: int, after: Cursor | None, found: Results
) -> dict[str, Any]:
    """The pager's links, the number of the page's first row, and the `back` its rows' links
    carry (web.search_back)."""
    cursor = request.query_params.get("cursor", "") if after is not None else ""
    back = back_of(values, cursor, page) if found.items else ""
    return {
        "next_link": (
            page_link(values, cursor=found.more.encode(), page=str(page + 1))
            if found.more is not None
            else ""
        ),
        "first_link": page_link(values) if after is not None else "",
        "first": (page - 1) * PAGE_SIZE + 1 if after is not None else 1,
        "page": page if after is not None else 1,
        "back": urlencode({"back": back}) if back else "",
    }


@router.get("/")
@shows_nul_beside(*SEARCH_FIELDS)
def search(request: Request, who: Who) -> Response:
    values = search_values(request.query_params)
    page = page_number(request.query_params.get("page"))
    repeated = repeated_parameter(request.query_params, SEARCH_FIELDS)
    refused = nul_in(request, SEARCH_FIELDS) or ({repeated: REPEATED} if repeated else {})
    if refused:
        wanted, after, errors = None, None, refused
    else:
        wanted, after, errors = _wanted(values, request.query_params.get("cursor"))
    found = _results(request, who, wanted, after) if wanted is not None else Results()
    stale_link = "cursor" in errors
    if stale_link:
        found.problem, errors = STALE_PAGE_LINK, {}
    status = 429 if found.busy else 422 if errors or found.problem else 200
    paging = _paging(request, values, page, after, found)
    return render(
        request,
        "search.html",
        who,
        status=status,
        title=_search_title(found, errors, values, paging["first"]),
        values=values,
        headers={"Retry-After": str(found.busy.retry_after)} if found.busy else None,
        errors=said_on_screen(errors, values),
        field_labels=FIELD_LABELS,
        problem=found.problem,
        problem_title=_problem_title(stale_link, found),
        items=found.items,
        relations=found.relations,
        names=found.names,
        kinds=KINDS,
        scopes=SCOPES,
        empty_note=EMPTY_NOTE,
        held=found.held,
        **paging,
    )


def _exchange(
    read: LoggedRead, current: dict[str, Any], decision: Decision
) -> tuple[list[dict[str, Any]], int | None]:
    """The record's exchange (its request, acknowledgement, responses), each as the viewer may
    see it, and, when it was cut to its newest messages, how many of them are listed (the
    record itself comes after them if it is older)."""
    messages, cut = read.exchange_of(current)
    exchange = [exchange_entry(entry, decision) for entry, decision in messages]
    if not any(e["item"]["id"] == current["id"] for e in exchange):
        exchange.append(exchange_entry(current, decision))
    return exchange, len(messages) if cut else None


def _alert_id(record: dict[str, Any]) -> bool:
    """Whether the record's `request_id` is an alert's own identifier, its DUIS ResponseID
    (SPEC 4), which the screen calls its Alert ID."""
    return record["kind"] in ("device_alert", "dcc_alert") and not record["srv"]


def _triggers(
    read: LoggedRead, current: dict[str, Any], window: int
) -> tuple[list[Any], list[tuple[str, str]]]:
    """The possible triggers, each with the relation that shows it, and when the cap cut them,
    the links (text, address) to the searches that go on with the rest."""
    found = read.triggers_for(current, window)
    relations = relations_of(read, [t["record"] for t in found.items])
    for trigger in found.items:
        trigger["relation"] = relations.get(trigger["record"]["id"], "")
    own_id = "Alert ID" if _alert_id(current) else "Request ID"
    rest = [
        (
            "the older requests of the window"
            if searched.device_id
            else f"the other requests with its {own_id}",
            page_link(older_triggers(searched, after)),
        )
        for searched, after in found.rest
    ]
    return found.items, rest


@router.get("/records/{record_id}")
def record(request: Request, who: Who, record_id: str) -> Response:
    wanted_id = record_id_or_404(record_id)
    page = _read_record(request, who, wanted_id)
    if isinstance(page, Response):
        return page
    if page is None:  # after its access-log entry (a read of nothing), as the API's 404
        raise HTTPException(404)
    back = search_href(request.query_params.get("back"))
    # carried on to the exchange's other records and the triggers: still the same search's
    carried = back.removeprefix("/").removeprefix("?")
    return render(
        request,
        "record.html",
        who,
        title=record_title(page["record"]),
        search_href=back,
        back=urlencode({"back": carried}) if carried else "",
        back_value=carried,
        **page,
    )


def _read_record(
    request: Request, who: SignedIn, wanted_id: int
) -> dict[str, Any] | Response | None:
    """What the record page shows (None: no record the viewer may see), or, past the time
    limit, the page that says so with what a record page can read less of."""
    filters = asked(request, "window", record_id=wanted_id)
    window = None  # the triggers' look-back, once the record is read and has them
    try:
        with (
            limits_of(request).search(who.viewer.party_id),
            reader_of(request) as conn,
            logged_read(conn, who.viewer, web_reader(who), "record", filters) as read,
        ):
            found = read.explain(wanted_id)
            if found is not None and found[0]["kind"] in TRIGGERED_KINDS:
                window = trigger_window(request.query_params.get("window"))[0]
            return None if found is None else _record_page(request, conn, read, *found)
    except SearchTooBroad as e:
        said, shorter = record_stopped(wanted_id, e.seconds, window)
        if shorter and request.query_params.get("back"):  # still the same search's
            shorter += "&" + urlencode({"back": request.query_params["back"]})
        return error_page(
            request,
            who,
            422,
            "Record not read in time",
            said,
            again=shorter,
            again_label="Open it with a shorter look-back",
        )


def _record_page(
    request: Request,
    conn: Connection,
    read: LoggedRead,
    current: dict[str, Any],
    decision: Decision,
) -> dict[str, Any]:
    """What a record page shows besides the record: its proof, exchange and triggers."""
    proof = proof_mark(request, read, current["id"])
    exchange, exchange_cut = _exchange(read, current, decision)
    triggered = current["kind"] in TRIGGERED_KINDS
    # the viewer's own intervals on the Device, for what the exchange and triggers say of them
    held = None
    if current["device_id"] and (current["access"] == Access.MP141 or triggered):
        held = registry_of(conn, current["device_id"], read.viewer.party_id)
    edges = []
    if held is not None and current["access"] == Access.MP141:
        listed = [e["item"] for e in exchange]
        edges = exchange_edges(held, current, listed, cut=exchange_cut is not None)
    triggers = window = window_error = None
    older_triggers_links: list[tuple[str, str]] = []
    unheld = False
    if triggered:
        window, window_error = trigger_window(request.query_params.get("window"))
        triggers, older_triggers_links = _triggers(read, current, window)
        unheld = held is not None and not held_during(held, current["logged_at"], window)
    names = party_names(
        conn,
        [e["item"]["party_id"] for e in exchange]
        + [t["record"]["party_id"] for t in triggers or ()],
    )
    return {
        "record": current,
        "decision": decision,
        "proof": proof,
        "exchange": exchange,
        "exchange_cut": exchange_cut,
        "exchange_edges": edges,
        "triggers_unheld": unheld,
        "names": names,
        "triggers": triggers,
        "window": window,
        "window_error": window_error,
        "windows": TRIGGER_WINDOWS,
        "max_triggers": MAX_TRIGGERS,
        "older_triggers": older_triggers_links,
    }


def _device_page_cursor(request: Request) -> tuple[Cursor | None, str]:
    try:
        return cursor_of(request.query_params.get("cursor") or None), ""
    except ParameterError:
        return None, "That page link is no longer valid. Start again from the newest records."


@dataclass
class DevicePage:
    """What a Device page shows: the viewer's own intervals on it and a page of its records."""

    intervals: list[Any]
    items: list[dict[str, Any]] = field(default_factory=list)
    more: Cursor | None = None
    relations: dict[int, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    # past the time limit: the search of the Device's 30 days up to where the page began,
    # (from, to, address); the sentence advising it had no link to it (review of the screen, 54d)
    shorter: tuple[str, str, str] | None = None


NARROWER_DAYS = 30


def _shorter_search(device_id: str, after: Cursor | None) -> tuple[str, str, str]:
    """The Device's search over the NARROWER_DAYS before the page's first row would be: up
    to now, or to the row an older page begins after."""
    if after is None:
        start = (datetime.now(timezone.utc) - timedelta(days=NARROWER_DAYS)).date().isoformat()
        end = ""
    else:
        end = format_time(after.logged_at).removesuffix("Z").replace("T", " ")
        start = (after.logged_at - timedelta(days=NARROWER_DAYS)).date().isoformat()
    query = {"device_id": device_id, "from": start} | ({"to": end} if end else {})
    return start, end, "/?" + urlencode(query)


def _device_reads(
    request: Request, who: SignedIn, device_id: str, after: Cursor | None, problem: str
) -> DevicePage:
    wanted = build_search(device_id=device_id)
    # `device_page`: SPEC 8 names the read a search, and its filters were a search's by that
    # Device's: Who looked could not say which page an analyst had open (review of the screen,
    # 55). A boolean, which no query parameter can be, so a search cannot pass for the page.
    filters = asked(request, "cursor", device_id=device_id, device_page=True)
    try:
        with (
            limits_of(request).search(who.viewer.party_id, wanted),
            reader_of(request) as conn,
            logged_read(conn, who.viewer, web_reader(who), "search", filters) as read,
        ):
            shown = DevicePage([], problem=problem)
            # first: on PostgreSQL the page's read begins the transaction's one snapshot, which
            # the intervals are then read in too (SQLite's ends with the page's read)
            if not problem:
                shown.items, shown.more = read.search_page(
                    wanted, PAGE_SIZE, after, titles_only=True
                )
            # only the viewer's own intervals: a Device seen by nobody else reads like an empty one
            shown.intervals = own_intervals(read.registry_of(device_id))
            shown.relations = relations_of(read, shown.items)
            shown.names = party_names(conn, [i["party_id"] for i in shown.items])
            return shown
    except SearchTooBroad as e:
        # outside the read's transaction, which PostgreSQL has aborted: nothing was shown, so
        # nothing is logged; the intervals are read again on their own
        with reader_of(request) as conn:
            intervals = own_intervals(registry_of(conn, device_id, who.viewer.party_id))
        return DevicePage(
            intervals,
            problem=stopped(e.seconds, "Reading this Device’s time line", "").rstrip(),
            shorter=_shorter_search(device_id, after),
        )


@router.get("/devices/{device_id}")
def device(request: Request, who: Who, device_id: str) -> Response:
    try:
        device_id = eui64(device_id[:64])
    except InvalidValue:
        raise HTTPException(404) from None
    after, problem = _device_page_cursor(request)
    shown = _device_reads(request, who, device_id, after, problem)
    here = f"/devices/{device_id}"
    return render(
        request,
        "devices.html",
        who,
        status=422 if shown.problem else 200,
        title=f"Device {device_id}",
        device_id=device_id,
        intervals=shown.intervals,
        rows=timeline(shown.items),
        relations=shown.relations,
        names=shown.names,
        problem=shown.problem,
        shorter=shown.shorter,
        older_link=(
            f"{here}?{urlencode({'cursor': shown.more.encode()})}" if shown.more is not None else ""
        ),
        newest_link=here if after is not None else "",
        described=next((i for i in shown.items if i["device_type"]), None),
    )


@router.get("/report")
def report_form(request: Request, who: Who) -> Response:
    today = datetime.now(timezone.utc).date()
    values = {
        "from": (today.replace(day=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    return render(request, "report.html", who, title="Own-traffic report", values=values, errors={})


def _report_period(values: dict[str, str]) -> tuple[Search | None, dict[str, str]]:
    """The period the report form asks for, or its errors by field."""
    errors = {name: "is required" for name in ("from", "to") if not values[name]}
    if errors:
        return None, errors
    try:
        wanted = build_search(time_from=utc_field(values["from"]), time_to=utc_field(values["to"]))
    except ParameterError as e:
        return None, e.every
    return wanted, {}


# the search's advice named a Device ID and a Request ID, which this form has not (audit 53e)
REPORT_STOPPED = "the report took longer than {} to read and was stopped: choose a shorter period"


@router.post("/report")
def report(
    request: Request,
    who: Annotated[SignedIn, Depends(checked_form("report"))],
    time_from: str = Form("", alias="from"),
    time_to: str = Form("", alias="to"),
) -> Response:
    values = {"from": time_from.strip()[:64], "to": time_to.strip()[:64]}

    def refused(errors: dict[str, str]) -> Response:
        return render(
            request,
            "report.html",
            who,
            status=422,
            title="Own-traffic report",
            values=values,
            errors=errors,
        )

    wanted, errors = _report_period(values)
    if wanted is None or wanted.time_from is None or wanted.time_to is None:
        return refused(said_on_screen(errors or {"from": "is required"}, values))

    def shown_on_the_form(failure: Exception) -> Response | None:
        if isinstance(failure, Busy):
            return too_busy(request, who, failure)
        if isinstance(failure, SearchTooBroad):
            return refused({"from": REPORT_STOPPED.format(seconds_text(failure.seconds))})
        if isinstance(failure, CredentialEnded):  # as any page of an ended session
            return to_login(request)
        return None

    return ReportDownload(
        engine_of(request),
        limits_of(request),
        who.viewer,
        web_reader(who),
        {"from": values["from"], "to": values["to"]},
        wanted.time_from,
        wanted.time_to,
        headers=report_download_headers(who.viewer.party_id, wanted.time_from, wanted.time_to),
        on_error=shown_on_the_form,
        still_held=session_still_held(request, who.viewer.party_id),
    )
