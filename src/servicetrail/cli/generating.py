"""`servicetrail generate`: a seeded DCC-shaped world, to files or into the store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from .commands import command
from .common import Failure
from .options import TIME
from .store_access import engine, with_db


MAX_DEVICES, MAX_PARTIES = 1_000_000, 10_000


@command("generate")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--records", default=100_000, show_default=True, type=click.IntRange(min=0))
# bounded: each Device and Party is held in memory while the world is made (99,999,999,999
# Devices grew without end; audit 23a): a million is the registry benches' size
@click.option(
    "--devices",
    type=click.IntRange(min=18, max=MAX_DEVICES),
    help="Default: records/20, at most 20,000.",
)
@click.option(
    "--parties", default=130, show_default=True, type=click.IntRange(min=9, max=MAX_PARTIES)
)
@click.option("--seed", default=141, show_default=True, type=int)
@click.option("--start", type=TIME, help="First day of traffic (default 2025-01-01).")
@click.option("--end", type=TIME, help="End of traffic (default 2026-01-01).")
@click.option(
    "--duis",
    "with_duis",
    is_flag=True,
    help="Also write duis.jsonl, a DUIS capture of the same traffic.",
)
@click.option("--no-sat", is_flag=True, help="Do not write sat.jsonl.")
@click.option(
    "--into-store", is_flag=True, help="Load the world straight into the store instead of FOLDER."
)
@with_db
def generate_cmd(
    folder: Path | None,
    records: int,
    devices: int | None,
    parties: int,
    seed: int,
    start: datetime | None,
    end: datetime | None,
    with_duis: bool,
    no_sat: bool,
    into_store: bool,
) -> None:
    """A seeded, DCC-shaped world: the same seed gives the same bytes.

    Parties in every User Role, devices of every type (SMETS1 and 2), changes of supplier
    and network operator, skewed activity, alerts and errors. Writes users.csv, devices.csv,
    responsibilities.csv and sat.jsonl (and duis.jsonl) into FOLDER, or with --into-store
    loads it through the store's own writers.
    """
    from ..generate import World, load_into, write_world  # here: see cli.serving.demo
    from ..generate.writers import NotThisWorld

    try:
        world = World(
            n_records=records,
            n_devices=devices,
            n_parties=parties,
            seed=seed,
            start=start or World.start,
            end=end or World.end,
        )
    except ValueError as e:  # sizes that make no world: said by World itself
        raise Failure(str(e)) from None
    if into_store and (folder is not None or no_sat):
        raise Failure("--into-store loads the whole world into the store: no FOLDER, no --no-sat")
    if into_store:
        try:
            counts = load_into(engine(), world)
        except NotThisWorld as e:
            raise Failure(str(e)) from None
        click.echo(
            f"loaded {counts.records} records, {counts.users} users, {counts.devices} devices, "
            f"{counts.responsibilities} responsibilities ({counts.duplicates} duplicates skipped)"
        )
        return
    if folder is None:
        raise Failure("name a FOLDER to write into, or give --into-store")
    for name, path in write_world(world, folder, sat=not no_sat, duis=with_duis).items():
        click.echo(f"{name}: {path}", err=True)
