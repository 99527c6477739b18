"""DUIS header values in the words a DCC analyst uses, for every screen and the CLI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

# DUIS's CommandVariant (the XSD's table): what the DCC did with the request
COMMAND_VARIANTS: dict[int, str] = {
    1: "a command the DCC sends to the Device over the SM WAN",
    2: (
        "a command returned to the User for local delivery at the premises "
        "(not sent over the SM WAN)"
    ),
    3: "a command sent to the Device over the SM WAN and also returned for local delivery",
    4: (
        "a critical request sent to the DCC to be turned into a pre-command: "
        "nothing reached the Device"
    ),
    5: "a signed critical command (from a pre-command) sent to the Device over the SM WAN",
    6: "a signed critical command (from a pre-command) returned to the User for local delivery",
    7: (
        "a signed critical command sent to the Device over the SM WAN "
        "and returned for local delivery"
    ),
    8: "a non-device request, answered by the DCC itself",
}
PRE_COMMAND = 4  # sent to the DCC to be signed: never reaches the Device
SIGNED_COMMANDS = (5, 6, 7)  # a pre-command signed by the User, and sent on
NON_DEVICE = 8  # answered by the DCC itself: it names no Device
# DUIS's way to cancel a pending future-dated command: a request dated 3000-12-31, in the
# sender's own offset, which the stored UTC time may put on 30 December or 1 January
# (3000-12-31T00:00:00+01:00 read as a command to run on the 30th; audit 25b)
_CANCEL_FROM = datetime(3000, 12, 31, tzinfo=timezone.utc) - timedelta(hours=14)
_CANCEL_TO = datetime(3001, 1, 1, tzinfo=timezone.utc) + timedelta(hours=12)


def command_variant_text(variant: int | None) -> str:
    if variant is None:
        return ""
    return COMMAND_VARIANTS.get(variant, f"command variant {variant}")


def execution_text(execution_at: datetime | str | None) -> str:
    """A future-dated request's ExecutionDateTime in words; 3000-12-31 cancels."""
    if execution_at is None or execution_at == "":
        return ""
    when = (
        datetime.fromisoformat(execution_at.replace("Z", "+00:00"))
        if isinstance(execution_at, str)
        else execution_at
    )
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)  # stored times are UTC
    if _CANCEL_FROM <= when < _CANCEL_TO:
        return "cancels the pending future-dated command (DUIS dates a cancellation 3000-12-31)"
    return f"future-dated: to run at {when.year:04d}-{when:%m-%d %H:%M:%S} UTC"
