"""The SSI screen: sign-in, the SAT search, a record with its exchange, and the own-traffic report.

Server-rendered (Jinja2, autoescaped), no inline script or style, so it runs under the strict
CSP of `headers.py`. Every read of the trail goes through `store.queries` with the signed-in
Party as the viewer; this module never reads SAT records itself.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from lxml import etree
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..domain.ids import InvalidValue, eui64, whole_number
from ..domain.model import KINDS, KNOWN_ROLES, role_name
from ..domain.duis_terms import command_variant_text, execution_text
from ..domain.response_codes import ERROR, INFORMATION, WARNING, code_category, explain_code, legend
from ..domain.search import DEFAULT_PAGE
from ..domain.triggers import DEFAULT_WINDOW_MINUTES, MAX_TRIGGERS, window_minutes
from ..domain.visibility import Access, Viewer
from ..store import sessions as store
from ..security import MAX_PASSWORD_LENGTH
from ..store.accounts import check_login
from ..store.limits import SearchTooBroad
from ..store.queries import exchange_of, explain, registry_of, search_page, viewer_for, why_many
from ..store.triggers import triggers_for
from .api import report_download_headers
from .device_page import own_intervals, timeline
from .downloads import ReportDownload
from .errors import ParameterError
from .fairness import Busy, limits_of
from .params import build_search, cursor_of

HERE = Path(__file__).parent
SESSION_COOKIE = "st_session"
LOGIN_COOKIE = "st_login"  # the sign-in form's own CSRF token (double submit), before any session exists
DEVICE_COOKIE = "st_device"  # a browser that has signed in before: throttled apart (store.sessions)
PAGE_SIZE = min(50, DEFAULT_PAGE)
MAX_USERNAME = 64

CODE_CLASSES = {INFORMATION: "rc-ok", WARNING: "rc-warn", ERROR: "rc-error"}
KIND_LABELS = {"request": "Request", "acknowledgement": "Acknowledgement", "response": "Response",
               "device_alert": "Device alert", "dcc_alert": "DCC alert"}
SCOPES = (("all", "All I may see"), ("own", "Mine only"), ("others", "Others (MP141)"))
RELATION_LABELS = {"supplier": "Responsible Supplier", "network_operator": "Network Operator"}
SEARCH_FIELDS = ("device_id", "request_id", "srv", "kind", "from", "to", "scope")
FIELD_LABELS = {"device_id": "Device ID", "request_id": "Request ID", "srv": "SRV", "kind": "Kind",
                "from": "From", "to": "To", "scope": "Show", "cursor": "Page"}
EMPTY_NOTE = ("No records match — note MP141 shows other Users' traffic only for devices you were "
              "responsible for at the time.")

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)


# --- small pure helpers --------------------------------------------------------------------

def code_help(code: str | None, kind: str = "") -> str:
    return explain_code(code, kind) if code else ""


def code_class(code: str | None, kind: str = "") -> str:
    return CODE_CLASSES.get(code_category(code, kind), "rc-other") if code else ""


def show_time(iso: str) -> str:
    """`2025-02-10T10:00:05.120000Z` as `2025-02-10 10:00:05.12` (the column says UTC; the
    `datetime` attribute keeps the exact value)."""
    text = iso.replace("T", " ").removesuffix("Z")
    return text.rstrip("0").rstrip(".") if "." in text else text


def role_label(role: str | None) -> str:
    """`Import Supplier (IS)`; a future role code says how it is treated."""
    if not role:
        return ""
    return f"{KNOWN_ROLES[role]} ({role})" if role in KNOWN_ROLES else role_name(role)


env.globals.update(code_help=code_help, code_class=code_class, code_legend=legend(), show_time=show_time,
                   kind_labels=KIND_LABELS, command_variant_text=command_variant_text, execution_text=execution_text,
                   role_name=role_name, role_label=role_label, version=__version__, relation_labels=RELATION_LABELS)

_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$")


def utc_field(value: str) -> str:
    """The form's time fields are labelled UTC, so a time typed without an offset means UTC."""
    value = value.strip()
    if _NAIVE_TIME.match(value):
        return value.replace(" ", "T") + "Z"
    return value


def before_text(seconds: int) -> str:
    """A trigger's `seconds_before` in words: "2 h 5 min before", "3 s after"."""
    remaining = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if remaining >= size:
            parts.append(f"{remaining // size} {unit}")
            remaining %= size
    if remaining or not parts:
        parts.append(f"{remaining} s")
    return " ".join(parts[:2]) + (" after" if seconds < 0 else " before")


