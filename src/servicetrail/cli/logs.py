"""`servicetrail log key|verify|retirements|verify-proof|verify-consistency` (SPEC section 7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..domain.checkpoint import SIGNATURE_DASH, NoteError, parse_checkpoint, parse_verifier_key
from ..domain.merkle import ProofError
from ..domain.records import MAX_PAYLOAD_CHARS
from ..domain.proof_document import (
    parse_proof_document,
    verify_consistency_document,
    verify_proof_document,
)
from ..signing import (
    SigningKeyError,
    ed25519_check,
    key_path_for,
    log_prefix,
    signer_for,
    trust_file,
    trust_file_unmade,
    trusted_for,
)
from ..output import write_jsonl
from ..store.log_audit import audit, derived_field_findings
from ..store.log_retirement import listed_retirements, verifiers_of
from ..store.log_tree import listed_verifier_keys
from ..store.log_kept import kept_checkpoints
from ..ingest.sources import regular_file
from .commands import group
from .common import Failure, printable, unused_db_option
from ..store.engine import StoreBehind
from .store_access import engine, store_url, with_db


@group("log")
def log_group() -> None:
    """The trail's verifiable logs: the verifier key, the server-side audit, offline proofs."""


@log_group.command("key")
@with_db
def key_cmd() -> None:
    """Print the current verifier key alone on one line (the signing key is made on first use)."""
    # the store's rules as for any command (SPEC section 5): made if new, not if old
    known = listed_verifier_keys(engine())
    key = key_path_for(store_url())
    made_now = not key.is_file()
    try:
        verifier_key = signer_for(store_url()).verifier_key  # made on first use (SPEC 7)
    except SigningKeyError as e:
        raise Failure(str(e)) from None
    click.echo(verifier_key)
    if known and verifier_key not in known:
        # a key made or taken here that the store never signed with was printed as the
        # current one without a word, to be published (audit 44d): said, as a rotation is
        made = f"made a new signing key at {key}" if made_now else f"the signing key at {key}"
        click.echo(
            f"note: {made}, which has not signed in this store yet ({len(known)} other key(s) "
            "have): a rotation signs with it from the next seal on; else "
            "SERVICETRAIL_SIGNING_KEY names the wrong file (PostgreSQL's default is the "
            "working folder's), or SERVICETRAIL_LOG_ORIGIN changed (a key is named for it)",
            err=True,
        )


_ALSO_TRUSTED = click.option(
    "--key",
    "also_trusted",
    multiple=True,
    help="Also trust checkpoints and retirements signed by this verifier key (an earlier key "
    "you kept); repeatable. The keys trusted already are the signing key's and those in its "
    "trust file (<key file>.verifiers).",
)


@log_group.command("verify")
@_ALSO_TRUSTED
@click.option(
    "--checkpoints",
    "kept_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Checkpoints you kept (the JSON of /api/v1/logs or of a proof, or a list of them): "
    "each log must still hold their leaves and roots. Repeatable.",
)
@with_db
def verify_cmd(also_trusted: tuple[str, ...], kept_files: tuple[Path, ...]) -> None:
    """Recompute every leaf from the stored records and every root, and check every
    checkpoint's signature, by a trusted key: one line per finding, exit 1 if any.

    \b
    record <id> changed|removed|added          a SAT record (SPEC section 7)
    access-entry <id> changed|removed|added    an access-log entry (SPEC section 8)
    log <origin> ...                           a log's own damage: a missing leaf, a tile
                                               or checkpoint that does not match its
                                               leaves, a signature that does not verify
                                               or is by a key not trusted, fewer leaves
                                               than a checkpoint you kept"""
    listed, trusted = _trusted_keys(also_trusted, "verify")
    notes = [note for path in kept_files for note in _notes_in(path, "--checkpoints")]
    kept = kept_checkpoints(notes, log_prefix(), set(listed) if trusted is None else trusted)
    result = audit(engine(), log_prefix(), trusted, kept=kept)
    # the DUIS reader (lxml) only here, where stored payloads are read again: `log key` and
    # the offline proofs' checks imported it, some 10 ms of a start's CPU, for nothing
    from ..ingest.duis import derived_fields

    result.findings += derived_field_findings(engine(), derived_fields, result.findings)
    for finding in result.findings:
        click.echo(printable(finding))  # it may quote a stored origin that is not UTF-8
    for note in result.notes:
        click.echo(f"note: {printable(note)}", err=True)
    click.echo(
        f"checked {result.entries} entries and {result.checkpoints} checkpoints: "
        f"{len(result.findings) or 'no'} finding(s)",
        err=True,
    )
    if result.findings:
        raise SystemExit(1)


