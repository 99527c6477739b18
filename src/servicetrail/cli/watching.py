"""`servicetrail watch add|list|rm|events` and `servicetrail deliver` (SPEC section 6)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..output import json_line
from ..signing import signer_for
from .commands import command, group
from .common import Failure, left_to_the_server, shown_before_kept, shown_once, wait_while_read
from .options import COUNT, EVENT_ID, PARTY, asked_as_typed
from .store_access import cli_reader, engine, store_url, viewer_of, with_db

if TYPE_CHECKING:
    from ..store.limits import StoreBusy


@group("watch")
def watch_group() -> None:
    """A Party's watches: be told of new records it may see that match (titles only)."""


def _list_option(value: str | None, words: tuple[str, ...]) -> str | list[str] | None:
    """`mine`, `all` ... as they are; anything else a list, as the screen splits it (commas,
    semicolons or spaces)."""
    if value is None:
        return None
    from ..domain.watches import split_list

    if value in words:
        return value
    return split_list(value) or [value]


@watch_group.command("add")
@click.option(
    "--party", "party_id", type=PARTY, required=True, help="The Party that keeps the watch."
)
@click.option("--name", required=True, help="What to call it (1-200 characters).")
@click.option(
    "--devices", default=None, metavar="mine|ID,...", help="mine (default) or Device IDs."
)
@click.option(
    "--srvs", default=None, metavar="all|critical|SRV,...", help="all (default), critical or SRVs."
)
@click.option("--kinds", default=None, metavar="K,...", help="Kinds of record (default: request).")
@click.option(
    "--senders",
    type=click.Choice(["others", "all"]),
    default=None,
    help="others (default): not the Party's own User IDs' records.",
)
@click.option("--webhook", default=None, metavar="URL", help="https:// URL to POST each event to.")
@with_db
def watch_add(
    party_id: str,
    name: str,
    devices: str | None,
    srvs: str | None,
    kinds: str | None,
    senders: str | None,
    webhook: str | None,
) -> None:
    """Add a watch and print it as JSON; with --webhook, its signing secret, this once."""
    from ..domain.watches import InvalidWatch, watch_spec
    from ..store.watches import WatchLimit, create_watch
    from ..webhooks.outbound import UnsafeUrl, check_url
    from ..webhooks.signing import new_secret

    raw = {
        "name": name,
        "devices": _list_option(devices, ("mine",)),
        "srvs": _list_option(srvs, ("all", "critical")),
        "kinds": _list_option(kinds, ()),
        "senders": senders,
        "webhook": {"url": webhook} if webhook is not None else None,
    }
    try:
        spec = watch_spec({k: v for k, v in raw.items() if v is not None})
        if spec.webhook_url is not None:
            check_url(spec.webhook_url)
    except InvalidWatch as e:
        raise Failure(f"Invalid value for '--{e.field.split('.')[0]}': {e.message}") from None
    except UnsafeUrl as e:
        raise Failure(f"Invalid value for '--webhook': {e}") from None
    if spec.webhook_url:
        shown_once()
    # printed inside its transaction, as a token is: a secret shown to no one is not kept
    with shown_before_kept("watch") as show, engine().begin() as conn:
        viewer_of(conn, party_id)
        try:
            made = create_watch(conn, party_id, spec, new_secret() if spec.webhook_url else None)
        except WatchLimit as e:
            raise Failure(str(e)) from None
        show(json_line(made))
    if spec.webhook_url:
        click.echo("the webhook secret is shown this once: keep it to verify signatures", err=True)


@watch_group.command("list")
@click.option("--party", "party_id", type=PARTY, required=True)
@with_db
def watch_list(party_id: str) -> None:
    """The Party's watches, one JSON object a line (never a secret); a webhook says whether
    deliveries still run (`enabled`; a 410 from the receiver turns them off) and why not, and
    `failing`: deliveries waiting for a retry after a failed attempt (how many, counted up to
    1000, then `at_least`; the attempts and last error of the one retried last), or null."""
    from ..store.watches import list_watches

    with engine().connect() as conn:
        viewer_of(conn, party_id)
        for made in list_watches(conn, party_id, with_state=True):
            click.echo(json_line(made))


@watch_group.command("rm")
@click.argument("watch_id", type=COUNT)
@click.option("--party", "party_id", type=PARTY, required=True)
@with_db
def watch_rm(watch_id: int, party_id: str) -> None:
    """Delete one of the Party's watches with its events and pending deliveries."""
    from ..store.watches import delete_watch_and_backlog

    store = engine()
    with store.begin() as conn:
        viewer_of(conn, party_id)
    if not delete_watch_and_backlog(store, party_id, watch_id):
        raise Failure(f"no such watch: {watch_id}")
    click.echo(f"deleted watch {watch_id}", err=True)


FOLLOW_SECONDS = 1.0


