"""The verifiable logs on the screen (SPEC section 7, issue 14 item 2): a record page's
"verified" mark, its proof as a download, and a page telling an analyst how to check a
proof without trusting the server.

The mark is the check a Party's own tools make offline (domain.proof_document), made here
against the store's current verifier key: it says the record is a leaf of a signed log, and
the download lets anyone repeat the check with the key they trust.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ..domain.checkpoint import NoteError, parse_verifier_key
from ..domain.merkle import ProofError
from ..domain.proof_document import verify_proof_document
from ..signing import SigningKeyError, ed25519_check, trusted_for
from ..store.log_proofs import NotInLog, NotSealed
from ..store.logged_reads import LoggedRead, logged_read
from .fairness import limits_of
from .params import record_id_or_404
from .rendering import error_page
from .signin import Who, web_reader
from .state import reader_of, store_url, verifier_key

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class ProofMark:
    """What the record page says of the record's place in the logs."""

    state: str  # "verified", "pending" (not yet in a signed checkpoint) or "failed"
    origin: str = ""
    leaf_index: int = 0
    tree_size: int = 0
    problem: str = ""
    earlier_key: str = ""  # the verifier key that signed it, when not the current one


def proof_mark(request: Request, read: LoggedRead, record_id: int) -> ProofMark:
    """The record's proof, checked as a Party would check it (the record was read already):
    with the current verifier key, or, for a log not signed since the key was rotated, with
    an earlier key of the store's (named on the page, as /api/v1/logs lists them)."""
    try:
        document = read.proof_of(record_id)
    except NotSealed:
        return ProofMark("pending")
    except NotInLog as e:  # or its log is not whole (LogNotWhole)
        return ProofMark("failed", problem=e.message)
    if document is None:
        return ProofMark("pending")
    try:
        current = verifier_key(request)
    except SigningKeyError as e:
        return ProofMark("failed", problem=str(e))
    problems: list[Exception] = []
    for key in _current_then_earlier(request, read, current):
        try:
            verified = verify_proof_document(document, parse_verifier_key(key), ed25519_check)
        except (NoteError, ProofError) as e:
            problems.append(e)
            continue
        earlier = "" if key == current else key
        return ProofMark(
            "verified", verified.origin, verified.leaf_index, verified.tree_size, "", earlier
        )
    # the proof's own failure if some key's signature held, else the current key's refusal
    said = next((e for e in problems if isinstance(e, ProofError)), problems[0])
    return ProofMark("failed", problem=str(said))


def _current_then_earlier(request: Request, read: LoggedRead, current: str) -> Iterator[str]:
    """The current key, then the earlier ones the store lists that are trusted beside the
    signing key (signing.trusted_keys), as /api/v1/logs publishes them."""
    yield current
    listed = read.verifier_keys()
    trusted = trusted_for(store_url(request), listed)
    yield from (key for key in listed if key != current and (trusted is None or key in trusted))


@router.get("/records/{record_id}/proof.json")
def proof_download(request: Request, who: Who, record_id: str) -> Response:
    wanted = record_id_or_404(record_id)
    filters: dict[str, Any] = {"record_id": wanted}
    with (
        limits_of(request).search(who.viewer.party_id),
        reader_of(request) as conn,
        logged_read(conn, who.viewer, web_reader(who), "proof", filters) as read,
    ):
        # a refusal is logged too (nothing returned), as a 404 is: it says the record exists
        refusal = ""
        try:
            document = read.proof_of(wanted)
        except (NotSealed, NotInLog) as e:
            refusal = e.message  # the API's words, as a sentence
    if refusal:  # a page, as every refusal of the screen (it answered JSON: audit 23b)
        sentence = refusal[:1].upper() + refusal[1:] + "."
        return error_page(request, who, 409, "No proof to download", sentence)
    if document is None:
        raise HTTPException(404)
    disposition = f'attachment; filename="record-{wanted}-proof.json"'
    return JSONResponse(document, headers={"Content-Disposition": disposition})


@router.get("/records/{record_id}/payload")
def payload_download(request: Request, who: Who, record_id: str) -> Response:
    """An own record's payload exactly as stored, the bytes a proof's payload_commitment is
    over (`log verify-proof --payload FILE`): the page shows it laid out for reading. A record
    that is not the viewer's own is 404, like a missing one."""
    wanted = record_id_or_404(record_id)
    # SPEC 8's actions have no name for it: the filters say the payload itself was taken
    # away, which an auditor must tell from a look at the record's page (audit 43c)
    filters: dict[str, Any] = {"record_id": wanted, "download": "payload"}
    with (
        limits_of(request).search(who.viewer.party_id),
        reader_of(request) as conn,
        logged_read(conn, who.viewer, web_reader(who), "record", filters) as read,
    ):
        found = read.get_own(wanted)
    if found is None:
        # the same words for another User's record and a missing one (which to say would
        # tell them apart); "no record or page here that you can see" was untrue of a title
        # the Party sees on the record's page (review of the screen, 55e)
        return error_page(
            request,
            who,
            404,
            "No payload to download",
            "A payload is downloaded only from your own records: another User’s message "
            "shows its title alone, and a record you may not see is not found at all.",
            again=f"/records/{wanted}",
            again_label=f"Open record {wanted}",
        )
    payload = found["payload"]
    kind = "xml" if payload.lstrip().startswith("<") else "txt"
    disposition = f'attachment; filename="record-{wanted}-payload.{kind}"'
    return Response(
        payload.encode("utf-8"),
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition},
    )