# the windows offered on a record page; the API takes any 1..10080 minutes
TRIGGER_WINDOWS = ((60, "1 hour"), (360, "6 hours"), (DEFAULT_WINDOW_MINUTES, "24 hours"), (10080, "7 days"))
# an alert or a response is what a viewer asks "what caused this?" about
TRIGGERED_KINDS = ("response", "device_alert", "dcc_alert")
env.globals["before_text"] = before_text


def safe_next(target: str | None) -> str:
    """Only a path on this site may follow a sign-in (no open redirect)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(ch) < 33 for ch in target) or target.startswith(("/login", "/logout"))):
        return "/"
    return target[:2000]


_XML_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=True)


def pretty_payload(payload: str) -> tuple[str, bool]:
    """(text to show, is_xml): XML pretty-printed when it parses safely, else the text as it is.

    No DTD, no entities, no network: a payload that declares any is shown as plain text.
    The result is always escaped by the template.
    """
    text = payload.strip()
    if not text.startswith("<") or "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        return payload, False
    try:
        parser = etree.XMLParser(**_XML_PARSER_OPTIONS)
        root = etree.fromstring(text.encode("utf-8"), parser)
        pretty = etree.tostring(root, pretty_print=True, encoding="unicode")
    except (etree.XMLSyntaxError, ValueError):
        return payload, False
    return pretty.rstrip("\n"), True


# --- sessions -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignedIn:
    session: store.WebSession
    viewer: Viewer
    party_name: str


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, path: str = "/",
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="strict",
                        secure=_secure(request))


def _drop_cookie(response: Response, request: Request, name: str, path: str = "/") -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=_secure(request))


def signed_in(request: Request) -> SignedIn | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    with engine_of(request).begin() as conn:
        session = store.load_session(conn, cookie)
        viewer = viewer_for(conn, session.party_id) if session else None
        name = store.party_name(conn, session.party_id) if session and viewer else ""
    if session is None or viewer is None:
        return None
    return SignedIn(session, viewer, name)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target} if request.method == "GET" and target != "/" else {}
    if request.cookies.get(SESSION_COOKIE):
        query["expired"] = "1"
    response = RedirectResponse("/login" + (f"?{urlencode(query)}" if query else ""), status_code=303)
    if request.cookies.get(SESSION_COOKIE):
        _drop_cookie(response, request, SESSION_COOKIE)
    return response


def render(request: Request, template: str, who: SignedIn | None = None, status: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    page = env.get_template(template).render(
        who=who, csrf=who.session.csrf_token if who else "", path=request.url.path, **context)
    return HTMLResponse(page, status_code=status, headers=headers)


def forbidden(request: Request, who: SignedIn | None, message: str) -> HTMLResponse:
    return render(request, "error.html", who, status=403, title="Form expired", heading="This form has expired",
                  message=message)


def too_busy(request: Request, who: SignedIn | None, busy: Busy) -> HTMLResponse:
    return render(request, "error.html", who, status=429, title="Too much at once", heading="Too much at once",
                  message=busy.sentence(), headers={"Retry-After": str(busy.retry_after)})


def not_found(request: Request, who: SignedIn | None) -> HTMLResponse:
    return render(request, "error.html", who, status=404, title="Not found", heading="Not found",
                  message="There is no record or page here that you can see. Check the address, or search "
                          "the trail again.")


# --- view models ----------------------------------------------------------------------------

def _relations(conn, viewer: Viewer, items: list[dict[str, Any]]) -> dict[int, str]:
    """For MP141 rows, which relation granted them (Responsible Supplier or Network Operator)."""
    shared = [entry for entry in items if entry["access"] == Access.MP141]
    return {record_id: why.interval.relation for record_id, why in why_many(conn, viewer, shared).items()
            if why.interval is not None}


def _trigger_window(value: str | None) -> tuple[int, str]:
    """The record page's `window` (minutes): a bad one falls back to the default, and says so."""
    try:
        return window_minutes(value), ""
    except InvalidValue as e:
        return DEFAULT_WINDOW_MINUTES, f"Window {e}; showing 24 hours."


def _search_values(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "").strip()[:200] for name in SEARCH_FIELDS}