@watch_group.command("events")
@click.argument("watch_id", type=COUNT)
@click.option("--party", "party_id", type=PARTY, required=True)
@click.option(
    "--after",
    type=EVENT_ID,
    default=0,
    show_default=True,
    help="The last event_id you have.",
)
@click.option("--follow", is_flag=True, help="Keep waiting for new events (Ctrl-C to stop).")
@with_db
def watch_events(watch_id: int, party_id: str, after: int, follow: bool) -> None:
    """The watch's events after --after, one JSON object a line, in event_id order.

    Titles only, even for the Party's own records; a record the Party may no longer see is
    left out. Records not yet matched (no server or `servicetrail deliver` running) are
    matched first.
    """
    from ..store.limits import SearchTooBroad, StoreBusy, StoreMisconfigured, store_busy
    from ..store.logged_reads import logged_read
    from ..store.watch_matcher import catch_up

    store = engine()
    with store.connect() as conn:
        viewer = viewer_of(conn, party_id)
    reader, first, printed = cli_reader(party_id), True, False
    asked = {"watch_id": watch_id, **asked_as_typed({"after": "after"})}
    away: StoreBusy | None = None
    try:
        while True:
            try:
                catch_up(store)
                with store.connect() as conn:
                    # each read as the Party stands now: a follow kept the User IDs of its
                    # start, and one the registry gave the Party since was not its own to it
                    # (events only rule 1 shows were never printed; audit 59f)
                    viewer = viewer_of(conn, party_id)
                    # the first read is the one asked, as typed (it logged "after": 0 untyped);
                    # a next page's or a follow's asks for what came after what it printed
                    filters = asked if first else {"watch_id": watch_id, "after": str(after)}
                    with logged_read(conn, viewer, reader, "watch_events", filters) as read:
                        page = read.events_after(watch_id, after, 1000)
                        if not first:
                            read.leave_out_if_empty()
            except Exception as e:
                busy = e if isinstance(e, StoreBusy) else store_busy(e)
                # a store gone a while is waited for; one that needs its administrator is not
                if not follow or first or busy is None or isinstance(busy, StoreMisconfigured):
                    raise
                away = _followed_through(busy, away, after)
                continue
            if away is not None:
                click.echo(f"the store answers again: following after {after}", err=True)
                away = None
            first = False
            if page is None:
                # deleted while followed, after some of its events were printed: done, but not
                # all of it (1); never the Party's, or gone before anything was printed (2)
                raise Failure(f"no such watch: {watch_id}", 1 if printed else 2)
            events, next_after = page
            printed = printed or bool(events)
            for event in events:
                sys.stdout.write(json_line(event) + "\n")
            sys.stdout.flush()
            if next_after is not None:
                after = next_after
                continue
            if not follow:
                return
            # until Ctrl-C or SIGTERM, said as every other command says them (130, 143): it
            # exited 0, where docs/loading.md says every command but a server says it was stopped
            wait_while_read(FOLLOW_SECONDS)
    except SearchTooBroad as e:
        raise Failure(str(e), 3) from None


def _followed_through(busy: StoreBusy, away: StoreBusy | None, after: int) -> StoreBusy:
    """A follow whose store went away (a PostgreSQL restart, SQLite's lock held past its
    wait) waits and reads again after what it printed, saying so once: it ended with exit 3,
    and the analyst following a watch all day had to notice, and start it again with the
    right --after, or see again what it had printed (audit 54g)."""
    if away is None:
        click.echo(f"{busy.reason}: following waits for it, after {after}", err=True)
    wait_while_read(FOLLOW_SECONDS)
    return busy


@command("deliver")
@with_db
def deliver_cmd() -> None:
    """Match new records into watches' events and deliver webhooks, until stopped.

    `servicetrail serve` does the same beside the server; run this for a worker alone (any
    number of them, and servers, may run at once: each delivery is leased to one). Pending
    deliveries live in the store: a killed worker loses none, and the next one picks them
    up. Retries follow $SERVICETRAIL_WEBHOOK_RETRY_SECONDS (comma-separated seconds; default
    Standard Webhooks': 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h).
    """
    import asyncio
    import signal

    from ..store.schema_watch import StoreUpgraded
    from ..store.sealing import seal_every_minute, seal_now
    from ..webhooks.background import new_event_loop
    from ..webhooks.deliver import Deliverer, retry_schedule

    try:
        schedule = retry_schedule()
    except ValueError as e:
        raise Failure(str(e)) from None
    # each attempt is an access-log entry (SPEC 8), sealed every minute and at the end: a
    # key that cannot sign stops the worker here, as it stops `serve`
    signer_for(store_url())
    store = engine()  # one engine, its pool shared by the worker and the seals
    deliverer = Deliverer(store, schedule=schedule)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sealer = asyncio.create_task(seal_every_minute(store))
        upgraded = False
        try:
            await deliverer.run(stop)
        except StoreUpgraded:
            # no last seal: it would only say "restart" once more before the Error line does
            upgraded = True
            raise
        finally:
            sealer.cancel()
            if not upgraded:
                await seal_now(store, last=True)

    click.echo("delivering webhooks (Ctrl-C to stop)", err=True)
    # Ctrl-C to asyncio.Runner, which cancels `main` on it only over Python's own handler,
    # until `main` gives both signals to the loop; SIGTERM meanwhile stays a stop (143)
    left_to_the_server(signal.SIGINT)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    s = deliverer.stats
    click.echo(
        f"delivered {s.delivered}, failed attempts {s.failed}, gone {s.gone}, given up "
        f"{s.given_up}",
        err=True,
    )