@log_group.command("retirements")
@_ALSO_TRUSTED
@with_db
def retirements_cmd(also_trusted: tuple[str, ...]) -> None:
    """Every retired log (its month dropped by retention, its last checkpoint kept), newest
    month first, one JSON object a line: origin, month, how its records went (retention;
    by_hand: dropped by hand before the retention that retired the log; not_recorded: retired
    before servicetrail signed how), retired_at, its last size and root (null when no note
    says), and verified: whether a trusted key signed it, as `log verify` asks."""
    listed, trusted = _trusted_keys(also_trusted, "retirements")
    verifiers = verifiers_of(set(listed) if trusted is None else trusted)
    with engine().connect() as conn:
        retired = listed_retirements(conn, log_prefix(), verifiers)
    write_jsonl(retired, sys.stdout)
    click.echo(f"{len(retired)} retired log(s)", err=True)


def _trusted_keys(also_trusted: tuple[str, ...], command: str) -> tuple[list[str], set[str] | None]:
    """The verifier keys the store lists, and those trusted (None: no signing key or trust
    file, and no --key: the store's, said on standard error): the signing key's, those of
    its trust file, and `also_trusted`, each checked."""
    for given in also_trusted:
        try:
            parse_verifier_key(given)
        except NoteError as e:
            raise Failure(f"--key {given!r}: {e}") from None
    try:
        listed = listed_verifier_keys(engine())
    except StoreBehind as e:
        # said to an auditor, whose work is to leave the store as it is: "run db upgrade
        # first" told them to change it (audit 48d). The logs are read only as this version
        # keeps them (a leaf's fields, the retirements' signatures): an older schema's are
        # not verified here, which a copy upgraded allows
        raise Failure(
            f"the store's schema is at revision {e.revision}, older than this servicetrail's "
            f"{e.head}, and `log {command}` reads only a store at {e.head}; to read it without "
            "changing it, verify an upgraded copy: copy it (SQLite: the file, as `sqlite3 "
            "STORE '.backup COPY'` writes it; PostgreSQL: `createdb -T` or a restored dump), "
            f"then 'servicetrail --db COPY db upgrade' and 'servicetrail --db COPY log {command}' "
            f"(or run the `log {command}` of the servicetrail that made revision {e.revision})"
        ) from None
    trusted = trusted_for(store_url(), listed)
    if trusted is None and not also_trusted:
        click.echo(
            f"no signing key or trust file at {key_path_for(store_url())}: signatures are "
            "checked against the keys the store lists, which whoever can write the store can "
            "add to (give the keys you trust with --key)",
            err=True,
        )
    else:
        trusted = (trusted or set()) | set(also_trusted)
    key = key_path_for(store_url())
    if trust_file_unmade(key):
        click.echo(
            f"the trust file {trust_file(key)} could not be made beside the signing key: the "
            "keys the store lists are trusted as they stand, which whoever can write the store "
            "can add to (create the file with the keys you trust, a line each)",
            err=True,
        )
    return listed, trusted


# A proof of a log of 2^64 leaves holds 64 hashes (3 KB with its checkpoint); an auditor's
# kept checkpoints are some hundreds of bytes a log a day. A file of 140 MB was read whole
# (480 MB of memory, 5 s) to be refused (audit 27a).
PROOF_BYTES = 1 << 20
KEPT_BYTES = 64 << 20
# the largest payload a store holds, in UTF-8 (4 bytes a character at most): a 200 MB file was
# read whole, 688 MB of memory, to fail its commitment (audit 37e)
PAYLOAD_BYTES = 4 * MAX_PAYLOAD_CHARS


def _read_at_most(path: Path, limit: int, given_as: str, code: int = 2) -> bytes:
    """The file's bytes; `code` is the exit of one over `limit` (1 where it is the document
    checked: it does not verify)."""
    regular_file(path)  # a pipe would be waited on for ever
    with path.open("rb") as file:
        raw = file.read(limit + 1)
    if len(raw) > limit:
        raise Failure(
            f"{given_as} {path}: over {limit >> 20} MiB, more than this command reads", code
        )
    return raw


def _payload_in(path: Path) -> str:
    raw = _read_at_most(path, PAYLOAD_BYTES, "--payload", 1)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProofError(
            f"--payload {path} is not UTF-8 (byte {e.start}), and every stored payload is"
        ) from None


def _notes_in(path: Path, given_as: str) -> list[str]:
    """The signed checkpoints in a kept file: a signed note as it is, or a JSON document,
    /api/v1/logs's `logs`, a proof's `checkpoint`, or a list of such documents or of notes."""
    raw = _read_at_most(path, KEPT_BYTES, given_as)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as e:
        text = raw.decode("utf-8", errors="replace")
        if f"\n\n{SIGNATURE_DASH} " in text:
            return [text]
        raise Failure(
            f"{given_as} {path}: neither JSON nor a signed note ({type(e).__name__})"
        ) from None
    found: list[str] = []
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            pending.extend(reversed(item))
        elif isinstance(item, dict):
            if isinstance(item.get("checkpoint"), str):
                found.append(item["checkpoint"])
            if isinstance(item.get("logs"), list):
                pending.extend(reversed(item["logs"]))
    if not found:
        raise Failure(f"{given_as} {path}: no checkpoint in it")
    return found


