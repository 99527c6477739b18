"""The page telling an analyst how to check a proof without trusting the server (issue 14
item 2), and the two downloads it needs besides a record's proof: the logs' checkpoints and
a consistency proof between two of them. The API gives both to a token, which only the
operator's command line makes, so an analyst of the screen could not follow the page's
last step (audit 43c); these are the same store calls as `/api/v1/logs` and
`/api/v1/logs/consistency`, over the screen's sign-in. Neither holds a SAT record, so an
auditor may take them too (the access logs' are an auditor's only, as on the API)."""

from __future__ import annotations

import os

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ..domain.checkpoint import NoteError, parse_checkpoint
from ..domain.ids import positive_id
from ..signing import SigningKeyError, trusted_for
from ..store.limits import SearchTooBroad, StoreBusy
from ..store.log_proofs import (
    AuditorsOnly,
    ConsistencyRequest,
    NoConsistency,
    consistency_document,
    logs_document,
)
from .errors import ParameterError
from .fairness import Busy, limits_of, share_of
from .params import tree_size
from .query_guard import nul_in, shows_nul_beside
from .rendering import error_page, render
from .signin import SignedIn, SignedInAuditor, WhoOrAuditor
from .state import reader_of, store_url, verifier_key

router = APIRouter(include_in_schema=False)
MAX_ORIGIN = 200  # as the API's parameter
CONSISTENCY_LABELS = {"origin": "Log", "from": "From size", "to": "To size"}
EXAMPLE_RECORD = 812  # the proof file's name in the page's example, without a record to name


def _share(who: SignedIn | SignedInAuditor) -> str:
    party = None if isinstance(who, SignedInAuditor) else who.viewer.party_id
    return share_of(party, who.session.username)


def _logs(request: Request, who: SignedIn | SignedInAuditor, key: str) -> dict[str, Any]:
    url = store_url(request)
    with limits_of(request).search(_share(who)), reader_of(request) as conn:
        return logs_document(
            conn, key, isinstance(who, SignedInAuditor), lambda listed: trusted_for(url, listed)
        )


def _tree_size(note: str) -> int:
    """A checkpoint's size, as domain.checkpoint reads it (0 for one it cannot read: the
    list is a help to fill in the form, not a check)."""
    try:
        return parse_checkpoint(note)[0].size
    except NoteError:
        return 0


@router.get("/verify")
def how_to_verify(request: Request, who: WhoOrAuditor, record: str = "") -> Response:
    return _verify_page(request, who, record)


def _newest(origins: list[str]) -> str:
    """The log the consistency form offers first: the newest month's, an analyst's usual
    question (the list's order, by origin, put the oldest month first; review 47d). Origins
    end in their month; a SAT log before an access log of the same month."""
    return max(origins, key=lambda origin: (origin[-7:], "/access/" not in origin), default="")


def _common_prefix(origins: list[str]) -> str:
    """What every log's origin begins with, to its last `/` ("servicetrail/sat/"): the list
    names each log by the rest, its month (or access/ and its month). Whole, 42 characters
    with their size were cut off in a phone's select (review of the screen, 54d)."""
    head = os.path.commonprefix(origins).rpartition("/")[0]
    return head + "/" if head else ""


def _verify_page(
    request: Request,
    who: SignedIn | SignedInAuditor,
    record: str = "",
    errors: dict[str, str] | None = None,
    asked: dict[str, str] | None = None,
) -> Response:
    """The page; with `errors`, the consistency form as `asked`, each error by its field."""
    try:
        key = verifier_key(request)
    except SigningKeyError:
        key = ""
    logs: list[tuple[str, int]] | None = []
    try:
        if key:
            listed = _logs(request, who, key)["logs"]
            logs = [(log["origin"], _tree_size(log["checkpoint"])) for log in listed]
    except (Busy, SearchTooBroad, StoreBusy):
        # the page is how to check, which a busy store must not refuse (audit 20a): the
        # form waits for the list
        logs = None
    return render(
        request,
        "verify.html",
        who,
        status=422 if errors else 200,
        errors=errors or {},
        asked=asked or {},
        field_labels=CONSISTENCY_LABELS,
        title="Checking a proof",
        verifier_key=key,
        example_record=positive_id(record[:20]) or EXAMPLE_RECORD,
        logs=logs,
        prefix=_common_prefix([origin for origin, _ in logs or []]),
        chosen=(
            (asked or {}).get("origin")
            if (asked or {}).get("origin") in dict(logs or [])
            else _newest([origin for origin, _ in logs or []])
        ),
    )


