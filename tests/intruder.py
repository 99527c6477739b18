"""What someone with the database can do that servicetrail never does: write past the
append-only triggers (the tamper tests of SPEC sections 7 and 8)."""

from __future__ import annotations

from sqlalchemy import text


def intrude(engine, *statements: tuple[str, dict]) -> None:
    """Run statements with the append-only triggers out of the way."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            for name in list(names):
                conn.execute(text(f"DROP TRIGGER {name}"))
        for sql, params in statements:
            conn.execute(text(sql), params)


def re_sign_a_checkpoint(engine) -> str:
    """The newest checkpoint signed again by a key of the intruder's own, which it lists
    among the store's keys; returns that key's verifier key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests import rfc9162

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, note FROM log_checkpoint ORDER BY id DESC LIMIT 1")
        ).one()
    body = row.note.split("\n\n", 1)[0] + "\n"
    forged, rogue = rfc9162.signed_note(Ed25519PrivateKey.generate(), "servicetrail/sat", body)
    intrude(
        engine,
        ("INSERT INTO log_verifier_key VALUES (:k, :at)", {"k": rogue, "at": "2020-01-01"}),
        (
            "UPDATE log_checkpoint SET note = :n, verifier_key = :k WHERE id = :id",
            {"n": forged, "k": rogue, "id": row.id},
        ),
    )
    return rogue
