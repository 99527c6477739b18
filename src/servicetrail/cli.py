"""The `servicetrail` command line (SPEC section 5)."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine

from .domain.ids import InvalidValue, RequestId, eui64, whole_number
from .domain.search import Search
from .domain.times import parse_time
from .store.engine import StoreError, database_url, open_store

KINDS = ("users", "devices", "responsibilities")


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


class EuiParam(click.ParamType):
    name = "EUI-64"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return eui64(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


class CountParam(click.ParamType):
    """A count of 1 or more in the digits 0-9: click's INT takes anything int() does ('٣', '1_0')."""

    name = "N"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            count = whole_number(value)
        except InvalidValue:
            self.fail(f"{value!r} is not a whole number written in the digits 0-9", param, ctx)
        if count < 1:
            self.fail(f"{value} is not 1 or more", param, ctx)
        return count


TIME = TimeParam()
EUI = EuiParam()
COUNT = CountParam()


def with_db(command: Callable) -> Callable:
    """`--db URL` on every command, as well as before the command name."""

    @click.option("--db", "db_url", metavar="URL", default=None,
                  help="Database URL (default: $SERVICETRAIL_DATABASE_URL, else sqlite:///servicetrail.db).")
    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx: click.Context, db_url: str | None, **kwargs: Any) -> Any:
        ctx.obj = db_url or (ctx.obj if isinstance(ctx.obj, str) else None)
        return command(**kwargs)

    return wrapper


def engine() -> Engine:
    url = click.get_current_context().obj
    try:
        return open_store(url)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    except Exception as e:  # an unreachable server or a bad URL: say which, without a stack
        raise click.ClickException(f"cannot open the store at {database_url(url)}: {e}") from None


def fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@contextmanager
def progress_for(paths: list[Path]):
    """A progress bar on a terminal; nothing when the output is a pipe or a file."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    total = sum(p.stat().st_size for path in paths for p in ([path] if path.is_file() else path.rglob("*"))
                if p.is_file())
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("loading", total=total)
        yield lambda done: bar.advance(task, done)


def report_summary(summary) -> None:
    click.echo(summary.line())
    if summary.corrected:
        click.echo(f"({summary.corrected} of those corrected an existing entry)", err=True)
    for path in summary.reject_files:
        click.echo(f"rejected records, with their line and reason: {path}", err=True)
    if summary.rejected:
        sys.exit(1)


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
    ctx.obj = db_url


@main.command("load")
@click.argument("what", type=click.Choice(KINDS))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Reject file (default: beside FILE, named FILE-stem.rejects.jsonl).")
@with_db
def load_cmd(what: str, file: Path, rejects: Path | None) -> None:
    """Load a registry CSV: users, devices or responsibilities (in that order).

    \b
    users.csv             user_id,party_id,party_name,role
    devices.csv           device_id,device_type,smets
    responsibilities.csv  device_id,party_id,relation,valid_from,valid_to
    """
    from .ingest import registry_csv
    from .ingest.load import BadHeader, load_registry

    spec = {"users": registry_csv.USERS, "devices": registry_csv.DEVICES,
            "responsibilities": registry_csv.RESPONSIBILITIES}[what]
    if rejects and rejects.resolve() == file.resolve():  # the reject file is emptied first
        fail("--rejects must not name the input file")
    with progress_for([file]) as progress:
        try:
            summary = load_registry(engine(), spec, file, rejects, progress)
        except BadHeader as e:
            fail(str(e))
    report_summary(summary)


@main.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), help="Reject file.")
@click.option("--logged-at", type=TIME, help="Time a bare DUIS request .xml file was logged "
                                              "(default: the file's modification time).")
@with_db
def ingest_cmd(paths: tuple[Path, ...], rejects: Path | None, logged_at: datetime | None) -> None:
    """Ingest SAT records: SAT JSON Lines, DUIS JSON Lines captures, or DUIS XML files and folders.

    The format of each file is detected. Re-ingesting a file adds nothing; rejected
    records go to a reject file with their line and reason, and the exit code is 1.
    """
    from .ingest.load import ingest
    from .ingest.sources import UnreadableInput

    if rejects and any(rejects.resolve() == p.resolve() for p in paths):  # the reject file is emptied first
        fail("--rejects must not name an input file")
    with progress_for(list(paths)) as progress:
        try:
            summary = ingest(engine(), list(paths), rejects, logged_at, progress)
        except UnreadableInput as e:
            fail(str(e))
    report_summary(summary)


@main.group("accounts")
def accounts_group() -> None:
    """People who log in to the web screen for a Party."""


# Said in the help of every command that revokes access to the API.
TOKEN_CACHE_NOTE = ("A running server may accept a token for up to SERVICETRAIL_TOKEN_CACHE_SECONDS (default 5) "
                    "seconds after this: each server process remembers a token it has looked up that long.")


def _read_password() -> str:
    """The password from standard input (asked twice on a terminal)."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return sys.stdin.readline().rstrip("\r\n")