def _page_link(values: dict[str, str], **extra: str) -> str:
    query = {k: v for k, v in values.items() if v and not (k == "scope" and v == "all")}
    query.update({k: v for k, v in extra.items() if v})
    return "/?" + urlencode(query) if query else "/"


# --- routes ---------------------------------------------------------------------------------

class Assets(StaticFiles):
    """The style sheet, script and icon: kept by the browser, revalidated by ETag on each use
    (the security headers would otherwise mark them no-store like every page)."""

    async def get_response(self, path: str, scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("cache-control", "no-cache")
        return response


def install(app: FastAPI) -> None:
    app.mount("/static", Assets(directory=HERE / "static"), name="static")

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request) -> Response:
        if signed_in(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        notice = ("You have signed out." if request.query_params.get("signed_out")
                  else "Your session has ended. Sign in again to continue."
                  if request.query_params.get("expired") else "")
        return _login_page(request, notice=notice, next_path=safe_next(request.query_params.get("next")))

    def _login_page(request: Request, *, status: int = 200, error: str = "", notice: str = "",
                    username: str = "", next_path: str = "/", headers: dict[str, str] | None = None) -> Response:
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", token):
            token = secrets.token_urlsafe(32)
        response = render(request, "login.html", None, status=status, title="Sign in", login_token=token,
                          error=error, notice=notice, username=username, next_path=next_path, headers=headers)
        _set_cookie(response, request, LOGIN_COOKIE, token, path="/login", max_age=3600)
        return response

    @app.post("/login", include_in_schema=False)
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              csrf_token: str = Form(""), next: str = Form("/")) -> Response:  # noqa: A002
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
            return forbidden(request, None, "The sign-in form had expired or your browser did not send its "
                                            "cookie. Cookies are needed to sign in. Go back to the sign-in "
                                            "page and try again.")
        username = username.strip()[:MAX_USERNAME]
        next_path = safe_next(next)
        client = request.client.host if request.client else "unknown"
        engine = engine_of(request)
        with engine.begin() as conn:
            store.purge_expired(conn)
        # the attempt's place is claimed before its password is verified: see store.sessions
        claim = store.claim_attempt(engine, username, client, request.cookies.get(DEVICE_COOKIE))
        if claim.refused_until is not None:
            minutes = max(1, -(-int((claim.refused_until - store.now_utc()).total_seconds()) // 60))
            return _login_page(
                request, status=429, username=username, next_path=next_path,
                headers={"Retry-After": str(minutes * 60)},
                error=f"Too many failed sign-in attempts for this username or from your network. "
                      f"Sign-in is paused: try again in {minutes} minute{'s' if minutes != 1 else ''}.")
        with engine.connect() as conn:
            party_id = (check_login(conn, username, password)
                        if username and password and len(password) <= MAX_PASSWORD_LENGTH else None)
        if party_id is None:  # the claim stays, as a failure
            return _login_page(request, status=401, username=username, next_path=next_path,
                               error="Wrong username or password.")
        with engine.begin() as conn:
            store.forgive(conn, claim)
            device_token = None if claim.trusted_device else store.remember_device(conn, username)
            store.delete_session(conn, request.cookies.get(SESSION_COOKIE))  # never reuse a prior id
            session_id = store.create_session(conn, username)
        response = RedirectResponse(next_path, status_code=303)
        _set_cookie(response, request, SESSION_COOKIE, session_id)
        if device_token is not None:
            _set_cookie(response, request, DEVICE_COOKIE, device_token, path="/login",
                        max_age=int(store.DEVICE_LIFETIME.total_seconds()))
        _drop_cookie(response, request, LOGIN_COOKIE, path="/login")
        return response

    @app.get("/logout", include_in_schema=False)
    def logout_form(request: Request) -> Response:
        """Someone who types /logout gets a button (signing out changes state, so it is a POST)."""
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        return render(request, "logout.html", who, title="Sign out")

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form("")) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        if not who.session.csrf_ok(csrf_token):
            return forbidden(request, who, "The sign-out form had expired. Reload the page and try again.")
        with engine_of(request).begin() as conn:
            store.delete_session(conn, request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login?signed_out=1", status_code=303)
        _drop_cookie(response, request, SESSION_COOKIE)
        return response

    @app.get("/", include_in_schema=False)
    def search(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        values = _search_values(request)
        errors: dict[str, str] = {}
        problem = ""
        items: list[dict[str, Any]] = []
        next_link = ""
        try:
            page = max(1, min(whole_number(request.query_params.get("page", "1")), 10**6))
        except InvalidValue:
            page = 1
        try:
            wanted = build_search(values["device_id"] or None, values["request_id"] or None,
                                  values["srv"] or None, values["kind"] or None,
                                  utc_field(values["from"]) or None, utc_field(values["to"]) or None,
                                  values["scope"] or None)
            after = cursor_of(request.query_params.get("cursor") or None)
            values.update(device_id=wanted.device_id or "", request_id=wanted.request_id or "")  # as stored
        except ParameterError as e:
            errors[e.parameter] = e.message
            wanted = after = None
        relations: dict[int, str] = {}
        names: dict[str, str] = {}
        busy: Busy | None = None
        if wanted is not None:
            try:
                with limits_of(request).search(who.viewer.party_id, wanted), engine_of(request).connect() as conn:
                    items, more = search_page(conn, who.viewer, wanted, PAGE_SIZE, after)
                    relations = _relations(conn, who.viewer, items)
                    names = store.party_names(conn, (i["party_id"] for i in items))
            except SearchTooBroad as e:
                problem = str(e)
            except Busy as e:
                busy, problem = e, e.sentence()
            else:
                if more is not None:
                    next_link = _page_link(values, cursor=more.encode(), page=str(page + 1))
        if "cursor" in errors:
            problem, errors = "That page link is no longer valid. Start again from the first page.", {}
        status = 429 if busy else 422 if errors or problem else 200
        first = (page - 1) * PAGE_SIZE + 1 if after is not None else 1
        return render(request, "search.html", who, status=status, title="Search the trail", values=values,
                      headers={"Retry-After": str(busy.retry_after)} if busy else None,
                      errors=errors, field_labels=FIELD_LABELS, problem=problem, items=items,
                      relations=relations, names=names, kinds=KINDS, scopes=SCOPES, next_link=next_link,
                      first_link=_page_link(values) if after is not None else "", first=first,
                      empty_note=EMPTY_NOTE, page=page if after is not None else 1)

    @app.get("/records/{record_id}", include_in_schema=False)
    def record(request: Request, record_id: str) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
        if not re.fullmatch(r"[0-9]{1,19}", record_id) or not 0 < int(record_id) < 2**63:
            return not_found(request, who)
        with limits_of(request).search(who.viewer.party_id), engine_of(request).connect() as conn:
            found = explain(conn, who.viewer, int(record_id))
            if found is None:
                return not_found(request, who)
            current, decision = found
            exchange = []
            messages = exchange_of(conn, who.viewer, current["request_id"])
            reasons = why_many(conn, who.viewer, messages)  # one read, however long the exchange
            for entry in messages:
                why = reasons[entry["id"]]
                payload = pretty_payload(entry["payload"]) if "payload" in entry else None
                exchange.append({"item": entry, "badge": why.badge(), "payload": payload,
                                 "relation": why.interval.relation if why.interval else ""})
            if not any(e["item"]["id"] == current["id"] for e in exchange):
                payload = pretty_payload(current["payload"]) if "payload" in current else None
                exchange.append({"item": current, "badge": decision.badge(), "payload": payload,
                                 "relation": decision.interval.relation if decision.interval else ""})
            triggers = window = window_error = None
            if current["kind"] in TRIGGERED_KINDS:
                window, window_error = _trigger_window(request.query_params.get("window"))
                triggers = triggers_for(conn, who.viewer, current, window)
                relations = _relations(conn, who.viewer, [t["record"] for t in triggers])
                for trigger in triggers:
                    trigger["relation"] = relations.get(trigger["record"]["id"], "")
            names = store.party_names(conn, [e["item"]["party_id"] for e in exchange]
                                      + [t["record"]["party_id"] for t in triggers or ()])
        return render(request, "record.html", who, title=f"Record {current['id']}", record=current,
                      decision=decision, exchange=exchange, names=names, triggers=triggers, window=window,
                      window_error=window_error, windows=TRIGGER_WINDOWS, max_triggers=MAX_TRIGGERS)

    @app.get("/devices/{device_id}", include_in_schema=False)
    def device(request: Request, device_id: str) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        try:
            device_id = eui64(device_id[:64])
        except InvalidValue:
            return not_found(request, who)
        try:
            after = cursor_of(request.query_params.get("cursor") or None)
        except ParameterError:
            after, problem = None, "That page link is no longer valid. Start again from the newest records."
        else:
            problem = ""
        wanted = build_search(device_id=device_id)
        items: list[dict[str, Any]] = []
        more = None
        # only the viewer's own intervals: a Device seen by nobody else reads like an empty one
        with limits_of(request).search(who.viewer.party_id, wanted), engine_of(request).connect() as conn:
            intervals = own_intervals(registry_of(conn, device_id, who.viewer.party_id))
            if not problem:
                try:
                    items, more = search_page(conn, who.viewer, wanted, PAGE_SIZE, after)
                except SearchTooBroad as e:
                    problem = str(e)
            relations = _relations(conn, who.viewer, items)
            names = store.party_names(conn, [i["party_id"] for i in items])
        here = f"/devices/{device_id}"
        return render(request, "devices.html", who, status=422 if problem else 200, title=f"Device {device_id}",
                      device_id=device_id, intervals=intervals, rows=timeline(items), relations=relations,
                      names=names, problem=problem, older_link=f"{here}?{urlencode({'cursor': more.encode()})}"
                      if more is not None else "", newest_link=here if after is not None else "",
                      described=next((i for i in items if i["device_type"]), None))

    @app.get("/report", include_in_schema=False)
    def report_form(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        today = datetime.now(timezone.utc).date()
        values = {"from": (today.replace(day=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        return render(request, "report.html", who, title="Own-traffic report", values=values, errors={})

    @app.post("/report", include_in_schema=False)
    def report(request: Request, csrf_token: str = Form(""), time_from: str = Form("", alias="from"),
               time_to: str = Form("", alias="to")) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        if not who.session.csrf_ok(csrf_token):
            return forbidden(request, who, "The report form had expired. Reload the page and try again.")
        values = {"from": time_from.strip()[:64], "to": time_to.strip()[:64]}
        errors: dict[str, str] = {}
        for name in ("from", "to"):
            if not values[name]:
                errors[name] = "is required"
        wanted = None
        if not errors:
            try:
                wanted = build_search(time_from=utc_field(values["from"]), time_to=utc_field(values["to"]))
            except ParameterError as e:
                errors[e.parameter] = e.message
        if wanted is None or wanted.time_from is None or wanted.time_to is None:
            return render(request, "report.html", who, status=422, title="Own-traffic report", values=values,
                          errors=errors or {"from": "is required"})
        def shown_on_the_form(failure: Exception) -> Response | None:
            if isinstance(failure, Busy):
                return too_busy(request, who, failure)
            if isinstance(failure, SearchTooBroad):
                return render(request, "report.html", who, status=422, title="Own-traffic report", values=values,
                              errors={"from": f"{failure} (a shorter period)"})
            return None

        return ReportDownload(engine_of(request), limits_of(request), who.viewer, wanted.time_from, wanted.time_to,
                              headers=report_download_headers(who.viewer.party_id, wanted.time_from,
                                                              wanted.time_to),
                              on_error=shown_on_the_form)

    _install_error_pages(app)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api/") or path.startswith("/openapi") or path.startswith("/static/"))


def _install_error_pages(app: FastAPI) -> None:
    """Pages (not JSON) for the screen's own 404/405/500; the API keeps its JSON answers."""
    api_http = app.exception_handlers.get(StarletteHTTPException)
    api_unexpected = app.exception_handlers.get(Exception)

    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not _wants_html(request) or exc.status_code not in (404, 405):
            if api_http is not None:
                return await api_http(request, exc)
            raise exc
        who = await run_in_threadpool(signed_in, request)
        if exc.status_code == 404:
            return not_found(request, who)
        return render(request, "error.html", who, status=405, title="Not allowed", heading="Not allowed",
                      message="That address does not accept this kind of request.")

    api_busy = app.exception_handlers.get(Busy)

    async def _busy(request: Request, exc: Busy) -> Response:
        if not _wants_html(request) and api_busy is not None:
            return await api_busy(request, exc)
        return too_busy(request, await run_in_threadpool(signed_in, request), exc)

    async def _unexpected(request: Request, exc: Exception) -> Response:
        if not _wants_html(request) and api_unexpected is not None:
            return await api_unexpected(request, exc)
        from .errors import log

        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(request, "error.html", None, status=500, title="Something went wrong",
                      heading="Something went wrong",
                      message="The error has been logged. Try again; if it keeps happening, tell your "
                              "servicetrail administrator.")

    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Busy, _busy)
    app.add_exception_handler(Exception, _unexpected)
