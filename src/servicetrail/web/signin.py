"""Who is signed in to the screen, as FastAPI dependencies: a route that names `Who` runs
only for a signed-in Party (an auditor gets 403, anyone else the sign-in page); one that
names `WhoOrAuditor` also for an auditor (the Who-looked page); one that names
`checked_form(...)` only when its form carries the session's CSRF token."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, ClassVar, TypeVar, cast
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ..domain.access_log import Reader
from ..domain.visibility import Viewer
from ..store import sessions
from ..store.engine import reading
from ..store.parties import party_name
from ..store.limits import SearchTooBroad, store_busy
from ..store.queries import viewer_for
from ..store.watch_events import Unread, skip_hidden_unread, unread_of_party
from .fairness import share_of
from .head_requests import asked_head
from .state import credential_not_found, engine_of, reader_of, seen_credentials

Counted = TypeVar("Counted", int, Unread)

SESSION_COOKIE = "st_session"
LOGIN_COOKIE = (
    "st_login"  # the sign-in form's own CSRF token (double submit), before any session exists
)
DEVICE_COOKIE = "st_device"  # a browser that has signed in before: throttled apart (store.sessions)


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: sessions.WebSession
    viewer: Viewer
    party_name: str
    unread: int = (
        0  # the Party's watch events not yet seen on the Watches page (shown capped: "99+")
    )
    # (watch id, its unread events) of the watches with some, as that count walked them
    unread_by_watch: tuple[tuple[int, int], ...] = ()
    auditor: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class SignedInAuditor:
    """An auditor signed in to the screen, of no Party: it reads every Party's entries on the
    Who-looked page, and every page of SAT records answers it 403 (SPEC section 8)."""

    session: sessions.WebSession
    party_name: str = "Auditor"
    unread: int = 0
    auditor: ClassVar[bool] = True


def session_still_held(request: Request, party_id: str) -> Callable[[], bool]:
    """Whether the request's session is still the Party's, asked again later (a download's
    state.credential_recheck_seconds): a password changed, the account disabled or signed
    out ends it."""
    engine, cookie = engine_of(request), request.cookies.get(SESSION_COOKIE)

    def still_held() -> bool:
        with reading(engine) as conn:
            session = sessions.load_session(conn, cookie, seen=False)
        return session is not None and session.party_id == party_id

    return still_held


def web_reader(who: SignedIn) -> Reader:
    """Who reads, for the access log: the signed-in account, through the screen."""
    return Reader(who.viewer.party_id, who.session.username, "web")


class AuditorRefused(Exception):
    """An auditor on a page of SAT records: answered 403, on a page that leads to Who looked."""

    def __init__(self, who: SignedInAuditor) -> None:
        super().__init__("an auditor's account reads the access log only")
        self.who = who


class SignInNeeded(Exception):
    """No live session: the error handler answers with the sign-in page's address."""


class FormExpired(Exception):
    """A form without the token it was given: answered 403 with `message` (errors.py)."""

    def __init__(self, who: SignedIn | SignedInAuditor | None, message: str) -> None:
        super().__init__(message)
        self.who = who
        self.message = message


def signed_in(request: Request) -> SignedIn | None:
    """The Party's account signed in, read once a request: an error page after its route
    (a record's 404) read the session, the Party and the unread count all over again, twice
    the store's work of the API's 404 (audit 50e)."""
    if hasattr(request.state, "signed_in"):
        return cast(SignedIn | None, request.state.signed_in)
    request.state.signed_in = who = _signed_in(request)
    return who


def _signed_in(request: Request) -> SignedIn | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    with engine_of(request).begin() as conn:
        session = sessions.load_session(conn, cookie)
        if session is None:
            credential_not_found(request, cookie)
        elif session.party_id is None:
            seen_credentials(request).forget(cookie)  # an auditor's: not a Party's turns
        if session is None or session.party_id is None:
            # an auditor's: it reads the Who-looked page only (auditor_signed_in, which then
            # need not load it again)
            request.state.session_read, request.state.auditor_session = True, session
            return None
        seen_credentials(request).remember(cookie, share_of(session.party_id, ""))
        viewer = viewer_for(conn, session.party_id)
        name = party_name(conn, session.party_id) if viewer else ""
    if viewer is None:
        return None
    return with_unread(SignedIn(session, viewer, name), unread_now(request, viewer))


def with_unread(who: SignedIn, unread: Unread | None) -> SignedIn:
    """`who` with the unread counts (as they were, when they could not be counted in time)."""
    if unread is None:
        return who
    return replace(who, unread=unread.count, unread_by_watch=unread.by_watch)


def unread_now(request: Request, viewer: Viewer) -> Unread | None:
    """The navigation's unread count (None: not counted in time). Watches whose every unread
    event the Party may no longer see are marked read as it goes, so that the next page's
    count does not walk them again (store.watch_events.skip_hidden_unread)."""
    unread = count_or_none(request, lambda conn: unread_of_party(conn, viewer))
    if unread is None:
        return None
    if unread.hidden_only and not asked_head(request):  # a HEAD changes nothing
        try:
            with engine_of(request).begin() as conn:
                skip_hidden_unread(conn, viewer.party_id, unread.hidden_only)
        except SQLAlchemyError as e:  # a driver's error, or the pool's wait for a connection
            if store_busy(e) is None:
                raise  # a busy store skips them on a later page; the count stands
    return unread


def count_or_none(request: Request, count: Callable[[Connection], Counted]) -> Counted | None:
    """A count read on a connection of its own (it reads as the viewer: store.queries), or
    None when the store cannot give it now: past its time limit, or a lock held on the
    watches' events. A count is no reason to refuse a page (that made every page a 503,
    even /verify: audit 20a; the Watches page a 422: review 25f)."""
    try:
        with reader_of(request) as conn:
            return count(conn)
    except SearchTooBroad:
        return None
    except SQLAlchemyError as e:  # every pooled connection in use is busy too (it was a 503)
        if store_busy(e) is None:
            raise
        return None


def auditor_signed_in(request: Request) -> SignedInAuditor | None:
    """The auditor whose live session the browser holds, if it is an auditor's."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session: sessions.WebSession | None
    if getattr(request.state, "session_read", False):
        session = request.state.auditor_session
    else:
        with engine_of(request).begin() as conn:
            session = sessions.load_session(conn, cookie)
        if session is None:
            credential_not_found(request, cookie)
    if session is None or session.party_id is not None:
        return None
    seen_credentials(request).remember(cookie, share_of(None, session.username))
    return SignedInAuditor(session)


def refuse_auditor(request: Request) -> None:
    """403 (AuditorRefused) when the browser holds an auditor's live session."""
    auditor = auditor_signed_in(request)
    if auditor is not None:
        raise AuditorRefused(auditor)


def anyone_signed_in(request: Request) -> SignedIn | SignedInAuditor | None:
    """A Party's account or an auditor's, signed in to the screen."""
    return signed_in(request) or auditor_signed_in(request)


def _signed_in_or_refused(request: Request) -> SignedIn:
    who = signed_in(request)
    if who is None:
        refuse_auditor(request)
        raise SignInNeeded()
    return who


Who = Annotated[SignedIn, Depends(_signed_in_or_refused)]


def _party_or_auditor(request: Request) -> SignedIn | SignedInAuditor:
    who = anyone_signed_in(request)
    if who is None:
        raise SignInNeeded()
    return who


# the pages an auditor may open too: the Who-looked page and signing out
WhoOrAuditor = Annotated[SignedIn | SignedInAuditor, Depends(_party_or_auditor)]


def checked_form(form: str) -> Callable[..., SignedIn]:
    """A dependency: the signed-in Party, once the `form`'s CSRF token is the session's."""

    def check(request: Request, who: Who, csrf_token: str = Form("")) -> SignedIn:
        _form_checked(request, who, form, csrf_token)
        return who

    return check


def checked_form_of_anyone(form: str) -> Callable[..., SignedIn | SignedInAuditor]:
    """`checked_form` for a form an auditor may send too (signing out)."""

    def check(
        request: Request, who: WhoOrAuditor, csrf_token: str = Form("")
    ) -> SignedIn | SignedInAuditor:
        _form_checked(request, who, form, csrf_token)
        return who

    return check


def _form_checked(
    request: Request, who: SignedIn | SignedInAuditor, form: str, csrf_token: str
) -> None:
    if not sent_from_here(request):
        raise FormExpired(who, FROM_ELSEWHERE)
    if not who.session.csrf_ok(csrf_token):
        raise FormExpired(who, f"The {form} form had expired. Open it again and send it once more.")


SIGN_IN_EXPIRED = (
    "The sign-in form had expired or your browser did not send its cookie. Cookies are "
    "needed to sign in: sign in again here."
)


def sign_in_form_checked(request: Request, csrf_token: str = Form("")) -> bool:
    """Whether the sign-in form's own token is the cookie it was given with (double submit).
    One from another site is refused outright; an expired one gets the form again (a dead end
    that lost the username and the page asked for; audit 25c)."""
    if not sent_from_here(request):
        raise FormExpired(None, FROM_ELSEWHERE)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    return bool(expected) and secrets.compare_digest(expected.encode(), csrf_token.encode())


FROM_ELSEWHERE = (
    "This form was sent from another site, so it was refused. Open the page on servicetrail "
    "itself and send the form from there."
)


def sent_from_here(request: Request) -> bool:
    """Whether the browser says a form came from one of this server's own pages. SameSite=
    Strict keeps the cookies off a post from another site, but not from a sibling host of the
    same site (another subdomain), which can also set the sign-in form's cookie: it could sign
    a victim in to an account of its own. Sec-Fetch-Site is the browser's own word and no
    proxy rewrites it; a browser without it is asked for Origin against the Host it called."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")  # "none": the user's own doing (a bookmark)
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's form post (a script's, whose cookies are its own)
    try:
        sent_from = urlsplit(origin).netloc
    except ValueError:  # `http://[::1`: no browser's; a 500 and a traceback for anyone before
        return False
    return sent_from.lower() == request.headers.get("host", "").lower()


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = {"next": target} if request.method == "GET" and target != "/" else {}
    if request.cookies.get(SESSION_COOKIE):
        query["expired"] = "1"
    response = RedirectResponse(
        "/login" + (f"?{urlencode(query)}" if query else ""), status_code=303
    )
    if request.cookies.get(SESSION_COOKIE):
        drop_cookie(response, request, SESSION_COOKIE)
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    path: str = "/",
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        path=path,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def drop_cookie(response: Response, request: Request, name: str, path: str = "/") -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="strict", secure=_secure(request)
    )
