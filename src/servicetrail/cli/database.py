"""`servicetrail db` (migrations) and `servicetrail retention`."""

from __future__ import annotations

import re
from pathlib import Path

import click
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..signing import key_path_for, log_prefix, signer_for
from ..store.engine import at_another_schema, current_revision
from ..store.access_retention import UnsealedAccessMonths, drop_access_months
from ..store.limits import store_busy
from ..store.log_tables import log_pending
from ..store.log_retirement import NoSigner, retirements_unsigned, sign_earlier_retirements
from ..store.merkle_log import seal_store
from ..store.other_sessions import other_sessions
from ..store.partitions import (
    UnsealedMonths,
    drop_months,
    month_name,
    months_dropped_by_hand,
    months_to_sign,
    retention_cutoff,
    unsealed_months,
)
from .commands import command, group
from .common import Failure, signalled
from .store_access import engine, engine_as_it_is, shown_store_url, store_url, with_db


@group("db")
def db_group() -> None:
    """The store's schema."""


@db_group.command("upgrade")
@click.option(
    "--sign-retirements",
    "sign_retirements",
    metavar="MONTHS",
    help="Also sign the retirements of these months (YYYY-MM, comma-separated), listed as "
    "dropped by a retention older than signed retirements: name only months your own "
    "records say retention dropped (anyone with the database can add to that list).",
)
@with_db
def db_upgrade(sign_retirements: str | None) -> None:
    """Bring the schema up to the newest migration (a store left by an older servicetrail
    is refused by the other commands until then)."""
    named = _months(sign_retirements)  # asked wrongly: said before the store is touched
    as_it_was = engine_as_it_is()
    connected: list[str] = []
    try:
        before = current_revision(as_it_was)
        if before is not None:
            with as_it_was.connect() as conn:
                connected = other_sessions(conn)
    except DBAPIError:
        before = None  # not a store yet, or one that cannot be opened: said by engine() next
    finally:
        as_it_was.dispose()
    store = engine(upgrade=True)
    now = current_revision(store)
    key = key_path_for(store_url())
    try:
        _seal_what_the_migrations_brought(store, key)
        _sign_earlier_retirements(store, key, named)
    finally:
        store.dispose()
    # what it did, not only where it ends: run twice, both said the same (audit 44d)
    if before == now:
        click.echo(f"the schema was at the newest migration already ({now})")
    elif before is None:
        click.echo(f"the schema was built at the newest migration ({now})")
    else:
        click.echo(f"the schema was upgraded from {before} to the newest migration ({now})")
        if connected:
            click.echo(
                f"note: {len(connected)} other connection(s) to the store as it was upgraded "
                f"({', '.join(sorted(set(connected)))}): a serve or deliver started before "
                "runs the old code on the new schema, and may fail every read: restart them",
                err=True,
            )


def _seal_what_the_migrations_brought(store: Engine, key: Path) -> None:
    try:
        # what the migrations brought into the logs (0009: every record stored before it) is
        # sealed now: its proofs were a 409 until a server's first seal, a minute or more
        # later, and `log verify` checked it against no checkpoint (audit 24a)
        with store.connect() as conn:
            queued = conn.execute(select(log_pending.c.entry_id).limit(1)).first() is not None
        if queued and not key.is_file():
            # never a key of its own making: run from another folder, an upgrade signed the
            # logs with a new ./servicetrail.key that the server's trust file did not know,
            # and `log verify` failed (review 24e)
            click.echo(
                f"note: no signing key at {key}: the logs' new leaves wait for the first seal "
                "by a command or server that has the store's key",
                err=True,
            )
        elif queued:
            sealed = seal_store(store)
            click.echo(f"sealed {len(sealed)} log(s) the migrations had filled", err=True)
    except Exception as e:  # the schema stands; the next seal takes the leaves
        busy = store_busy(e)
        why = busy.reason if busy else str(getattr(e, "orig", None) or e).splitlines()[0]
        click.echo(f"warning: the logs were not sealed now ({why})", err=True)


