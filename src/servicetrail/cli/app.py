"""The `servicetrail` command group itself."""
from __future__ import annotations


import click

from .. import settings
from .common import Failure

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", "db_url", metavar="URL", default=None, help="Database URL for every command.")
@click.version_option(package_name="servicetrail")
@click.pass_context
def main(ctx: click.Context, db_url: str | None) -> None:
    """servicetrail: the DCC Service Audit Trail with SEC MP141 visibility.

    Load the registry (users, devices, responsibilities), ingest DUIS traffic, and see
    what each Party may see: its own traffic in full, and as Responsible Supplier or
    Network Operator the titles of every request and response to its devices.
    """
    try:
        settings.reload()  # this invocation's environment, checked before any command runs
    except settings.SettingError as e:
        raise Failure(str(e)) from None
    ctx.obj = db_url
