"""The verifiable logs over HTTP (SPEC section 7): a record's proof, the logs' checkpoints and
verifier keys, and consistency proofs. Thin: the store decides, through the rule."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from ..domain.ids import MAX_ID
from ..signing import trusted_for
from ..store.log_proofs import (
    AuditorsOnly,
    ConsistencyRequest,
    NoConsistency,
    NotInLog,
    NotSealed,
    consistency_document,
    logs_document,
)
from ..store.accounts import TokenHolder
from ..store.logged_reads import logged_read
from .api import ERRORS, AccountDep, ViewerDep, api_reader
from .errors import NOT_FOUND, ParameterError
from .fairness import limits_of, share_of
from .param_schemas import NOT_BLANK_SCHEMA, whole_number_schema
from .params import RecordId, asked, record_id_or_404, tree_size
from .schemas import Consistency, Error, Logs, Proof
from .state import reader_of, store_url, verifier_key

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get(
    "/records/{record_id}/proof",
    response_model=None,
    responses={
        200: {"model": Proof},
        404: {"model": Error, "description": "no such record"},
        409: {"model": Error, "description": "not yet sealed, or not in its log"},
    },
)
def proof(request: Request, viewer: ViewerDep, record_id: RecordId) -> JSONResponse:
    """The record's leaf, its inclusion proof and the signed checkpoint it leads to; with
    `payload_salt` only for your own record. A record you may not see is 404, like a missing one."""
    wanted = record_id_or_404(record_id)
    reader, filters = api_reader(request, viewer), asked(request, record_id=wanted)
    refused: JSONResponse | None = None
    with (
        limits_of(request).search(viewer.party_id),
        reader_of(request) as conn,
        logged_read(conn, viewer, reader, "proof", filters) as read,
    ):
        # a refusal is logged too (nothing returned), as a 404 is: it says the record exists
        try:
            document = read.proof_of(wanted)
        except NotSealed:
            refused = JSONResponse(
                {"error": "not_sealed", "message": NotSealed.message},
                status_code=409,
            )
        except NotInLog as e:  # or its log is not whole (LogNotWhole)
            refused = JSONResponse({"error": "not_in_log", "message": e.message}, status_code=409)
    if refused is not None:
        return refused
    if document is None:
        return JSONResponse(NOT_FOUND, status_code=404)
    return JSONResponse(document)


@router.get("/logs", response_model=None, responses={200: {"model": Logs}})
def logs(request: Request, account: AccountDep) -> JSONResponse:
    """Every log's newest checkpoint, the current verifier key and every earlier one. No SAT
    record is in it, so an auditor may read it too (to check the access log's entries); the
    access logs' checkpoints are the auditor's only (store.log_proofs.logs_document)."""
    key, url = verifier_key(request), store_url(request)
    with limits_of(request).search(_share(account)), reader_of(request) as conn:
        document = logs_document(
            conn, key, account.viewer is None, lambda listed: trusted_for(url, listed)
        )
        return JSONResponse(document)


def _share(account: TokenHolder) -> str:
    return share_of(account.viewer.party_id if account.viewer else None, account.username)


@router.get(
    "/logs/consistency",
    response_model=None,
    responses={
        200: {"model": Consistency},
        403: {"model": Error, "description": "an access log's proof asked by a Party's token"},
    },
)
def consistency(
    request: Request,
    account: AccountDep,
    origin: Annotated[
        str,
        Query(
            max_length=200,
            description="a log's origin, as /logs lists",
            # "" is refused ("is required"), where the other texts' empty value is not given
            json_schema_extra={**NOT_BLANK_SCHEMA, "minLength": 1},
        ),
    ],
    from_: Annotated[
        str,
        Query(
            alias="from",
            max_length=20,
            description="the smaller tree size, 1 at least",
            json_schema_extra=whole_number_schema(1, MAX_ID),
        ),
    ],
    to: Annotated[
        str,
        Query(
            max_length=20,
            description="a checkpointed tree size of the log, `from` at least",
            json_schema_extra=whole_number_schema(1, MAX_ID),
        ),
    ],
) -> Any:
    """A consistency proof (RFC 9162 2.1.4) from tree size `from` to the checkpointed size `to`.
    An access log's are an auditor's only (403 for a Party's token): its leaves are every
    Party's reads, and commit to no secret."""
    if not origin:
        raise ParameterError("origin", "is required")
    wanted = ConsistencyRequest(origin, tree_size("from", from_), tree_size("to", to))
    with limits_of(request).search(_share(account)), reader_of(request) as conn:
        try:
            return JSONResponse(consistency_document(conn, wanted, auditor=account.viewer is None))
        except NoConsistency as e:
            raise ParameterError(e.parameter, str(e)) from None
        except AuditorsOnly as e:
            raise HTTPException(403, e.message) from None
