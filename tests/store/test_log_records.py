"""The ingest's fast leaf (orjson, keys placed in order) makes the same bytes as SPEC
section 7's json.dumps encoding of the leaf a stored record gives."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from servicetrail.domain.checkpoint import canonical_json, payload_commitment, record_leaf
from servicetrail.domain.merkle import leaf_hash
from servicetrail.store.log_records import hot_leaf

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(
    kind=TEXT,
    request_id=TEXT,
    srv=st.one_of(st.none(), TEXT),
    user_id=TEXT,
    device_id=TEXT,
    response_code=st.one_of(st.none(), TEXT),
    command_variant=st.one_of(st.none(), st.integers(1, 8)),
    payload=TEXT,
)
def test_the_hot_leaf_is_the_spec_leaf(
    kind, request_id, srv, user_id, device_id, response_code, command_variant, payload
):
    at = "2025-03-01T12:00:00.123456Z"
    salt, hashed = hot_leaf(
        at, kind, request_id, srv, user_id, device_id, response_code, command_variant, payload
    )
    spec = record_leaf(
        at,
        kind,
        request_id,
        srv,
        user_id,
        device_id,
        response_code,
        command_variant,
        payload_commitment(salt, payload),
    )
    assert hashed == leaf_hash(canonical_json(spec))
    assert spec["payload_commitment"] == hashlib.sha256(salt + payload.encode()).hexdigest()


def test_every_record_gets_its_own_salt():
    salts = {
        hot_leaf("t", "request", "r", None, "u", "d", None, None, "")[0] for _ in range(10_000)
    }
    assert len(salts) == 10_000 and all(len(s) == 16 for s in salts)


def test_a_forked_process_draws_its_own_salts():
    import multiprocessing

    hot_leaf("t", "request", "r", None, "u", "d", None, None, "")  # the parent's buffer is full
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        child = pool.apply(_salt_of_a_leaf)
    assert child != hot_leaf("t", "request", "r", None, "u", "d", None, None, "")[0]


def _salt_of_a_leaf() -> bytes:
    return hot_leaf("t", "request", "r", None, "u", "d", None, None, "")[0]
