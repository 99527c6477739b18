"""DUIS header values in words (the screen and README use them)."""

from __future__ import annotations

from datetime import datetime, timezone

from servicetrail.domain.duis_terms import (
    NON_DEVICE,
    PRE_COMMAND,
    SIGNED_COMMANDS,
    command_variant_text,
    execution_text,
)


def test_every_command_variant_is_explained_and_4_says_nothing_reached_the_device() -> None:
    texts = {v: command_variant_text(v) for v in range(1, 9)}
    assert len(set(texts.values())) == 8
    assert "nothing reached the Device" in texts[4]
    assert all("signed" in texts[v] for v in (5, 6, 7))
    assert "DCC itself" in texts[8]
    assert command_variant_text(None) == ""
    assert "nothing reached" in texts[PRE_COMMAND] and "DCC itself" in texts[NON_DEVICE]
    assert all("signed critical command" in texts[v] for v in SIGNED_COMMANDS)


def test_the_year_3000_execution_time_is_a_cancellation() -> None:
    assert execution_text("3000-12-31T00:00:00Z").startswith(
        "cancels the pending future-dated command"
    )
    assert execution_text(datetime(3000, 12, 31, tzinfo=timezone.utc)).startswith("cancels")
    # dated in the sender's offset, stored in UTC on another day (audit 25b)
    for sent in ("3000-12-30T23:00:00Z", "3000-12-31T14:00:00Z", "3000-12-30T10:00:00Z"):
        assert execution_text(sent).startswith("cancels"), sent
    assert execution_text(datetime(3000, 12, 30, 23)).startswith("cancels")  # naive: UTC
    assert execution_text("2999-12-31T00:00:00Z").startswith("future-dated")
    assert (
        execution_text("2025-03-10T06:30:00Z") == "future-dated: to run at 2025-03-10 06:30:00 UTC"
    )
    assert execution_text(None) == execution_text("") == ""
    assert (
        execution_text("0999-03-10T06:30:00Z") == "future-dated: to run at 0999-03-10 06:30:00 UTC"
    )
