"""`servicetrail log verify-consistency`: a Party that kept a checkpoint checks, offline, that
a later one extends it. Trees and proofs are made here by the RFC 9162 text (tests/rfc9162),
signed with keys of the test's own, and as the store serves them, on both engines."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from servicetrail.signing import trusted_for
from servicetrail.store.log_proofs import ConsistencyRequest, consistency_document, logs_document
from servicetrail.store.merkle_log import seal_store
from tests import personas as P
from tests import rfc9162
from tests.store.log_fixtures import append, records

NAME, ORIGIN = "servicetrail/sat", "servicetrail/sat/2025-02"
LEAVES = [f'{{"n":{i}}}'.encode() for i in range(13)]


def note(key: Ed25519PrivateKey, leaves: list[bytes], origin: str = ORIGIN) -> tuple[str, str]:
    root = base64.b64encode(rfc9162.mth(leaves)).decode()
    return rfc9162.signed_note(key, NAME, f"{origin}\n{len(leaves)}\n{root}\n")


def files(tmp_path, old: str, new: str, proof: list[bytes]) -> list:
    paths = [tmp_path / "old.note", tmp_path / "new.note", tmp_path / "proof.json"]
    paths[0].write_text(old)
    paths[1].write_text(new)
    encoded = [base64.b64encode(h).decode() for h in proof]
    paths[2].write_text(json.dumps({"proof": encoded}))
    return paths


def check(cli, paths, *keys: str):
    old, new, proof = paths
    return cli(
        "log",
        "verify-consistency",
        old,
        new,
        "--proof",
        proof,
        *sum((["--key", k] for k in keys), []),
    )


def test_an_appended_log_is_consistent_and_a_rewritten_one_is_not(cli, tmp_path):
    key = Ed25519PrivateKey.generate()
    (old, verifier), (new, _) = note(key, LEAVES[:7]), note(key, LEAVES)
    proof = rfc9162.rfc_consistency_proof(7, LEAVES)
    given = files(tmp_path, old, new, proof)
    good = check(cli, given, verifier)
    assert good.exit_code == 0, good.output
    assert good.stdout == f"consistent: {ORIGIN} at 13 leaves extends its tree of 7 leaves\n"
    # --db after the command, as every command takes it (SPEC section 5): the same verdict
    old_path, new_path, proof_path = given
    given_db = cli(
        "log",
        "verify-consistency",
        old_path,
        new_path,
        "--proof",
        proof_path,
        "--key",
        verifier,
        "--db",
        "sqlite:///unused.db",
    )
    assert (given_db.exit_code, given_db.stdout) == (0, good.stdout), given_db.output

    forked = [*LEAVES[:3], b'{"n":"rewritten"}', *LEAVES[4:]]  # an old leaf changed, re-signed
    (rewritten, _) = note(key, forked)
    fork_proof = rfc9162.rfc_consistency_proof(7, forked)
    refused = check(cli, files(tmp_path, old, rewritten, fork_proof), verifier)
    assert refused.exit_code == 1 and "not consistent" in refused.output, refused.output

    bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    assert check(cli, files(tmp_path, old, new, bent), verifier).exit_code == 1
    backwards = check(cli, files(tmp_path, new, old, proof), verifier)
    assert backwards.exit_code == 1 and "fewer than" in backwards.output
    (other_log, _) = note(key, LEAVES, origin="servicetrail/sat/2025-03")
    two_logs = check(cli, files(tmp_path, old, other_log, proof), verifier)
    assert two_logs.exit_code == 1 and "two logs" in two_logs.output
    (_, stranger) = note(Ed25519PrivateKey.generate(), LEAVES)
    assert check(cli, files(tmp_path, old, new, proof), stranger).exit_code == 1


def test_a_proof_asked_between_other_sizes_is_said_to_need_the_checkpoints_sizes(cli, tmp_path):
    """A proof from 5 leaves given for checkpoints of 7 and 13 failed as "too short", as if
    the log had been rewritten (audit 42c): the refusal names the sizes to ask with."""
    key = Ed25519PrivateKey.generate()
    (old, verifier), (new, _) = note(key, LEAVES[:7]), note(key, LEAVES)
    wrong = rfc9162.rfc_consistency_proof(5, LEAVES)
    refused = check(cli, files(tmp_path, old, new, wrong), verifier)
    assert refused.exit_code == 1 and "not consistent" in refused.output
    assert "from=7&to=13" in refused.output, refused.output


def test_a_log_signed_before_and_after_a_key_rotation_needs_both_keys(cli, tmp_path):
    earlier, later = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (old, earlier_key), (new, later_key) = note(earlier, LEAVES[:4]), note(later, LEAVES)
    paths = files(tmp_path, old, new, rfc9162.rfc_consistency_proof(4, LEAVES))
    assert check(cli, paths, earlier_key, later_key).exit_code == 0
    only_later = check(cli, paths, later_key)
    assert only_later.exit_code == 1 and "no signature by the key" in only_later.output


@P.starts_with_personas
def test_checkpoints_kept_from_the_api_check_against_its_consistency_proof(cli, engine, tmp_path):
    P.load_personas(engine)
    seal_store(engine)
    key = cli("log", "key").stdout.strip()
    url = engine.url.render_as_string(hide_password=False)

    def logs_now() -> dict:
        with engine.connect() as conn:
            return logs_document(conn, key, False, lambda listed: trusted_for(url, listed))

    kept = logs_now()
    append(engine, records(5, first=100))  # February's log grows
    seal_store(engine)
    latest = logs_now()
    size = {
        document: next(
            int(log["checkpoint"].split("\n")[1]) for log in d["logs"] if log["origin"] == ORIGIN
        )
        for document, d in (("kept", kept), ("latest", latest))
    }
    assert size["kept"] < size["latest"]
    with engine.connect() as conn:
        proof = consistency_document(
            conn, ConsistencyRequest(ORIGIN, size["kept"], size["latest"]), auditor=False
        )
    paths = [tmp_path / "kept.json", tmp_path / "latest.json", tmp_path / "proof.json"]
    for path, document in zip(paths, (kept, latest, proof)):
        path.write_text(json.dumps(document))
    unnamed = check(cli, paths, key)
    assert unnamed.exit_code == 2 and "--origin" in unnamed.output, unnamed.output
    named = cli(
        "log",
        "verify-consistency",
        *paths[:2],
        "--proof",
        paths[2],
        "--key",
        key,
        "--origin",
        ORIGIN,
    )
    assert named.exit_code == 0, named.output
    assert f"at {size['latest']} leaves extends its tree of {size['kept']}" in named.stdout
    # and as an outside Party checks it, by the RFC's text
    assert rfc9162.rfc_consistency_ok(
        size["kept"],
        size["latest"],
        *(
            rfc9162.check_checkpoint(
                next(log["checkpoint"] for log in d["logs"] if log["origin"] == ORIGIN), key
            )[2]
            for d in (kept, latest)
        ),
        [base64.b64decode(h) for h in proof["proof"]],
    )


def test_unreadable_inputs_are_a_clear_refusal(cli, tmp_path):
    key = Ed25519PrivateKey.generate()
    (old, verifier), (new, _) = note(key, LEAVES[:7]), note(key, LEAVES)
    paths = files(tmp_path, old, new, rfc9162.rfc_consistency_proof(7, LEAVES))
    paths[0].write_text("neither JSON nor a note")
    refused = check(cli, paths, verifier)
    assert refused.exit_code == 2 and "neither JSON nor a signed note" in refused.output
    # named by the argument it was given as (it said "old.txt /tmp/.../old.txt: ...")
    assert f"Error: OLD {paths[0]}: " in refused.output, refused.output
    paths[0].write_text(old)
    paths[2].write_text('{"proof": "AAAA"}')
    assert check(cli, paths, verifier).exit_code == 1
    assert check(cli, paths, "not+a+key").exit_code == 2