@accounts_group.command("create")
@click.argument("username")
@click.option("--party", "party_id", required=True, help="The Party (party_id) the account acts for.")
@with_db
def accounts_create(username: str, party_id: str) -> None:
    """Create an account; the password (12-1024 characters) is read from standard input
    (asked twice on a terminal)."""
    from .security import WeakPassword
    from .store.accounts import AccountError, create_account

    password = _read_password()
    try:
        with engine().begin() as conn:
            create_account(conn, username, party_id, password)
    except (AccountError, WeakPassword) as e:
        fail(str(e))
    click.echo(f"account {username} created for {party_id}", err=True)


@accounts_group.command("disable", epilog=TOKEN_CACHE_NOTE)
@click.argument("username")
@with_db
def accounts_disable(username: str) -> None:
    """Stop an account: it can no longer sign in, its web sessions end at once, and its API
    tokens stop working (they work again after 'accounts enable'; revoke them with
    'tokens revoke --account USERNAME' to end them for good)."""
    from .store.accounts import AccountError, set_disabled

    try:
        with engine().begin() as conn:
            ended = set_disabled(conn, username, True)
    except AccountError as e:
        fail(str(e))
    click.echo(f"account {username} disabled; {ended} web session(s) ended", err=True)


@accounts_group.command("enable")
@click.argument("username")
@with_db
def accounts_enable(username: str) -> None:
    """Let a disabled account sign in and use its API tokens again."""
    from .store.accounts import AccountError, set_disabled

    try:
        with engine().begin() as conn:
            set_disabled(conn, username, False)
    except AccountError as e:
        fail(str(e))
    click.echo(f"account {username} enabled", err=True)


@accounts_group.command("passwd")
@click.argument("username")
@with_db
def accounts_passwd(username: str) -> None:
    """Set a new password (12-1024 characters, read from standard input, asked twice on a
    terminal). The account's web sessions end; its API tokens are not affected."""
    from .security import WeakPassword
    from .store.accounts import AccountError, change_password

    password = _read_password()
    try:
        with engine().begin() as conn:
            ended = change_password(conn, username, password)
    except (AccountError, WeakPassword) as e:
        fail(str(e))
    click.echo(f"password of {username} changed; {ended} web session(s) ended", err=True)


@main.group("tokens")
def tokens_group() -> None:
    """API tokens (Authorization: Bearer TOKEN). A token is valid until it is revoked, and not
    while its account is disabled; only its SHA-256 is stored."""


@tokens_group.command("create")
@click.argument("username")
@with_db
def tokens_create(username: str) -> None:
    """Create an API token for an account; it is printed once, alone on standard output."""
    from .store.accounts import AccountError, create_token

    try:
        with engine().begin() as conn:
            token = create_token(conn, username)
    except AccountError as e:
        fail(str(e))
    click.echo("Keep this token secret; it is shown only this once.", err=True)
    click.echo(token)


@tokens_group.command("list")
@click.option("--account", "username", metavar="USERNAME", help="Only this account's tokens.")
@with_db
def tokens_list(username: str | None) -> None:
    """The API tokens: id (for 'tokens revoke'), account, Party, when created (UTC), and
    whether the account is disabled. Token values are never stored, so never shown."""
    from .domain.times import format_time
    from .store.accounts import list_tokens

    with engine().connect() as conn:
        tokens = list_tokens(conn, username)
    click.echo(f"{'ID':>6}  {'ACCOUNT':<24} {'PARTY':<32} {'CREATED':<20}  STATUS")
    for t in tokens:
        status = "account disabled" if t.account_disabled else "active"
        click.echo(f"{t.id:>6}  {t.username:<24} {t.party_id:<32} {format_time(t.created_at)[:19] + 'Z':<20}  "
                   f"{status}")
    click.echo(f"{len(tokens)} token(s)", err=True)


@tokens_group.command("revoke", epilog=TOKEN_CACHE_NOTE)
@click.argument("token_ids", nargs=-1, type=COUNT, metavar="[TOKEN_ID]...")
@click.option("--account", "username", metavar="USERNAME", help="Revoke every token of this account.")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Revoke the tokens whose values are read from standard input, one a line "
                   "(e.g. a token found where it should not be).")
@with_db
def tokens_revoke(token_ids: tuple[int, ...], username: str | None, from_stdin: bool) -> None:
    """Revoke API tokens for good, by id (see 'tokens list'), by account, or by value."""
    from .store.accounts import AccountError, revoke_tokens

    if not (token_ids or username or from_stdin):
        fail("name the tokens to revoke: TOKEN_ID..., --account USERNAME or --stdin")
    values = [line.strip() for line in sys.stdin if line.strip()] if from_stdin else []
    try:
        with engine().begin() as conn:
            revoked = revoke_tokens(conn, token_ids, username, values)
    except AccountError as e:
        fail(str(e))
    for t in revoked:
        click.echo(f"revoked token {t.id} of {t.username}")
    click.echo(f"{len(revoked)} token(s) revoked", err=True)