@log_group.command("verify-proof")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "verifier_key", required=True, help="The verifier key to trust.")
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own record's payload, to check against the leaf's commitment (needs payload_salt).",
)
@unused_db_option
def verify_proof_cmd(file: Path, verifier_key: str, payload_file: Path | None) -> None:
    """Check a proof document (as GET /api/v1/records/{id}/proof returns it) offline: exit 0
    if it holds, 1 with the reason if not."""
    try:
        verifier = parse_verifier_key(verifier_key)
    except NoteError as e:
        raise Failure(f"--key: {e}") from None
    for given in (file, payload_file):
        if given is not None:
            regular_file(given)  # a pipe would be waited on for ever
    try:
        document = parse_proof_document(_read_at_most(file, PROOF_BYTES, "the proof", 1))
        # the payload's bytes as they are: read as text, a CRLF became LF and a genuine
        # payload failed its commitment
        payload = _payload_in(payload_file) if payload_file else None
        verified = verify_proof_document(document, verifier, ed25519_check, payload)
    except (ValueError, NoteError, ProofError) as e:  # JSONDecodeError is a ValueError
        raise Failure(f"the proof does not verify: {e}", 1) from None
    except RecursionError:  # JSON nested deeper than Python's parser goes
        raise Failure("the proof does not verify: its JSON is nested too deeply", 1) from None
    payload_note = "; the payload matches its commitment" if verified.payload_checked else ""
    click.echo(
        f"verified: leaf {verified.leaf_index} of {verified.origin} is in its tree of "
        f"{verified.tree_size} leaves, signed by {verifier.name}{payload_note}"
    )
    # what was proven, which the line above never said (audit 43c); as JSON, so that nothing
    # a leaf holds can act on the terminal
    leaf = {name: value for name, value in document["leaf"].items() if name != "v"}
    click.echo(f"the leaf: {json.dumps(leaf, ensure_ascii=True)}")


@log_group.command("verify-consistency")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--proof",
    "proof_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The answer of /api/v1/logs/consistency?origin=&from=OLD's size&to=NEW's size.",
)
@click.option(
    "--key",
    "given_keys",
    required=True,
    multiple=True,
    help="A verifier key to trust; repeatable (an earlier key signed checkpoints made before "
    "it was rotated).",
)
@click.option("--origin", help="The log, when OLD or NEW holds checkpoints of several.")
@unused_db_option
def verify_consistency_cmd(
    old: Path, new: Path, proof_file: Path, given_keys: tuple[str, ...], origin: str | None
) -> None:
    """Check offline that NEW's checkpoint extends OLD's: the log was only appended to
    between them, nothing in it rewritten. OLD and NEW: a checkpoint you kept (its signed
    note, or JSON holding it: /api/v1/logs, a proof). Exit 0 if it holds, 1 with the reason
    if not."""
    verifiers = []
    for given in given_keys:
        try:
            verifiers.append(parse_verifier_key(given))
        except NoteError as e:
            raise Failure(f"--key {given!r}: {e}") from None
    old_note = _one_checkpoint(old, origin, "OLD")
    new_note = _one_checkpoint(new, origin, "NEW")
    raw_proof = _read_at_most(proof_file, PROOF_BYTES, "--proof", 1)
    try:
        document = parse_proof_document(raw_proof)
        extended = verify_consistency_document(
            old_note, new_note, document, verifiers, ed25519_check
        )
    except (ValueError, NoteError, ProofError) as e:
        raise Failure(f"not consistent: {e}", 1) from None
    except RecursionError:
        raise Failure("not consistent: the proof's JSON is nested too deeply", 1) from None
    click.echo(
        f"consistent: {extended.origin} at {extended.new_size} leaves extends its tree of "
        f"{extended.old_size} leaves"
    )


def _one_checkpoint(path: Path, origin: str | None, given_as: str) -> str:
    """The file's checkpoint of `origin`, or its only log's."""
    by_origin: dict[str, set[str]] = {}
    for note in _notes_in(path, given_as):
        try:
            checkpoint, _ = parse_checkpoint(note)
        except NoteError as e:
            raise Failure(f"not consistent: {path}: {e}", 1) from None
        by_origin.setdefault(checkpoint.origin, set()).add(note)
    if origin is not None:
        by_origin = {origin: by_origin[origin]} if origin in by_origin else {}
    if not by_origin:
        raise Failure(f"{path}: no checkpoint of {origin!r} in it")
    if len(by_origin) > 1:
        raise Failure(f"{path} holds checkpoints of {len(by_origin)} logs: name one with --origin")
    [(found_origin, notes)] = by_origin.items()
    if len(notes) > 1:
        raise Failure(f"{path} holds {len(notes)} checkpoints of {found_origin}: keep one")
    return next(iter(notes))