def _in_the_screens_words(said: str) -> str:
    """The store's reason, naming the form's fields; its user holds no API token."""
    said = said.replace("GET /api/v1/logs lists them", "the list on /verify names them")
    return said.replace("greater than to", "greater than To size") + "."


def _read_form(
    request: Request, origin: str, from_: str, to: str
) -> ConsistencyRequest | dict[str, str]:
    """The proof asked for, or every field's error, each beside its field: the first alone
    was shown, and with both sizes wrong the To size was told only once the From size was put
    right (review 47j)."""
    refused = nul_in(request, CONSISTENCY_LABELS)
    if refused:
        return {name: _in_the_screens_words(message) for name, message in refused.items()}
    errors, sizes = {}, {}
    if not origin:
        errors["origin"] = "a log's origin, as the list names it, is required"
    elif len(origin) > MAX_ORIGIN:
        errors["origin"] = f"no log's origin is longer than {MAX_ORIGIN}"
    for name, text in (("from", from_), ("to", to)):
        try:
            sizes[name] = tree_size(name, text)
        except ParameterError as e:
            errors[name] = e.message
    if errors:
        return {name: _in_the_screens_words(message) for name, message in errors.items()}
    return ConsistencyRequest(origin, sizes["from"], sizes["to"])


def _attachment(document: dict[str, Any], name: str) -> JSONResponse:
    return JSONResponse(document, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/verify/logs.json")
def logs_download(request: Request, who: WhoOrAuditor) -> Response:
    """Every log's newest checkpoint and the verifier keys, as `/api/v1/logs` gives them; the
    file is named by the time it was taken, so that an older one is not overwritten."""
    try:
        document = _logs(request, who, verifier_key(request))
    except SigningKeyError as e:
        return error_page(request, who, 409, "No checkpoints yet", f"{e}.")
    taken = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return _attachment(document, f"logs-{taken}.json")


@router.get("/verify/consistency.json")
@shows_nul_beside(*CONSISTENCY_LABELS)
def consistency_download(
    request: Request,
    who: WhoOrAuditor,
    origin: str = "",
    from_: str = Query("", alias="from"),
    to: str = "",
) -> Response:
    """A consistency proof from tree size `from` to the checkpointed size `to` of a log, as
    `/api/v1/logs/consistency` gives it."""
    asked = {"origin": origin[:MAX_ORIGIN], "from": from_[:20], "to": to[:20]}
    wanted = _read_form(request, origin, from_, to)
    if not isinstance(wanted, ConsistencyRequest):
        return _verify_page(request, who, errors=wanted, asked=asked)
    try:
        with limits_of(request).search(_share(who)), reader_of(request) as conn:
            document = consistency_document(conn, wanted, auditor=isinstance(who, SignedInAuditor))
    except NoConsistency as e:
        # beside its field, the form as filled in: a page of its own lost the sizes typed,
        # and its one way on was the search (review of the screen, 47d)
        errors = {e.parameter: _in_the_screens_words(str(e))}
        return _verify_page(request, who, errors=errors, asked=asked)
    except AuditorsOnly as e:
        return error_page(
            request, who, 403, "No consistency proof", f"{e.message[:1].upper()}{e.message[1:]}."
        )
    return _attachment(document, f"consistency-{wanted.old_size}-{wanted.new_size}.json")