def _viewer(conn, party_id: str):
    from .store.queries import viewer_for

    viewer = viewer_for(conn, party_id)
    if viewer is None:
        fail(f"unknown party {party_id!r}")
    return viewer


def _output(path: Path | None):
    return open(path, "w", newline="", encoding="utf-8") if path else nullcontext(sys.stdout)


@main.group("report")
def report_group() -> None:
    """Reports from the SAT. They keep the own-traffic rule (SPEC section 1, rule 7)."""


@report_group.command("own")
@click.option("--party", "party_id", required=True)
@click.option("--from", "time_from", type=TIME, required=True, help="Inclusive start (ISO-8601).")
@click.option("--to", "time_to", type=TIME, required=True, help="Exclusive end (ISO-8601).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@with_db
def report_own(party_id: str, time_from: datetime, time_to: datetime, fmt: str, output: Path | None) -> None:
    """The Party's own traffic, payload included, streamed as CSV or JSON Lines.

    \b
    CSV: one header row, then one row per record. A cell that begins with =, +, -, @,
    a tab or a carriage return gets a leading ' (OWASP's rule against CSV injection), so
    that no spreadsheet runs it as a formula. JSON Lines keeps every value exactly as stored.
    """
    from .output import write_jsonl
    from .store.export import own_report_csv
    from .store.limits import SearchTooBroad
    from .store.queries import iter_own_report

    if time_to <= time_from:
        fail("--to must be after --from")
    with engine().connect() as conn:
        viewer = _viewer(conn, party_id)  # before --output is created: no empty report for a typo
        try:
            if fmt == "jsonl":
                with _output(output) as out:
                    count = write_jsonl(iter_own_report(conn, viewer, time_from, time_to), out)
            else:
                # the CSV comes from the engine as UTF-8 bytes in large chunks: written as they are
                report = own_report_csv(conn, viewer, time_from, time_to)
                with open(output, "wb") if output else nullcontext(sys.stdout.buffer) as out:
                    for chunk in report:
                        out.write(chunk)
                count = report.rows
        except SearchTooBroad as e:
            if output:
                output.unlink(missing_ok=True)  # a cut-off report must not pass for a whole one
            fail(str(e), 3)
    click.echo(f"{count} records", err=True)


@main.command("records")
@click.option("--party", "party_id", required=True, help="The viewing Party.")
@click.option("--device", "device_id", type=EUI, help="Device ID (EUI-64, any case).")
@click.option("--request-id", help="Request ID (originator:target:counter).")
@click.option("--from", "time_from", type=TIME, help="Inclusive start (ISO-8601).")
@click.option("--to", "time_to", type=TIME, help="Exclusive end (ISO-8601).")
@click.option("--scope", type=click.Choice(["all", "own", "others"]), default="all", show_default=True)
@click.option("--limit", type=COUNT, help="At most N records (default: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@with_db
def records_cmd(party_id: str, device_id: str | None, request_id: str | None, time_from: datetime | None,
                time_to: datetime | None, scope: str, limit: int | None, fmt: str) -> None:
    """What a Party may see, newest first, through the MP141 rule.

    JSON Lines items carry the API's fields; payload only on the Party's own records.
    """
    from .domain.visibility import Scope
    from .output import write_jsonl, write_table
    from .store.limits import SearchTooBroad
    from .store.queries import iter_search

    if request_id:
        try:
            request_id = str(RequestId.parse(request_id))
        except InvalidValue as e:
            raise click.BadParameter(str(e), param_hint="--request-id") from None
    search = Search(device_id=device_id, request_id=request_id, time_from=time_from, time_to=time_to,
                    scope=Scope(scope))
    with engine().connect() as conn:
        items = iter_search(conn, _viewer(conn, party_id), search, limit)
        try:
            (write_jsonl if fmt == "jsonl" else write_table)(items, sys.stdout)
        except SearchTooBroad as e:
            fail(str(e), 3)


class WindowParam(click.ParamType):
    """Minutes, 1..10080, in the digits 0-9 (as the API's `window`)."""

    name = "MINUTES"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        from .domain.triggers import window_minutes

        try:
            return window_minutes(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


@main.command("triggers")
@click.argument("record_id", type=COUNT)
@click.option("--party", "party_id", required=True, help="The viewing Party.")
@click.option("--window", type=WindowParam(), default="1440", show_default=True,
              help="Minutes before the record to look back (1..10080).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@with_db
def triggers_cmd(record_id: int, party_id: str, window: int, fmt: str) -> None:
    """What may have caused a record: the requests the Party may see on its Device in the
    window before it, newest first, the one sharing its Request ID first (at most 100).

    JSON Lines: one {"record", "seconds_before", "link"} per line, as the API's items; another
    User's request shows its title only. A record the Party may not see is "no such record",
    exactly like a missing one (exit 1).
    """
    from .output import write_jsonl, write_triggers_table
    from .store.limits import SearchTooBroad
    from .store.triggers import triggers_of

    with engine().connect() as conn:
        viewer = _viewer(conn, party_id)
        try:
            found = triggers_of(conn, viewer, record_id, window)
        except SearchTooBroad as e:
            fail(str(e), 3)
    if found is None:
        fail(f"no such record: {record_id}", 1)
    (write_jsonl if fmt == "jsonl" else write_triggers_table)(found[1], sys.stdout)


@main.group("db")
def db_group() -> None:
    """The store's schema."""


@db_group.command("upgrade")
@with_db
def db_upgrade() -> None:
    """Bring the schema up to the newest migration."""
    from .store.engine import make_engine
    from .store.migrate import upgrade_to_head

    upgrade_to_head(make_engine(click.get_current_context().obj))
    click.echo("schema is up to date")


@db_group.command("check")
@with_db
def db_check() -> None:
    """Fail when the database's tables and the migrations disagree."""
    from .store.engine import make_engine
    from .store.migrate import schema_differences

    problems = schema_differences(make_engine(click.get_current_context().obj))
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    click.echo("schema matches the migrations")


def _register_web_commands() -> None:
    from .web.commands import demo, serve

    main.add_command(serve)
    main.add_command(demo)


_register_web_commands()


@main.command("retention")
@click.option("--keep-months", type=click.IntRange(min=1), required=True,
              help="Keep this many whole months before the current one; drop older months.")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped, drop nothing.")
@with_db
def retention_cmd(keep_months: int, dry_run: bool) -> None:
    """Drop whole monthly partitions of SAT records and payloads past their retention age.

    PostgreSQL only: the trail is append-only, and retention removes whole months at once.
    """
    from .store.partitions import drop_older_than

    store = engine()
    if store.dialect.name != "postgresql":
        fail("retention drops monthly partitions, which only the PostgreSQL store has")
    with store.begin() as conn:
        dropped = drop_older_than(conn, keep_months, dry_run)
    verb = "would drop" if dry_run else "dropped"
    for name in dropped:
        click.echo(f"{verb} {name}")
    click.echo(f"{verb} {len(dropped) // 2} month(s) of SAT records and payloads", err=True)


@main.command("generate")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--records", default=100_000, show_default=True, type=click.IntRange(min=0))
@click.option("--devices", type=click.IntRange(min=18), help="Default: records/20, at most 20,000.")
@click.option("--parties", default=130, show_default=True, type=click.IntRange(min=9))
@click.option("--seed", default=141, show_default=True, type=int)
@click.option("--start", type=TIME, help="First day of traffic (default 2025-01-01).")
@click.option("--end", type=TIME, help="End of traffic (default 2026-01-01).")
@click.option("--duis", "with_duis", is_flag=True, help="Also write duis.jsonl, a DUIS capture of the same traffic.")
@click.option("--no-sat", is_flag=True, help="Do not write sat.jsonl.")
@click.option("--into-store", is_flag=True, help="Load the world straight into the store instead of FOLDER.")
@with_db
def generate_cmd(folder: Path | None, records: int, devices: int | None, parties: int, seed: int,
                 start: datetime | None, end: datetime | None, with_duis: bool, no_sat: bool,
                 into_store: bool) -> None:
    """A seeded, DCC-shaped world: the same seed gives the same bytes.

    Parties in every User Role, devices of every type (SMETS1 and 2), changes of supplier
    and network operator, skewed activity, alerts and errors. Writes users.csv, devices.csv,
    responsibilities.csv and sat.jsonl (and duis.jsonl) into FOLDER, or with --into-store
    loads it through the store's own writers.
    """
    from .generate import World, load_into, write_world

    options = {"n_records": records, "n_devices": devices, "n_parties": parties, "seed": seed}
    options.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
    try:
        world = World(**options)
    except ValueError as e:
        fail(str(e))
    if into_store:
        counts = load_into(engine(), world)
        click.echo(f"loaded {counts.records} records, {counts.users} users, {counts.devices} devices, "
                   f"{counts.responsibilities} responsibilities ({counts.duplicates} duplicates skipped)")
        return
    if folder is None:
        fail("name a FOLDER to write into, or give --into-store")
    for name, path in write_world(world, folder, sat=not no_sat, duis=with_duis).items():
        click.echo(f"{name}: {path}", err=True)
