"""`servicetrail records`, `report own` and `triggers`: the trail through the visibility rule."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from sqlalchemy.engine import Connection

from ..domain.model import KINDS as KINDS_OF_RECORD
from ..domain.triggers import DEFAULT_WINDOW_MINUTES, MAX_WINDOW_MINUTES, window_bounds
from ..domain.visibility import Scope
from ..output import write_jsonl, write_table, write_triggers_table
from ..domain.times import format_time, parse_time
from ..store.logged_reads import LoggedRead, logged_read
from .commands import command, group
from .common import Failure
from .options import (
    COUNT,
    BOUND,
    FROM_HELP,
    PARTY,
    TO_HELP,
    WINDOW,
    as_asked,
    as_typed,
    asked_as_typed,
    search_or_fail,
)
from .output_files import HeldOutput, in_existing_folder, may_write, not_the_stores_own
from .store_access import cli_reader, engine, viewer_of, with_db


@group("report")
def report_group() -> None:
    """Reports from the SAT. They keep the own-traffic rule (SPEC section 1, rule 7)."""


@report_group.command("own")
@click.option("--party", "party_id", type=PARTY, required=True)
@click.option("--from", "time_from", type=BOUND, required=True, help=FROM_HELP)
@click.option("--to", "time_to", type=BOUND, required=True, help=TO_HELP)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    callback=in_existing_folder,
    help="File (default, or -: standard output).",
)
@with_db
def report_own(
    party_id: str, time_from: datetime, time_to: datetime, fmt: str, output: Path | None
) -> None:
    """The Party's own traffic, payload included, streamed as CSV or JSON Lines.

    \b
    CSV: one header row, then one row per record. A cell that begins with =, +, -, @,
    a tab or a carriage return gets a leading ' (OWASP's rule against CSV injection), so
    that no spreadsheet runs it as a formula. JSON Lines keeps every value exactly as stored.
    """
    search_or_fail(time_from=time_from, time_to=time_to)
    if output is not None:
        not_the_stores_own(output, "output")
        may_write(output)  # before the report is made, and its reading logged
    filters = {
        "from": as_typed("time_from"),
        "to": as_typed("time_to"),
        **as_asked({"format": "fmt"}),
    }
    with HeldOutput() as held:
        with engine().connect() as conn:
            # before --output is made: no empty report for a typo
            viewer = viewer_of(conn, party_id)
            conn.commit()  # the read begins its own transaction: one snapshot of the store
            logged = LoggedRead(conn, viewer, cli_reader(party_id), "report", filters)
            if fmt == "jsonl":
                write_jsonl(logged.export_own_report(time_from, time_to), held.text)
            else:
                # the CSV comes from the engine as UTF-8 bytes in large chunks: kept as they are
                for chunk in logged.export_own_report_csv(time_from, time_to):
                    held.write_bytes(chunk)
            logged.write_entry()  # with the report's counts, before its first byte is sent
            gone = _months_not_held(conn, time_from, time_to)
        held.send(output)
    count = logged.tally.records_returned
    click.echo(f"{count} records", err=True)
    _say_not_held(gone)


@command("records")
@click.option("--party", "party_id", type=PARTY, required=True, help="The viewing Party.")
@click.option("--device", "device_id", help="Device ID (EUI-64, any case).")
@click.option("--request-id", help="Request ID (originator:target:counter).")
@click.option("--from", "time_from", help=FROM_HELP)
@click.option("--to", "time_to", help=TO_HELP)
@click.option("--srv", help="An SRV number such as 4.1.1, or words of its title.")
@click.option("--kind", help=f"One of {', '.join(KINDS_OF_RECORD)}.")
@click.option(
    "--scope", type=click.Choice([s.value for s in Scope]), default="all", show_default=True
)
@click.option("--limit", type=COUNT, help="At most N records (default: all).")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True
)
@with_db
def records_cmd(
    party_id: str,
    device_id: str | None,
    request_id: str | None,
    time_from: str | None,
    time_to: str | None,
    srv: str | None,
    kind: str | None,
    scope: str,
    limit: int | None,
    fmt: str,
) -> None:
    """What a Party may see, newest first, through the MP141 rule.

    The filters are read as the API reads its parameters. JSON Lines items carry the API's
    fields; payload only on the Party's own records.
    """
    search = search_or_fail(
        device_id=device_id,
        request_id=request_id,
        srv=srv,
        kind=kind,
        time_from=time_from,
        time_to=time_to,
        scope=scope,
    )
    # the API's parameter names, so that an auditor finds a Device's searches under one
    # name whatever the interface (`--device` was logged as "device"; audit 38a), and the
    # limit as typed, as the API's is
    filters = as_asked(
        {
            "device_id": "device_id",
            "request_id": "request_id",
            "from": "time_from",
            "to": "time_to",
            "srv": "srv",
            "kind": "kind",
            "scope": "scope",
        }
    )
    if as_typed("limit") is not None:
        filters["limit"] = as_typed("limit")
    with HeldOutput() as held:
        with engine().connect() as conn:
            viewer = viewer_of(conn, party_id)
            conn.commit()  # the read begins its own transaction: one snapshot of the store
            logged = LoggedRead(conn, viewer, cli_reader(party_id), "search", filters)
            items = logged.export_search(search, limit)
            (write_jsonl if fmt == "jsonl" else write_table)(items, held.text)
            logged.write_entry()  # with what will be printed, before its first line
            gone = _months_not_held(conn, search.time_from, search.time_to)
        held.send(None)
    _say_not_held(gone)


def _months_not_held(
    conn: Connection, time_from: datetime | None, time_to: datetime | None
) -> list[str]:
    """The months a read between the two times reaches into whose partitions were dropped by
    hand: none of their records is listed, and the read said nothing of why (62d). PostgreSQL
    only (SQLite has no partitions); the store's state, not a Party's: who runs the command
    has the database. A month retention removed is the operator's policy, and goes unsaid."""
    if conn.dialect.name != "postgresql":
        return []
    from ..store.partitions import dropped_by_hand_between  # the catalogue's rules, here only

    return dropped_by_hand_between(conn, time_from, time_to)


