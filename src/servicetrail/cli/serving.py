"""`servicetrail serve` and `servicetrail demo`."""

from __future__ import annotations

import ipaddress
import shlex
import signal
import socket
import sys

import click

from ..signing import signer_for
from ..web.server import run
from .commands import command
from .common import Failure, left_to_the_server, stopped
from .database import list_logs_left_unlisted
from .store_access import engine, shown_store_url, store_url, with_db


def _address_free(host: str, port: int) -> None:
    """Refuse a host and port the server could not listen on, before anything is built: demo
    built its whole store, printed its logins and pointed at whatever held the port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise Failure(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise Failure(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _serve(host: str, port: int, workers: int, trusted_proxies: str | None = None) -> None:
    _address_free(host, port)
    store = engine()  # opened (a new one built) before any worker starts, which then only open it
    signer_for(store_url())  # a key that cannot sign stops the server here, not each minute's seal
    list_logs_left_unlisted(store, "this server's first seal, within a minute")
    click.echo(
        f"servicetrail on http://{host}:{port}/  (API: /api/v1/records, OpenAPI: /openapi.json)",
        err=True,
    )
    left_to_the_server(signal.SIGINT, signal.SIGTERM)
    if run(store, store_url(), host, port, workers, trusted_proxies):
        # a second Ctrl-C: the responses in progress were cut off, not let finish
        raise stopped(KeyboardInterrupt())


def proxy_addresses(value: str | None) -> str | None:
    """The proxies' addresses or networks (or `*`), checked: a word that is neither was
    taken without a word, and no proxy's headers were then believed (audit 25d)."""
    if value is None:
        return None
    for part in value.split(","):
        address = part.strip()
        if address == "*":
            continue
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise Failure(
                f"Invalid value for '--trusted-proxies': {address!r} is not an IP address or "
                "network (e.g. 10.0.0.5, 10.0.0.0/8, *)"
            ) from None
    return value


@command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes."
)
@click.option(
    "--trusted-proxies",
    metavar="IPS",
    default=None,
    help="Comma list of proxy addresses whose X-Forwarded-For/-Proto headers are believed "
    "(needed behind a TLS proxy for Secure cookies and per-client login throttling).",
    callback=lambda _ctx, _param, value: proxy_addresses(value),
)
@with_db
def serve(host: str, port: int, workers: int, trusted_proxies: str | None) -> None:
    """Serve the web screen and the HTTP API.

    A request whose head (request line and headers) is over 16 KiB is answered 431, and one
    whose body is over 1 MiB 413, and its connection closed ($SERVICETRAIL_MAX_HEADER_BYTES
    and $SERVICETRAIL_MAX_BODY_BYTES change the caps).
    """
    _serve(host, port, workers, trusted_proxies)


@command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--records",
    default=60_000,
    show_default=True,
    type=click.IntRange(1000),
    help="SAT records to generate.",
)
@click.option("--no-serve", is_flag=True, help="Build the demo store and exit.")
@with_db
def demo(host: str, port: int, records: int, no_serve: bool) -> None:
    """Build a realistic demo SAT (if the store is empty), print the logins, and serve it."""
    # here, not at the top: every other command started 0.1 s slower for the demo's and the
    # generator's imports (the suite starts the CLI some thousand times), and the supervisor
    # of `serve --workers N`, which serves no request, 0.05 s for the accounts' and the
    # queries' (argon2, the visibility rule's SQL; session 63)
    from ..demo import build_demo, demo_logins
    from ..store.accounts import verified_password_hash
    from ..store.queries import stored_record_count

    if not no_serve:
        _address_free(host, port)
    store = engine(upgrade=True)  # the demo's store is the program's own: brought up to date
    with store.connect() as conn:
        present = stored_record_count(conn)
    if present:
        logins = demo_logins(store)
        first = logins[0]
        with store.connect() as conn:  # the logins printed below must be the store's own
            theirs = verified_password_hash(conn, first.username, first.password) is not None
        if not theirs:
            raise Failure(
                f"the store already holds {present} records and is not a demo store (its "
                f"accounts are not the demo's): the demo builds an empty store, so name one "
                f"with --db (e.g. --db sqlite:///demo.db)"
            )
        click.echo(f"the store already holds {present} records; using it as it is", err=True)
    else:
        click.echo(f"building a demo SAT of {records} records ...", err=True)
        logins = build_demo(store, records=records)
    # what the command gives, on standard output (SPEC: "printing the demo logins"); what it
    # does, on standard error (audit 26a: a caller reading standard output found nothing)
    sys.stderr.flush()
    click.echo(f"Demo logins (password: {logins[0].password}):")
    for login in logins:
        click.echo(f"  {login.username:<14} {login.party_id:<18} {login.description}")
    click.echo(f"\nShowcase device: {logins.showcase_device_id}\n  {logins.showcase.story()}")
    sys.stdout.flush()
    if no_serve:
        shown = shlex.quote(shown_store_url())
        click.echo(f"\nServe it with: servicetrail --db {shown} serve", err=True)
    else:
        click.echo(f"\nOpen http://{host}:{port}/ and log in.", err=True)
    sys.stderr.flush()
    if not no_serve:
        _serve(host, port, 1)
