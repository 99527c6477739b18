"""Signing in to the screen and out of it."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated
from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.engine import Engine
from fastapi.responses import RedirectResponse, Response

from ..security import MAX_PASSWORD_LENGTH
from ..store import sessions
from ..store.accounts import (
    StoredPassword,
    is_auditor,
    kept_current,
    party_of,
    password_matches,
    stored_password,
)
from ..store.engine import reading
from .client_address import client_key
from .fairness import share_of
from .presenters import safe_next
from .rendering import render
from .signin import (
    DEVICE_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    anyone_signed_in,
    checked_form_of_anyone,
    drop_cookie,
    set_cookie,
    SIGN_IN_EXPIRED,
    sign_in_form_checked,
)
from .state import (
    engine_of,
    seen_credentials,
    sign_in_lanes,
    sign_in_pace,
    sign_in_successes,
    sign_in_turns,
)

MAX_USERNAME = 64
LANE_RETRY_SECONDS = 5
STRANGERS_TURNS = "strangers:"  # no Party ID has a colon (fairness.share_of)

router = APIRouter(include_in_schema=False)


def login_page(
    request: Request,
    *,
    status: int = 200,
    error: str = "",
    notice: str = "",
    username: str = "",
    next_path: str = "/",
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in form, with a fresh double-submit token unless the browser holds a good one."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", token):
        token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status=status,
        title="Sign in",
        login_token=token,
        error=error,
        notice=notice,
        username=username,
        next_path=next_path,
        headers=headers,
    )
    set_cookie(response, request, LOGIN_COOKIE, token, path="/login", max_age=3600)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    who = anyone_signed_in(request)
    if who is not None:
        target = safe_next(request.query_params.get("next"))
        if who.auditor:
            target = _auditors_page(target)
        return RedirectResponse(target, status_code=303)
    notice = (
        "You have signed out."
        if request.query_params.get("signed_out")
        else "Your session has ended. Sign in again to continue."
        if request.query_params.get("expired")
        else ""
    )
    return login_page(request, notice=notice, next_path=safe_next(request.query_params.get("next")))


def _paused(request: Request, until: datetime, username: str, next_path: str) -> Response:
    minutes = max(1, -(-int((until - sessions.now_utc()).total_seconds()) // 60))
    return login_page(
        request,
        status=429,
        username=username,
        next_path=next_path,
        headers={"Retry-After": str(minutes * 60)},
        error=f"Too many sign-in attempts for this username or from your network. "
        f"Sign-in is paused: try again in {minutes} minute{'s' if minutes != 1 else ''}.",
    )


def _client(request: Request) -> str:
    """The client as the server's other limits count it: one host is given a whole IPv6 /64,
    and guessed on without end an address a try (audit 26c)."""
    return client_key(request.client.host) if request.client else "unknown"


@router.post("/login")
def login(
    request: Request,
    form_good: Annotated[bool, Depends(sign_in_form_checked)],
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),  # noqa: A002
) -> Response:
    # no account's name holds a NUL, and PostgreSQL's text cannot: a stand-in keeps the attempt
    # an ordinary failed one (throttled and all) instead of an error in the store
    username = username.strip()[:MAX_USERNAME].replace("\x00", "\ufffd")
    next_path = safe_next(next)
    if not form_good:  # no attempt: the form again, with a token that holds
        return login_page(
            request, status=403, username=username, next_path=next_path, error=SIGN_IN_EXPIRED
        )
    claim = _attempt_claimed(request, username, next_path)
    if isinstance(claim, Response):
        return claim
    engine = engine_of(request)
    verified = _verified_in_a_lane(request, claim, username, password, next_path)
    if isinstance(verified, Response):
        return verified
    session_id = device_token = None
    if verified is not None and _auditor(engine, verified.username):
        # the screen's one page for an auditor: any other would answer 403
        next_path = _auditors_page(next_path)
    if verified is not None:
        username, password_hash = verified.username, verified.hash  # as created, not as typed
        with engine.begin() as conn:
            # None: the password was changed or the account disabled since it was checked
            session_id = sessions.create_session(conn, username, password_hash)
            if session_id is not None:
                sessions.forgive(conn, claim)
                sessions.delete_session(conn, request.cookies.get(SESSION_COOKIE))  # no reuse
                trusted = claim.trusted_device
                device_token = None if trusted else sessions.remember_device(conn, username)
    if session_id is None:  # the claim stays, as a failure
        return login_page(
            request,
            status=401,
            username=username,
            next_path=next_path,
            error="Wrong username or password.",
        )
    return _signed_in(request, next_path, session_id, device_token)


def _attempt_claimed(request: Request, username: str, next_path: str) -> sessions.Claim | Response:
    """The attempt's place, claimed before its password is verified (see store.sessions), or
    the page saying sign-in is paused."""
    engine = engine_of(request)
    with engine.begin() as conn:
        sessions.purge_expired(conn)
    claim = sessions.claim_attempt(
        engine, username, _client(request), request.cookies.get(DEVICE_COOKIE)
    )
    if claim.refused_until is not None:
        return _paused(request, claim.refused_until, username, next_path)
    # paced by the claim's key, as failures are (its trusted browser, else its address), and
    # only what would be verified: by username alone, or counting refused attempts, a
    # stranger's attempts spent a User's sign-ins and locked the User out (review 27e)
    wait = sign_in_successes(request).wait_for(claim.username, count=False) or sign_in_pace(
        request
    ).wait_for(f"{claim.username} {claim.key}")
    if wait > 0:
        with engine.begin() as conn:
            sessions.withdraw(conn, claim)
        return _paused(request, sessions.now_utc() + timedelta(seconds=wait), username, next_path)
    return claim


def _verified_in_a_lane(
    request: Request, claim: sessions.Claim, username: str, password: str, next_path: str
) -> StoredPassword | None | Response:
    """_verified_password in one of the sign-in lanes (state.SignInLanes) and at its turn to
    be hashed (web.hashing_turns), both its Party's when its browser is trusted; or, with no
    lane free for it, the page saying to try again in a moment (the claim counted against
    the address, not the username: sessions.count_for_the_address). The account is read
    first: no connection is held while its password is verified."""
    if not (username and password and len(password) <= MAX_PASSWORD_LENGTH):
        return None  # nothing to verify: wrong, at no cost
    with reading(engine_of(request)) as conn:
        stored = stored_password(conn, username)
        party = (
            # the account's own browser, which no stranger holds: so whose it is tells no
            # one whether a name typed is an account's
            share_of(party_of(conn, stored.username), stored.username)
            if claim.trusted_device and stored is not None
            else None
        )
    # a stranger's attempt holds its address's lanes, and is hashed in turn with every other
    # stranger's: from many addresses they were as many Parties, and another Party's User
    # waited for each (session 63g)
    whose, turns = (party, party) if party is not None else (claim.key, STRANGERS_TURNS)
    with sign_in_lanes(request).lane(claim.trusted_device, whose) as admitted:
        if admitted:
            return sign_in_turns(request).run(
                turns, lambda: _verified_password(request, stored, password)
            )
    with engine_of(request).begin() as conn:
        sessions.count_for_the_address(conn, claim)
    return login_page(
        request,
        status=429,
        username=username,
        next_path=next_path,
        headers={"Retry-After": str(LANE_RETRY_SECONDS)},
        error="Many sign-ins are being checked at this moment. Try again in a few seconds.",
    )


def _verified_password(
    request: Request, stored: StoredPassword | None, password: str
) -> StoredPassword | None:
    """The account as stored if the password is its own (an unknown one's verified as
    slowly), a success counted for the username's pace of successful sign-ins; its hash made
    again if it was stored under older argon2 parameters (accounts.kept_current)."""
    if password_matches(stored, password) is None or stored is None:
        return None
    sign_in_successes(request).count(sessions.normal_username(stored.username))
    return kept_current(engine_of(request), stored, password)


ACCESS_LOG_PAGE = "/access-log"


def _auditors_page(asked: str) -> str:
    """Where an auditor goes after signing in: the Who-looked page it asked for (with its
    query), else that page; any other would answer 403."""
    return (
        asked
        if asked == ACCESS_LOG_PAGE or asked.startswith(ACCESS_LOG_PAGE + "?")
        else ACCESS_LOG_PAGE
    )


def _auditor(engine: Engine, username: str) -> bool:
    with reading(engine) as conn:
        return is_auditor(conn, username)


def _signed_in(
    request: Request, next_path: str, session_id: str, device_token: str | None
) -> Response:
    response = RedirectResponse(next_path, status_code=303)
    set_cookie(response, request, SESSION_COOKIE, session_id)
    if device_token is not None:
        lifetime = int(sessions.DEVICE_LIFETIME.total_seconds())
        set_cookie(response, request, DEVICE_COOKIE, device_token, "/login", lifetime)
    drop_cookie(response, request, LOGIN_COOKIE, path="/login")
    return response


@router.get("/logout")
def logout_form(request: Request) -> Response:
    """Someone who types /logout gets a button (signing out changes state, so it is a POST)."""
    who = anyone_signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "logout.html", who, title="Sign out")


@router.post("/logout", dependencies=[Depends(checked_form_of_anyone("sign-out"))])
def logout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    with engine_of(request).begin() as conn:
        sessions.delete_session(conn, cookie)
    if cookie:
        seen_credentials(request).forget(cookie)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    drop_cookie(response, request, SESSION_COOKIE)
    return response
