"""Standard Webhooks signatures (https://www.standardwebhooks.com/): the secret, and the
three headers of a delivery. The suite checks them with the specification's reference
library (`standardwebhooks`), never with this module."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(watch_id: int, event_id: int) -> str:
    """`webhook-id`: one per event of a watch, the same on every retry (receivers dedupe on it)."""
    return f"evt_{watch_id}_{event_id}"


def signed_headers(
    secret: str, watch_id: int, event_id: int, timestamp: int, body: bytes
) -> dict[str, str]:
    msg_id = message_id(watch_id, event_id)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }
