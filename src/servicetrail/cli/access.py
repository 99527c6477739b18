"""`servicetrail accounts` and `servicetrail tokens`: who may sign in and call the API."""

from __future__ import annotations

import sys

import click

from ..domain.ids import InvalidValue
from ..domain.times import format_time
from ..store.accounts import (
    account_name,
    change_password,
    check_new_account,
    create_account,
    create_token,
    list_accounts,
    list_tokens,
    revoke_tokens,
    party_of,
    set_disabled,
    stored_password,
)
from .commands import group
from .common import Failure, shown_before_kept, shown_once
from .options import PARTY, Parsed, count
from .store_access import engine, with_db


@group("accounts")
def accounts_group() -> None:
    """People who log in to the web screen for a Party."""


# Said in the help of every command that revokes access to the API.
TOKEN_CACHE_NOTE = (
    "A running server refuses the token from its next request on, unless it was started with "
    "SERVICETRAIL_TOKEN_CACHE_SECONDS set (default 0): it then remembers a token it has looked "
    "up that long."
)


def _read_password() -> str:
    """The password from standard input (asked twice on a terminal)."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        # said by the command's catch-all for such bytes, with 20 characters either side of
        # them: a short password whole, on the terminal and in CI logs (audit 26c)
        raise Failure("the password is not UTF-8 text (it was not shown)", 2) from None
    return password


@accounts_group.command("create")
@click.argument("username")
@click.option("--party", "party_id", type=PARTY, help="The Party (party_id) the account acts for.")
@click.option(
    "--auditor",
    is_flag=True,
    help="An auditor, of no Party: reads every Party's access log, no SAT record.",
)
@with_db
def accounts_create(username: str, party_id: str | None, auditor: bool) -> None:
    """Create an account for a Party (--party) or an auditor's (--auditor); the password
    (12-1024 characters, not only spaces, no control characters) is read from standard input
    (asked twice on a terminal)."""
    if auditor == (party_id is not None):
        raise Failure("give either --party PARTY_ID or --auditor")
    with engine().connect() as conn:  # before the password is asked for, twice on a terminal
        check_new_account(conn, username, party_id)
    password = _read_password()
    with engine().begin() as conn:
        create_account(conn, username, party_id, password)
    click.echo(f"account {username} created for {party_id or 'auditing'}", err=True)


def _stored(username: str) -> str:
    """The account's name as stored, typed in any case (AccountError: no such account)."""
    with engine().connect() as conn:
        return account_name(conn, username)


def _set_disabled(username: str, disabled: bool) -> int:
    """Disable or enable the account; the number of its web sessions that ended."""
    with engine().begin() as conn:
        return set_disabled(conn, username, disabled)


@accounts_group.command("list")
@with_db
def accounts_list() -> None:
    """The accounts: name, Party (or auditor), when created (UTC), whether disabled, and how
    many API tokens each holds. Passwords are stored as hashes only, never shown."""
    with engine().connect() as conn:
        accounts = list_accounts(conn)
    click.echo(f"{'ACCOUNT':<24} {'PARTY':<32} {'CREATED':<20}  {'STATUS':<8}  TOKENS")
    for a in accounts:
        status = "disabled" if a.disabled_at is not None else "active"
        click.echo(
            f"{a.username:<24} {a.party_id or '(auditor)':<32} "
            f"{format_time(a.created_at)[:19] + 'Z':<20}  {status:<8}  {a.tokens}"
        )
    click.echo(f"{len(accounts)} account(s)", err=True)


@accounts_group.command("disable", epilog=TOKEN_CACHE_NOTE)
@click.argument("username")
@with_db
def accounts_disable(username: str) -> None:
    """Stop an account: it can no longer sign in, its web sessions end at once, and its API
    tokens stop working (they work again after 'accounts enable'; revoke them with
    'tokens revoke --account USERNAME' to end them for good)."""
    username = _stored(username)
    ended = _set_disabled(username, True)
    click.echo(f"account {username} disabled; {ended} web session(s) ended", err=True)
    # the watches' module (the outbox, the matcher's SQL) only here: every `accounts` and
    # `tokens` command imported it, some 10 ms of a start's CPU, for this one note
    from ..store.watches import list_watches

    with engine().connect() as conn:
        party = party_of(conn, username)
        watches = list_watches(conn, party, with_state=True) if party else []
    hooks = [w for w in watches if w["webhook"] and w["webhook"]["enabled"]]
    if hooks:  # a departed analyst's webhook to an address of its own went on (audit 26c)
        click.echo(
            f"note: {party}'s {len(hooks)} watch(es) with a webhook go on delivering: a watch "
            f"is its Party's, not an account's ('servicetrail watch list --party {party}', "
            f"then 'watch rm ID --party {party}')",
            err=True,
        )