def _months(text: str | None) -> list[str] | None:
    if text is None:
        return None
    months = [part.strip() for part in text.split(",") if part.strip()]
    wrong = [m for m in months if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", m)]
    if wrong or not months:
        raise Failure(f"--sign-retirements: months as YYYY-MM, comma-separated: {text!r}")
    return months


def _sign_earlier_retirements(store: Engine, key: Path, named: list[str] | None) -> None:
    """The months retention dropped before it signed retirements (migration 0022 lists them),
    signed with the store's key when the operator names them: `log verify` reports them until
    then (audit 46d). Never unasked: a row of that list is anyone's to add, for a month wiped
    by hand, and so is the revision that says 0022 is yet to come (audits 46j, 46l: the
    operator's next upgrade signed the months an intruder wiped and listed)."""
    if named is None:
        with store.connect() as conn:
            unsigned = [month for _, month in retirements_unsigned(conn)]
        if unsigned:
            click.echo(
                f"note: `log verify` reports the {len(unsigned)} month(s) listed as dropped by "
                f"a retention older than signed retirements ({', '.join(unsigned)}): those your "
                "own records say retention dropped, 'servicetrail db upgrade "
                "--sign-retirements MONTHS' signs with the store's key (anyone with the "
                "database can add to that list)",
                err=True,
            )
        return
    if not key.is_file():  # never a key of its own making, as for the seal above
        raise Failure(
            f"--sign-retirements: no signing key at {key}: run it with the store's key "
            "(SERVICETRAIL_SIGNING_KEY naming it)"
        )
    signer = signer_for(store_url())
    with store.connect() as conn:  # a note this key did not sign counts for nothing here
        unsigned = [month for _, month in retirements_unsigned(conn, signer)]
    unlisted = [month for month in named if month not in unsigned]
    if unlisted:
        click.echo(f"note: not signed, as not listed unsigned: {', '.join(unlisted)}", err=True)
    wanted = [month for month in named if month in unsigned]
    if not wanted:
        return
    with store.begin() as conn:
        signed = sign_earlier_retirements(conn, signer, log_prefix(), wanted)
    click.echo(f"signed the retirement of {len(signed)} month(s): {', '.join(signed)}", err=True)


@db_group.command("check")
@with_db
def db_check() -> None:
    """Fail when the database's tables and the migrations disagree, or (PostgreSQL) the
    reader role, its grants or the row-level-security policies are missing. On a store that
    matches, also list for the next seal any log holding leaves in no signed checkpoint
    that no seal would look for (a servicetrail from before schema 0031 left them)."""
    # here, not at the top: importing Alembic would cost every command 0.1 s at start
    from ..store.migrate import schema_differences

    store = engine_as_it_is()  # made without connecting: a store that cannot be opened shows
    try:  # here, and is the same error as for every other command (exit 2), not a difference
        if _not_at_this_schema(store):
            # SPEC section 5, as for any command: built at the current schema if empty,
            # refused if it holds other tables (they were all listed as differences; review
            # 23d), refused at an older schema naming `db upgrade` (exit 2, not 1)
            store.dispose()
            store = engine()
        problems = schema_differences(store)
    except DBAPIError as e:
        raise Failure(f"cannot open the store at {shown_store_url()}: {e.orig}") from None
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise Failure(f"{len(problems)} difference(s) between the store and the migrations", 1)
    list_logs_left_unlisted(store, "the next seal (a server's, within a minute, or a command's)")
    click.echo("schema matches the migrations")


def list_logs_left_unlisted(store: Engine, sealed_by: str) -> None:
    """List for the next seal the logs a servicetrail of before migration 0031 appended to
    without listing them (store.log_sizes), saying so: a server's start, `db check` and a
    retention run look, once each; a command's seal never walks every log."""
    from ..store.log_sizes import list_unlisted_logs

    try:
        listed = list_unlisted_logs(store)
    except DBAPIError as e:  # the next look lists them
        busy = store_busy(e)
        why = busy.reason if busy else str(e.orig or e).splitlines()[0]
        click.echo(
            f"warning: the logs were not looked through for unlisted leaves ({why})", err=True
        )
        return
    if listed:
        names = ", ".join(f"{family} {month}" for family, month in listed)
        click.echo(
            f"note: {len(listed)} log(s) held leaves in no signed checkpoint that no seal "
            f"looked for ({names}: appended by a servicetrail older than the store's schema): "
            f"listed for {sealed_by}",
            err=True,
        )


def _not_at_this_schema(store: Engine) -> bool:
    """Empty, older, newer, or (PostgreSQL) a database not made yet, which opening the store
    makes, as for every other command; or says why it cannot."""
    try:
        return current_revision(store) is None or at_another_schema(store)
    except OperationalError:
        return True


@command("retention")
@click.option(
    "--keep-months",
    type=click.IntRange(min=1),
    required=True,
    help="Keep this many whole months before the current one; drop older months.",
)
@click.option(
    "--access-log-keep-months",
    type=click.IntRange(min=1),
    default=None,
    help="Also drop the access log's months older than this many whole months before the "
    "current one (at least --keep-months). Without it the access log is kept whole.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be dropped, drop nothing.")
@with_db
def retention_cmd(keep_months: int, access_log_keep_months: int | None, dry_run: bool) -> None:
    """Drop whole monthly partitions of SAT records and payloads past their retention age,
    and with --access-log-keep-months, whole months of the access log.

    PostgreSQL only: the trail is append-only, and retention removes whole months at once.
    """
    # from the URL, before the store is opened: opened first, a mistyped SQLite path was made
    # into a new store only to be refused (audit 37f)
    if not store_url().startswith("postgresql"):  # as database_url spells PostgreSQL's
        raise Failure("retention drops monthly partitions, which only the PostgreSQL store has")
    if access_log_keep_months is not None and access_log_keep_months < keep_months:
        # who looked at a record is asked for as long as the record is kept
        raise Failure(
            f"--access-log-keep-months ({access_log_keep_months}) keeps the access log at "
            f"least as long as the records (--keep-months {keep_months})"
        )
    store = engine()
    key = key_path_for(store_url())
    if not dry_run and key.is_file():
        # its checkpoints are all that stays of a month: its records all in one first
        # (audit 44d); a command never makes a key of its own for it. Those a servicetrail
        # of before 0031 appended unlisted too: no seal saw them, and the run refused their
        # month as "added since this run sealed them" however often it ran
        list_logs_left_unlisted(store, "this run's seal")
        seal_store(store)
    again = f"servicetrail retention --keep-months {keep_months}" + (
        f" --access-log-keep-months {access_log_keep_months}" if access_log_keep_months else ""
    )
    with store.connect() as conn:
        by_hand = months_dropped_by_hand(conn, before=month_name(retention_cutoff(keep_months)))
    with Committing("of SAT records", again) as in_doubt:
        try:
            # each month's retirement is signed with the store's key; a command never makes one
            signer = signer_for(store_url()) if not dry_run and key.is_file() else None
            # the months dropped by hand too: their logs go in the same commit (a month gone
            # whole has no partition to name, and a stop then named none of it: 62d)
            dropped = drop_months(
                store,
                keep_months,
                dry_run,
                signer,
                lambda names: in_doubt.committing([*names, *by_hand]),
            )
        except NoSigner as e:
            raise Failure(
                f"nothing dropped: retention signs the retirement of each month it drops "
                f"({', '.join(e.months)}) with the store's key, and there is no signing key at "
                f"{key} (run retention where the store's key is, or with SERVICETRAIL_SIGNING_KEY "
                "naming it)"
            ) from None
        except UnsealedMonths as e:
            why = (
                f"and there is no signing key at {key} to seal them (run retention where the "
                "store's key is, or with SERVICETRAIL_SIGNING_KEY naming it)"
                if not key.is_file()
                else "added since this run sealed them: run it again"
            )
            raise Failure(
                f"nothing dropped: the logs of {', '.join(e.months)} hold records in no signed "
                f"checkpoint, {why}"
            ) from None
        verb = "would drop" if dry_run else "dropped"
        for name in dropped:
            click.echo(f"{verb} {name}")
        months = {name.rsplit("_p", 1)[1] for name in dropped}  # each month's several tables
        click.echo(f"{verb} {len(months)} month(s) of SAT records and payloads", err=True)
        for month in by_hand:
            whose = "partitions were dropped by hand, all or some,"
            click.echo(_retiring(dry_run, "the log", month, whose), err=True)
        in_doubt.printed()
    if dry_run and months:
        with store.connect() as conn:
            named = sorted(m.replace("_", "-") for m in months)
            open_logs = unsealed_months(conn, named)
            to_sign = months_to_sign(conn, named)
        if to_sign and not key.is_file() and not open_logs:
            # every log sealed, the run still refuses (NoSigner), and the dry run said only
            # what it would drop (audit 46j); unsealed logs have a note of their own below
            click.echo(
                f"note: a run drops none: it signs the retirement of each month it drops "
                f"({', '.join(to_sign)}) with the store's key, and there is no signing key at "
                f"{key}",
                err=True,
            )
        if open_logs:
            then = "seals them first" if key.is_file() else f"drops none (no signing key at {key})"
            click.echo(
                f"note: the logs of {', '.join(open_logs)} hold records in no signed "
                f"checkpoint: a run {then}",
                err=True,
            )
    if access_log_keep_months is not None:
        with Committing("of the access log", again) as in_doubt:
            _access_log_retention(store, access_log_keep_months, dry_run, in_doubt)


class Committing:
    """Ctrl-C or SIGTERM from the commit of retention's drops on, until they are printed: the
    drops may have been committed, which the store alone knows. Stopped there, retention said
    `terminated` and nothing of what it had dropped, and run again, `dropped 0 month(s)`
    (audit 54g): it says which months it was committing, and how to see which are gone."""

    def __init__(self, what: str, again: str) -> None:
        self.what, self.again = what, again
        self.months: list[str] = []

    def committing(self, names: list[str]) -> None:
        """Told by the store just before the commit: tables or months, as `YYYY-MM`."""
        self.months = sorted({name.rsplit("_p", 1)[-1].replace("_", "-") for name in names})

    def printed(self) -> None:
        self.months = []

    def __enter__(self) -> Committing:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # a stop inside the driver's commit may come out as another error (cli.app says why)
        stopped = kind is not None and (issubclass(kind, KeyboardInterrupt) or signalled())
        if stopped and self.months:
            click.echo(
                f"stopped while committing the drop of {len(self.months)} month(s) {self.what} "
                f"({', '.join(self.months)}): they may be gone; `{self.again} --dry-run` lists "
                "those still there",
                err=True,
            )


def _access_log_retention(
    store: Engine, keep_months: int, dry_run: bool, in_doubt: Committing
) -> None:
    """The access log's months past `keep_months`, after the records' (whose run sealed the
    store's logs, the access log's with them, when the key is at hand)."""
    key = key_path_for(store_url())
    signer = signer_for(store_url()) if not dry_run and key.is_file() else None
    try:
        dropped = drop_access_months(
            store,
            keep_months,
            dry_run,
            signer,
            lambda months: in_doubt.committing([month.month for month in months]),
        )
    except NoSigner as e:
        raise Failure(
            f"no month of the access log dropped: retention signs the retirement of each "
            f"({', '.join(e.months)}) with the store's key, and there is no signing key at "
            f"{key} (run retention where the store's key is, or with SERVICETRAIL_SIGNING_KEY "
            "naming it)"
        ) from None
    except UnsealedAccessMonths as e:
        raise Failure(
            f"no month of the access log dropped: its logs of {', '.join(e.months)} hold "
            f"entries in no signed checkpoint, and there is no signing key at {key} to seal "
            "them"
            if not key.is_file()
            else f"no month of the access log dropped: its logs of {', '.join(e.months)} hold "
            "entries added since this run sealed them: run it again"
        ) from None
    verb = "would drop" if dry_run else "dropped"
    for month in dropped:
        click.echo(f"{verb} access_log {month.month} ({month.entries} entries)")
    entries = sum(month.entries for month in dropped)
    click.echo(f"{verb} {len(dropped)} month(s) of the access log ({entries} entries)", err=True)
    for month in (month for month in dropped if month.by_hand):
        # as for the trail's: its entries were gone before this run, which retires its log
        whose = "partition was dropped by hand"
        click.echo(_retiring(dry_run, "the access log", month.month, whose), err=True)
    in_doubt.printed()


def _retiring(dry_run: bool, log: str, month: str, whose: str) -> str:
    """What a run says of a month dropped by hand whose log it retires (would, dry)."""
    return (
        f"{'would retire' if dry_run else 'retired'} {log} of {month}, whose {whose} before "
        "this run (its checkpoints stay, its retirement signed, saying so: `log verify` "
        "tells it ever after)"
    )


@db_group.command("new-reader-role")
@with_db
def db_new_reader_role() -> None:
    """PostgreSQL: give this store a reader role of its own. A store restored or cloned onto
    the server of the store it copies reads as that store's role, which its owner should not
    hold (`db check` says so): run this on the copy, with its servers stopped."""
    from ..store.reader_role import NAMED_BY, give_own_reader_role

    if not store_url().startswith("postgresql"):  # asked first: opening builds a store
        raise Failure("a SQLite store has no roles: nothing to do", 2)
    store = engine()
    try:
        with store.begin() as conn:
            old = conn.execute(text(f"SELECT {NAMED_BY}()")).scalar_one()
            new = give_own_reader_role(conn, old)
    finally:
        store.dispose()
    click.echo(f"this store now reads as {new} (it read as {old})")
