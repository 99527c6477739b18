"""`servicetrail access-log`: who looked (SPEC section 8), as JSON Lines."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from ..domain.access_log import entry_json
from ..output import json_line
from ..store.access_log import EntryFilter, iter_entries
from .commands import command
from .options import BOUND, FROM_HELP, PARTY, TO_HELP, search_or_fail
from .store_access import engine, viewer_of, with_db


@command("access-log")
@click.option(
    "--party", "party_id", type=PARTY, help="Only this Party's entries (default: every Party's)."
)
@click.option("--from", "time_from", type=BOUND, help=FROM_HELP)
@click.option("--to", "time_to", type=BOUND, help=TO_HELP)
@with_db
def access_log_cmd(
    party_id: str | None, time_from: datetime | None, time_to: datetime | None
) -> None:
    """Every read of SAT records (API, web, CLI, webhooks), newest first, one JSON object a
    line: id, at, party_id, actor, interface, action, filters, records_returned,
    mp141_records_returned, device_ids. Reading the log is not itself logged."""
    search_or_fail(time_from=time_from, time_to=time_to)
    wanted = EntryFilter(party_id=party_id, time_from=time_from, time_to=time_to)
    count = 0
    with engine().connect() as conn:
        if party_id is not None:
            viewer_of(conn, party_id)  # a typo said "0 entries", read as "nobody looked"
        for entry in iter_entries(conn, wanted):
            sys.stdout.write(json_line(entry_json(entry)) + "\n")
            count += 1
    click.echo(f"{count} entries", err=True)
