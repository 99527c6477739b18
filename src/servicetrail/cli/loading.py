"""`servicetrail load` (the registry) and `servicetrail ingest` (SAT records)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ..ingest import registry_csv
from .commands import command
from .common import Failure
from .load_report import kept_if_stopped, progress_for, report_summary
from .options import TIME
from .output_files import in_existing_folder
from .store_access import engine, with_db

# Each command imports its own loader as it runs: `load` a CSV reader, `ingest` the DUIS
# reader (lxml) and the trail's writers; one started imported both, some 0.03 s of its CPU
SPEC_OF = {
    "users": registry_csv.USERS,
    "devices": registry_csv.DEVICES,
    "responsibilities": registry_csv.RESPONSIBILITIES,
}


@command("load")
@click.argument("what", type=click.Choice(list(SPEC_OF)))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    callback=in_existing_folder,
    help="Reject file (default: beside FILE, named after it without its last extension, "
    "plus .rejects.jsonl: users.csv gives users.rejects.jsonl).",
)
@with_db
def load_cmd(what: str, file: Path, rejects: Path | None) -> None:
    """Load a registry CSV: users, devices or responsibilities (in that order).

    \b
    users.csv             user_id,party_id,party_name,role
    devices.csv           device_id,device_type,smets
    responsibilities.csv  device_id,party_id,relation,valid_from,valid_to

    A responsibilities line with a held interval's Device, relation and valid_from corrects
    it (its Party or its end); one that gives a held interval of its own Party with another
    start and the same end re-dates it (a change of supplier moved to another day: the old
    supplier's line with its new end, the new one's with its new start). Any other overlap
    is rejected. Re-loading a file changes nothing.
    """
    if rejects and rejects.resolve() == file.resolve():  # the reject file is emptied first
        raise Failure("--rejects must not name the input file")
    from ..ingest.registry_load import load_registry

    with progress_for([file]) as progress, kept_if_stopped(sealed_later=False) as summary:
        load_registry(engine(), SPEC_OF[what], file, rejects, progress, summary)
    report_summary(summary)


@command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    callback=in_existing_folder,
    help="Reject file (default: beside each input, named after it without its last "
    "extension, plus .rejects.jsonl; a folder's beside the folder).",
)
@click.option(
    "--logged-at",
    type=TIME,
    help="Time a bare DUIS request .xml file was logged (default: the file's modification time).",
)
@with_db
def ingest_cmd(paths: tuple[Path, ...], rejects: Path | None, logged_at: datetime | None) -> None:
    """Ingest SAT records: SAT JSON Lines, DUIS JSON Lines captures, or DUIS XML files and folders.

    The format of each file is detected. Re-ingesting a file adds nothing; rejected
    records go to a reject file with their line and reason, and the exit code is 1.
    A run the store stops part way (exit code 3) keeps the batches it committed and says
    how many records; running it again loads the rest.
    """
    if rejects and any(
        rejects.resolve() == p.resolve() for p in paths
    ):  # the reject file is emptied first
        raise Failure("--rejects must not name an input file")
    from ..ingest.trail_load import ingest

    with progress_for(list(paths)) as progress, kept_if_stopped(sealed_later=True) as summary:
        ingest(engine(), list(paths), rejects, logged_at, progress, summary)
    report_summary(summary)
