"""SPEC section 7's promise to a titles-only viewer, as a property on both engines: an MP141
viewer's proof of any record never holds the payload or the salt, while the sender's own
proof lets it open the payload commitment (and both proofs verify independently)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from servicetrail import signing
from servicetrail.domain.model import SatRecord
from servicetrail.store.log_proofs import record_proof
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.queries import viewer_for
from servicetrail.store.schema import sat_record
from servicetrail.store.writer import append_records
from tests import personas as P
from tests import rfc9162

PAYLOADS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=200,
).map(lambda body: f"<secret>{body}</secret>")
KINDS = st.sampled_from(["request", "response", "acknowledgement"])
counter = itertools.count(1)


def visible_to_both(payload: str, kind: str, minutes: int) -> SatRecord:
    """LOOKER's message to ESME-1 after the change of supplier: LOOKER's own, and titles only
    (MP141) for SOUTHENERGY, its Responsible Supplier then."""
    number = next(counter)
    return SatRecord(
        logged_at=P.CHANGE_OF_SUPPLIER + timedelta(days=20, minutes=minutes),
        kind=kind,
        request_id=f"{P.LK_OU}:{P.ESME_1}:{500000 + number}",
        srv="4.1.1",
        user_id=P.LK_OU,
        device_id=P.ESME_1,
        response_code="I0" if kind == "response" else "",
        payload=payload,
    )


def verify(document: dict, key: str) -> None:
    _, size, root = rfc9162.check_checkpoint(document["checkpoint"], key)
    leaf_hash = rfc9162.sha256(b"\x00" + rfc9162.canonical(document["leaf"]))
    proof = [base64.b64decode(h) for h in document["inclusion"]]
    assert rfc9162.rfc_inclusion_ok(document["leaf_index"], size, leaf_hash, proof, root)


@settings(
    max_examples=25,
    deadline=None,
    # the persona world is loaded once for all of a test's examples (one call to Hypothesis)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(payload=PAYLOADS, kind=KINDS, minutes=st.integers(0, 60 * 24 * 5))
def test_titles_only_proofs_hide_payload_and_salt_and_own_proofs_open_the_commitment(
    engine, world, payload, kind, minutes
):
    record = visible_to_both(payload, kind, minutes)
    with engine.begin() as conn:
        append_records(conn, [record])
        record_id = conn.execute(
            select(sat_record.c.id).where(sat_record.c.request_id == record.request_id)
        ).scalar_one()
    seal_store(engine)
    key = signing.signer_for(str(engine.url)).verifier_key
    with engine.connect() as conn:
        titles = record_proof(conn, viewer_for(conn, P.SOUTHENERGY), record_id)
        own = record_proof(conn, viewer_for(conn, P.LOOKER), record_id)
    assert titles is not None and own is not None
    verify(titles, key)
    verify(own, key)
    salt = bytes.fromhex(own["payload_salt"])
    shown = json.dumps(titles, ensure_ascii=False)
    assert "payload_salt" not in titles
    assert payload not in shown and json.dumps(payload)[1:-1] not in shown
    assert salt.hex() not in shown and base64.b64encode(salt).decode() not in shown
    assert hashlib.sha256(salt + payload.encode()).hexdigest() == own["leaf"]["payload_commitment"]
    assert titles["leaf"] == own["leaf"]
