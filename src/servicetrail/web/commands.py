"""`servicetrail serve` and `servicetrail demo`."""
from __future__ import annotations

import os
import sys

import click

from ..cli import engine, with_db


def _run(host: str, port: int, workers: int) -> None:
    import uvicorn

    from .app import create_app

    app = create_app(engine())
    click.echo(f"servicetrail on http://{host}:{port}/  (API: /api/v1/records, OpenAPI: /openapi.json)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("SERVICETRAIL_LOG_LEVEL", "warning"),
                proxy_headers=False, server_header=False, timeout_graceful_shutdown=5)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@with_db
def serve(host: str, port: int) -> None:
    """Serve the web screen and the HTTP API."""
    _run(host, port, 1)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--records", default=60_000, show_default=True, type=click.IntRange(1000),
              help="SAT records to generate.")
@click.option("--no-serve", is_flag=True, help="Build the demo store and exit.")
@with_db
def demo(host: str, port: int, records: int, no_serve: bool) -> None:
    """Build a realistic demo SAT (if the store is empty), print the logins, and serve it."""
    from sqlalchemy import func, select

    from ..demo import build_demo, demo_logins
    from ..store.schema import sat_record

    store = engine()
    with store.connect() as conn:
        present = conn.execute(select(func.count()).select_from(sat_record)).scalar()
    if present:
        click.echo(f"the store already holds {present} records; using it as it is", err=True)
        logins = demo_logins()
    else:
        click.echo(f"building a demo SAT of {records} records ...", err=True)
        logins = build_demo(store, records=records)
    click.echo("\nDemo logins (password for all shown beside each):", err=True)
    for login in logins:
        click.echo(f"  {login.username:<14} {login.password:<24} {login.party_id:<12} {login.description}",
                   err=True)
    sys.stderr.flush()
    if not no_serve:
        _run(host, port, 1)
