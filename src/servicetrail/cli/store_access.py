"""The store a command works on: `--db`, opening it (refused with a reason rather than a
stack), its URL as given and as shown, and who reads it (the command line for a Party),
whose access-log entries are sealed as the command ends."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.engine import Connection, Engine, make_url

from ..domain.ids import party_case_hint, shown_code
from ..sqlite_url import in_memory
from ..store.engine import StoreError, make_engine, open_store
from ..store.limits import StoreAway, StoreBusy, store_busy
from ..store.store_url import database_url, shown_url
from .common import Failure, db_option

if TYPE_CHECKING:
    from ..domain.access_log import Reader
    from ..domain.visibility import Viewer

# A Party's reads (the visibility rule's queries, the access log and its seal, the signing)
# are imported by the functions below that make them, not here: every command that opens the
# store imports this module, and `accounts`, `tokens`, `load` or `ingest` imported them all,
# some 0.05 s of a start's CPU (session 59)


def with_db(command: Callable[..., None]) -> Callable[..., None]:
    """The command takes `--db URL` as well, which wins over one given before its name."""

    def wrapper(ctx: click.Context, /, db_url: str | None, **kwargs: Any) -> None:
        if db_url:
            ctx.obj = db_url
        command(**kwargs)

    functools.update_wrapper(wrapper, command)  # the command's name and help
    return db_option(click.pass_context(wrapper))


def engine(*, upgrade: bool = False) -> Engine:
    """The store at the current schema; `upgrade`: migrate one at an older schema (else refused).
    Opened once a command: a read's closing seal opened it a second time, a new connection
    with its pragmas and the schema's revision check: 13 of its 71 statements (session 63)."""
    context = click.get_current_context()
    key = f"servicetrail.engine.{upgrade}"  # meta is shared with the group's context
    kept = context.meta.get(key)
    if kept is None or kept[0] != context.obj:
        kept = context.meta[key] = (
            context.obj,
            _opened(functools.partial(open_store, upgrade=upgrade)),
        )
        context.call_on_close(lambda: context.meta.pop(key, None))
    return kept[1]


def engine_as_it_is() -> Engine:
    """The store without building or checking its schema (for `db check`)."""
    return _opened(make_engine)


def _opened(opener: Callable[[str | None], Engine]) -> Engine:
    """The engine, disposed as its command ends: a command run in-process (the tests' Cli)
    left its pool's connections open to the garbage collector, most of the suite's psycopg
    ResourceWarnings, and a command's own process ended them without a word to PostgreSQL."""
    context = click.get_current_context()
    store = _checked_and_opened(context.obj, opener)
    context.call_on_close(store.dispose)
    return store


def _checked_and_opened(url: str | None, opener: Callable[[str | None], Engine]) -> Engine:
    if in_memory(database_url(url)):
        # a load said "loaded 183" and kept nothing; a server answered 500s (audit 25d)
        raise Failure(
            f"{shown_url(database_url(url))} is a SQLite store in memory, which keeps nothing "
            "once the command ends: name a file, e.g. sqlite:///servicetrail.db"
        )
    try:
        host = make_url(database_url(url)).host or ""
    except ValueError:  # said "invalid literal for int() with base 10" (audit 25d)
        raise Failure(
            f"cannot open the store at {shown_store_url()}: its port is not a number"
        ) from None
    except Exception:
        host = ""  # not a URL at all: opening it says why
    if "@" in host:  # the server's name was the password's end, and said so (audit 26c)
        raise Failure(
            f"cannot open the store at {shown_store_url()}: write an @ in its password as %40"
        )
    try:
        return opener(url)
    except StoreAway as e:  # named as the store that cannot be opened for good (exit 2) is
        raise Failure(f"cannot open the store at {shown_store_url()}: {e}", 3) from None
    except (StoreError, StoreBusy):
        raise  # says what to do itself: turned into a Failure with the other expected errors
    except Exception as e:  # an unreachable server or a bad URL: say which, without a stack
        said = getattr(e, "orig", None) or e  # the driver's words, not SQLAlchemy's wrapping
        raise Failure(f"cannot open the store at {shown_store_url()}: {said}") from None


def store_url() -> str:
    """The URL of the store this command works on (as given, or from the settings)."""
    return database_url(click.get_current_context().obj)


def shown_store_url() -> str:
    """That URL as its user writes it, and as it may be shown: without its password (a
    PostgreSQL one was printed; review 25f) or the driver's name."""
    return shown_url(store_url()).replace("postgresql+psycopg://", "postgresql://", 1)


def cli_reader(party_id: str) -> Reader:
    """Who reads, for the access log (SPEC section 8): the command line, for the Party. The
    command's entries are sealed into the signed access logs when it ends."""
    from ..domain.access_log import Reader

    context = click.get_current_context()
    if not context.meta.get("servicetrail.seal_at_close"):
        context.meta["servicetrail.seal_at_close"] = True
        context.call_on_close(_seal_the_logs)
    return Reader(party_id, "cli", "cli")


# A read has given its answer by now: it waits this long at most for another's seal (an
# ingest's takes up to 10 s a million records) or write, not the store's usual lock waits
CLOSING_SEAL_WAIT_SECONDS = 1.0


def _seal_the_logs() -> None:
    from ..signing import key_path_for, signer_for
    from ..store.merkle_log import seal_store

    key = key_path_for(store_url())
    if not key.is_file():
        # a read makes no key of its own: run from another folder than the server's (the
        # default key file on PostgreSQL is the working folder's), `records` signed with a
        # new ./servicetrail.key, and `log verify` then called the checkpoint untrusted
        # (audit 29e). Its entries wait, queued, for a seal by the store's key.
        click.echo(
            f"note: no signing key at {key}: this read's access-log entry waits for the next "
            "seal by a command or server that has the store's key",
            err=True,
        )
        return
    # the store's list of keys only when a read has a key to check against it
    from ..store.log_tree import listed_verifier_keys

    try:
        store = engine()
        known = listed_verifier_keys(store)
        if known and signer_for(store_url()).verifier_key not in known:
            # nor signs with one the store has never used (a stray ./servicetrail.key, made by
            # another command run from here): that would be a rotation, which `log verify`
            # with the store's key called untrusted (review 29f); a write rotates
            click.echo(
                f"note: the signing key at {key} is not one this store signs with: this read's "
                "access-log entry waits for the next seal by the store's key",
                err=True,
            )
            return
        seal_store(store, lock_wait=CLOSING_SEAL_WAIT_SECONDS)
    except Exception as e:  # the entries stay queued for the next seal; the read stands
        busy = store_busy(e)
        why = busy.reason if busy else str(getattr(e, "orig", None) or e).splitlines()[0]
        click.echo(
            f"warning: the access log was not sealed now ({why}); the next seal takes its entries",
            err=True,
        )


def viewer_of(conn: Connection, party_id: str) -> Viewer:
    from ..store.parties import party_meant
    from ..store.queries import viewer_for

    viewer = viewer_for(conn, party_id)
    if viewer is None:
        # the store named too: a newcomer's demo.db beside the default servicetrail.db was
        # "unknown party" with no word of which store was asked (audit 22d)
        unknown = f"unknown party {shown_code(party_id)} in the store {shown_store_url()}"
        meant = party_meant(conn, party_id)
        if meant is not None:  # the operator's command: every Party is its to see
            raise Failure(f"{unknown}: {party_case_hint(shown_code(meant))}")
        raise Failure(f"{unknown} (--db names another; 'servicetrail load users' adds Parties)")
    return viewer