@accounts_group.command("enable")
@click.argument("username")
@with_db
def accounts_enable(username: str) -> None:
    """Let a disabled account sign in and use its API tokens again."""
    username = _stored(username)
    _set_disabled(username, False)
    click.echo(f"account {username} enabled", err=True)


@accounts_group.command("passwd")
@click.argument("username")
@with_db
def accounts_passwd(username: str) -> None:
    """Set a new password (12-1024 characters, not only spaces, no control characters; read
    from standard input, asked twice on a terminal). The account's web sessions end; its API
    tokens are not affected."""
    username = _stored(username)  # before the password is asked for
    password = _read_password()
    with engine().begin() as conn:
        ended = change_password(conn, username, password)
    click.echo(f"password of {username} changed; {ended} web session(s) ended", err=True)


@group("tokens")
def tokens_group() -> None:
    """API tokens (Authorization: Bearer TOKEN). A token is valid until it is revoked, and not
    while its account is disabled; only its SHA-256 is stored."""


@tokens_group.command("create")
@click.argument("username")
@with_db
def tokens_create(username: str) -> None:
    """Create an API token for an account; it is printed once, alone on standard output."""
    shown_once()
    username = _stored(username)
    # printed and flushed inside its transaction: a token that reached no one (a closed
    # pipe, a full disk) is never stored, where it stayed active unseen (audit 23a)
    with shown_before_kept("token") as show, engine().begin() as conn:
        show(create_token(conn, username))
        stored = stored_password(conn, username)
    click.echo("Keep this token secret; it is shown only this once.", err=True)
    if stored is not None and not stored.enabled:  # it was made without a word (audit 26c)
        click.echo(
            f"note: account {username} is disabled: the token works once it is enabled again "
            # a name may begin with '-', which the command would read as an option
            f"('servicetrail accounts enable -- {username}')",
            err=True,
        )


@tokens_group.command("list")
@click.option("--account", "username", metavar="USERNAME", help="Only this account's tokens.")
@with_db
def tokens_list(username: str | None) -> None:
    """The API tokens: id (for 'tokens revoke'), account, Party, when created (UTC), and
    whether the account is disabled. Token values are never stored, so never shown."""
    with engine().connect() as conn:
        tokens = list_tokens(conn, username)
    click.echo(f"{'ID':>6}  {'ACCOUNT':<24} {'PARTY':<32} {'CREATED':<20}  STATUS")
    for t in tokens:
        status = "account disabled" if t.account_disabled else "active"
        click.echo(
            f"{t.id:>6}  {t.username:<24} {t.party_id or '(auditor)':<32} "
            f"{format_time(t.created_at)[:19] + 'Z':<20}  {status}"
        )
    click.echo(f"{len(tokens)} token(s)", err=True)


def _token_id(text: str) -> int:
    """A token's id; a token's value given here is refused without being repeated: an error
    naming it put the secret in the terminal's scrollback and in logs (audit 44d)."""
    if not text.isdigit():
        raise InvalidValue(
            "not a token id (a number from 'tokens list'); to revoke a token by its value, "
            "give the value on standard input with --stdin"
        )
    return count(text)


TOKEN_ID = Parsed("TOKEN_ID", _token_id)


@tokens_group.command("revoke", epilog=TOKEN_CACHE_NOTE)
@click.argument("token_ids", nargs=-1, type=TOKEN_ID, metavar="[TOKEN_ID]...")
@click.option(
    "--account", "username", metavar="USERNAME", help="Revoke every token of this account."
)
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Revoke the tokens whose values are read from standard input, one a line "
    "(e.g. a token found where it should not be).",
)
@with_db
def tokens_revoke(token_ids: tuple[int, ...], username: str | None, from_stdin: bool) -> None:
    """Revoke API tokens for good, by id (see 'tokens list'), by account, or by value."""
    if not (token_ids or username or from_stdin):
        raise Failure("name the tokens to revoke: TOKEN_ID..., --account USERNAME or --stdin")
    values = [line.strip() for line in sys.stdin if line.strip()] if from_stdin else []
    with engine().begin() as conn:
        revoked = revoke_tokens(conn, token_ids, username, values)
    for t in revoked:
        click.echo(f"revoked token {t.id} of {t.username}")
    click.echo(f"{len(revoked)} token(s) revoked", err=True)