def _say_not_held(months: list[str]) -> None:
    for month in months:
        click.echo(
            f"note: the records of {month} are no longer held: its partitions were dropped by "
            "hand, not by retention, and none of them is listed (`servicetrail log verify` "
            "names the month and what to do)",
            err=True,
        )


@command("triggers")
@click.argument("record_id", type=COUNT)
@click.option("--party", "party_id", type=PARTY, required=True, help="The viewing Party.")
@click.option(
    "--window",
    type=WINDOW,
    default=str(DEFAULT_WINDOW_MINUTES),
    show_default=True,
    help=f"Minutes before the record to look back (1..{MAX_WINDOW_MINUTES}).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True
)
@with_db
def triggers_cmd(record_id: int, party_id: str, window: int, fmt: str) -> None:
    """What may have caused a record: the requests the Party may see on its Device in the
    window before it, newest first, the one sharing its Request ID first (at most 1000). A
    list the cap cut is followed by a note on standard error: the records search for the rest;
    so is a window reaching into a month whose records were dropped by hand, as for `records`.

    JSON Lines: one {"record", "seconds_before", "link"} per line, as the API's items; another
    User's request shows its title only. A record the Party may not see is "no such record",
    exactly like a missing one (exit 1).
    """
    filters = {"record_id": record_id, **asked_as_typed({"window": "window"})}
    with engine().connect() as conn:
        viewer = viewer_of(conn, party_id)
        conn.commit()  # the read begins its own transaction: one snapshot of the store
        with logged_read(conn, viewer, cli_reader(party_id), "triggers", filters) as read:
            found = read.triggers_of(record_id, window)
        if found is not None:
            # the window's months, where its requests would be: a request sharing the Request
            # ID is looked for at any time, and all of a store's months would be noise
            at = parse_time(found[0]["logged_at"])
            gone = _months_not_held(conn, *window_bounds(at, window))
    if found is None:
        raise Failure(f"no such record: {record_id}", 1)
    listed = found[1]
    (write_jsonl if fmt == "jsonl" else write_triggers_table)(listed.items, sys.stdout)
    for searched, _ in listed.rest:
        # the records command lists a search whole: no cursor needed
        if searched.device_id and searched.time_from:
            to = f" --to {format_time(searched.time_to)}" if searched.time_to is not None else ""
            rest = (
                f"every request of the window: servicetrail records --party {party_id} "
                f"--device {searched.device_id} --kind request "
                f"--from {format_time(searched.time_from)}{to}"
            )
        else:
            rest = (
                f"every request with its Request ID: servicetrail records --party {party_id} "
                f"--request-id {searched.request_id} --kind request"
            )
        click.echo(f"only {len(listed.items)} are listed; {rest}", err=True)
    _say_not_held(gone)
