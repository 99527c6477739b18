"""`servicetrail triggers RECORD_ID --party P` (SPEC section 6): what the API answers, on the
command line, on both engines."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ON_SQLITE_ALONE
from tests import personas as P


def jsonl(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_jsonl_gives_the_api_shape_with_the_request_id_link_first(cli, world):
    lines = jsonl(
        cli("triggers", world.ids["np_resp"], "--party", P.NORTHPOWER, "--format", "jsonl")
    )
    assert [(x["record"]["id"], x["link"], x["seconds_before"]) for x in lines] == [
        (world.ids["np_req"], "request_id", 5)
    ]
    assert lines[0]["record"]["payload"] == "<np read>"  # NORTHPOWER's own request


def test_another_users_request_shows_its_title_only(cli, world):
    # SOUTHENERGY, supplier since the change: the Export Supplier's read, then its response
    lines = jsonl(
        cli("triggers", world.ids["sx_resp"], "--party", P.SOUTHENERGY, "--format", "jsonl")
    )
    assert [(x["record"]["id"], x["link"]) for x in lines] == [(world.ids["sx_req"], "request_id")]
    assert lines[0]["record"]["access"] == "mp141"
    assert not {"payload", "execution_at", "subject_device_id"} & set(lines[0]["record"])


def test_the_window_narrows_the_same_device_requests(cli, world):
    alert = world.ids["se_device_alert"]  # 19 hours after SOUTHENERGY's own request
    assert [
        x["seconds_before"]
        for x in jsonl(
            cli(
                "triggers", alert, "--party", P.SOUTHENERGY, "--window", "1140", "--format", "jsonl"
            )
        )
    ] == [19 * 3600]
    assert (
        jsonl(
            cli(
                "triggers", alert, "--party", P.SOUTHENERGY, "--window", "1139", "--format", "jsonl"
            )
        )
        == []
    )


def test_the_table_has_the_link_and_the_seconds(cli, world):
    result = cli("triggers", world.ids["se_device_alert"], "--party", P.SOUTHENERGY)
    assert result.exit_code == 0, result.output
    header, rule, row = result.stdout.splitlines()
    assert header.split()[:4] == ["link", "seconds_before", "id", "logged_at"]
    link, seconds, record_id, logged_at, kind = row.split()[:5]
    assert (link, seconds, logged_at, kind) == (
        "same_device",
        str(19 * 3600),
        "2025-03-05T12:00:00Z",
        "request",
    )
    assert int(record_id) in world.ids.values()


def test_a_hidden_record_is_answered_like_a_missing_one(cli, world):
    hidden = cli("triggers", world.ids["se_device_alert"], "--party", P.LOOKER)
    missing = cli("triggers", "987654321", "--party", P.LOOKER)
    assert hidden.exit_code == missing.exit_code == 1
    assert hidden.stderr.replace(str(world.ids["se_device_alert"]), "N") == missing.stderr.replace(
        "987654321", "N"
    )
    assert hidden.stdout == missing.stdout == ""


@pytest.mark.parametrize("window", ["0", "10081", "abc", "١٠"])
@ON_SQLITE_ALONE
def test_a_bad_window_is_a_usage_error_naming_it(cli, world, window):
    result = cli("triggers", world.ids["np_resp"], "--party", P.NORTHPOWER, "--window", window)
    assert result.exit_code == 2
    assert "--window" in result.stderr and "Traceback" not in result.output


@ON_SQLITE_ALONE
def test_an_unknown_party_and_a_bad_record_id_are_errors(cli, world):
    assert cli("triggers", world.ids["np_resp"], "--party", "NOBODY").exit_code == 2
    assert cli("triggers", "abc", "--party", P.NORTHPOWER).exit_code == 2


@ON_SQLITE_ALONE
def test_the_help_states_the_bounds_the_command_applies(cli):
    from servicetrail.domain.triggers import DEFAULT_WINDOW_MINUTES, MAX_TRIGGERS
    from servicetrail.domain.triggers import MAX_WINDOW_MINUTES

    shown = " ".join(cli("triggers", "--help").stdout.split())
    assert f"(1..{MAX_WINDOW_MINUTES})" in shown and f"[default: {DEFAULT_WINDOW_MINUTES}]" in shown
    assert f"(at most {MAX_TRIGGERS})" in shown


def test_a_list_the_cap_cuts_says_so_and_names_the_search_for_the_rest(cli, engine, world):
    """Another User's flood of requests to ESME-1 in the hour before SOUTHENERGY's alert: the
    list stops at the cap, and standard error names the records command that lists every
    request of the window, which does."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    P.looker_flood(engine, P.t("2025-03-06T06:30:00Z"), MAX_TRIGGERS + 1)
    alert = world.ids["se_device_alert"]
    result = cli("triggers", alert, "--party", P.SOUTHENERGY, "--window", "60", "--format", "jsonl")
    assert len(jsonl(result)) == MAX_TRIGGERS
    note = result.stderr.strip()
    assert note.startswith(f"only {MAX_TRIGGERS} are listed; every request of the window: ")
    command = note.split("servicetrail ", 1)[1].split()
    assert command[:3] == ["records", "--party", P.SOUTHENERGY]
    every = jsonl(cli(*command, "--format", "jsonl"))
    assert len(every) == MAX_TRIGGERS + 1  # the whole flood, the one the list left out too
    assert {r["id"] for r in every} > {x["record"]["id"] for x in jsonl(result)}


def test_a_list_within_the_cap_has_no_note(cli, world):
    result = cli("triggers", world.ids["se_device_alert"], "--party", P.SOUTHENERGY)
    assert result.exit_code == 0 and result.stderr == ""


def test_a_list_cut_among_the_requests_sharing_its_request_id_says_so_without_a_device(
    cli, engine, world
):
    """A response with no Device (a non-device SRV) lists only the requests sharing its Request
    ID; past the cap, the note names the records command that lists them all."""
    from servicetrail.domain.triggers import MAX_TRIGGERS

    response_id = P.non_device_exchange(engine, MAX_TRIGGERS + 2)
    result = cli("triggers", response_id, "--party", P.NORTHPOWER, "--format", "jsonl")
    assert len(jsonl(result)) == MAX_TRIGGERS
    note = result.stderr.strip()
    assert note.startswith(f"only {MAX_TRIGGERS} are listed; every request with its Request ID: ")
    every = jsonl(cli(*note.split("servicetrail ", 1)[1].split(), "--format", "jsonl"))
    assert len(every) == MAX_TRIGGERS + 2
