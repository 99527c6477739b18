"""What every command of the command line shares: parameter types, the store, failing, summaries."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import click
from click.core import ParameterSource
from sqlalchemy.engine import Connection, Engine, make_url

from ..domain.ids import MAX_ID, InvalidValue, shown, whole_number
from ..domain.times import parse_bound, parse_time
from ..domain.triggers import window_minutes
from ..domain.access_log import Reader
from ..domain.search import InvalidField, Search, build_search
from ..domain.visibility import Viewer
from ..ingest.summary import Summary
from ..signing import key_path_for, signer_for, trust_file
from ..store.engine import (
    StoreError,
    database_url,
    make_engine,
    open_store,
    shown_url,
)
from ..sqlite_url import in_memory, sqlite_file
from ..store.limits import store_busy
from ..store.log_audit import listed_verifier_keys
from ..store.merkle_log import seal_store
from ..store.queries import viewer_for

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """The one way a command fails: click prints "Error: message" and exits with `code`
    (2: the request cannot be done as asked; 3: the store gave up on it; 1: it was done,
    but not all of it)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        # click declares exit_code per class and reads it from the instance it caught: one
        # type carrying any code sets it per instance
        self.exit_code = code  # type: ignore[misc]


class Parsed(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A parameter read by the same parser as the API's: its InvalidValue is click's usage
    error naming the parameter."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # already converted (click converts defaults too)
            return value
        if ctx is not None and param is not None and param.name:
            ctx.meta.setdefault(AS_TYPED, {})[param.name] = value
        try:
            return self.parse(value)
        except InvalidValue as e:
            self.fail(str(e), param, ctx)


AS_TYPED = "servicetrail.as_typed"  # in a command's context: its parsed options as typed


def as_typed(param: str) -> str | None:
    """A parsed option's text as it was typed (an access-log entry's filters are as asked:
    `report own --from 2026-03-01` was logged as 2026-03-01T00:00:00Z; audit 25d)."""
    return click.get_current_context().meta.get(AS_TYPED, {}).get(param)


def count(text: str) -> int:
    """A count of 1 or more in the digits 0-9 (click's INT takes what int() does: '٣', '1_0')."""
    value = whole_number(text)  # its error names the value: click adds the option's name
    if value < 1:
        raise InvalidValue(f"{text} is not 1 or more")
    if value > MAX_ID:  # what a store's integer holds: past it, the driver's traceback (audit 23a)
        raise InvalidValue(f"{text} is over {MAX_ID}")
    return value


TIME = Parsed("TIME", parse_time)
BOUND = Parsed("TIME", parse_bound)  # --from and --to, which part the stored times
COUNT = Parsed("N", count)
WINDOW = Parsed("MINUTES", window_minutes)


def in_existing_folder(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> Path | None:
    """A file option's check (`--rejects`, `--output`): a file this command will write goes in
    a folder that exists, refused before any work rather than failing when it is written. Read
    from the text as typed: a Path has lost a trailing '/' ('missing/' made a file 'missing')
    and the './' of './-', a file the user named on purpose (review 24d)."""
    if value is None:
        return None
    option = f"--{param.name}"
    if not value:
        raise Failure(f"{option}: the file name is empty")
    if value == "-":
        if param.name == "output":
            return None  # the usual word for standard output (it made a file named -)
        # standard output carries the summary line
        raise Failure(f"{option}: name a file; rejects are not written to standard output")
    if os.path.basename(value) in ("", ".", ".."):  # 'x/', 'x/.', 'x/..' (review 25e)
        raise Failure(f"{option}: {value!r} names a folder; name a file")
    path = Path(value)
    if not resolved(path, option).parent.is_dir():
        raise Failure(f"{option}: the folder {str(path.parent)!r} does not exist")
    return path


def resolved(path: Path, what: str) -> Path:
    """`path` with its links followed, or a usage error: a loop of symbolic links was a
    traceback (RuntimeError, review 24d)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:
        raise Failure(f"{what}: {str(path)!r} cannot be followed to a file ({e})") from None


def db_option(command: F) -> F:
    """`--db URL`: before the command name (on the group) or after it (on every command that
    opens the store); the store's URL otherwise comes from the settings."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        default=None,
        help="Database URL (default: $SERVICETRAIL_DATABASE_URL, else sqlite:///servicetrail.db).",
    )(command)


def with_db(command: Callable[..., None]) -> Callable[..., None]:
    """The command takes `--db URL` as well, which wins over one given before its name."""

    def wrapper(ctx: click.Context, /, db_url: str | None, **kwargs: Any) -> None:
        if db_url:
            ctx.obj = db_url
        command(**kwargs)

    functools.update_wrapper(wrapper, command)  # the command's name and help
    return db_option(click.pass_context(wrapper))


def engine(*, upgrade: bool = False) -> Engine:
    """The store at the current schema; `upgrade`: migrate one at an older schema (else refused)."""
    return _opened(functools.partial(open_store, upgrade=upgrade))


def engine_as_it_is() -> Engine:
    """The store without building or checking its schema (for `db check`)."""
    return _opened(make_engine)


def _opened(opener: Callable[[str | None], Engine]) -> Engine:
    url = click.get_current_context().obj
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
    except StoreError:
        raise  # says what to do itself: turned into a Failure with the other expected errors
    except Exception as e:  # an unreachable server or a bad URL: say which, without a stack
        said = getattr(e, "orig", None) or e  # the driver's words, not SQLAlchemy's wrapping
        raise Failure(f"cannot open the store at {shown_url(database_url(url))}: {said}") from None


def store_url() -> str:
    """The URL of the store this command works on (as given, or from the settings)."""
    return database_url(click.get_current_context().obj)


def shown_store_url() -> str:
    """That URL as its user writes it, and as it may be shown: without its password (a
    PostgreSQL one was printed; review 25f) or the driver's name."""
    return shown_url(store_url()).replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def progress_for(paths: list[Path]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (cli.progress); nothing when the output is a pipe or a
    file."""
    if not sys.stderr.isatty():
        yield None
        return
    from .progress import TerminalBar, terminal_progress

    total = sum(
        p.stat().st_size
        for path in paths
        for p in ([path] if path.is_file() else path.rglob("*"))
        if p.is_file()
    )
    with terminal_progress() as bar:
        yield TerminalBar(bar, total)


@contextmanager
def kept_if_stopped(sealed_later: bool) -> Iterator[Summary]:
    """The summary a load counts into as its batches commit. A load that stops part way (a
    store that gave up, say) has committed its batches so far: they stay, and running the
    same command again adds only the rest. Say so, with the counts, before the error, so that
    nobody reads the failure as "nothing was loaded"."""
    summary = Summary()
    try:
        yield summary
    except (Exception, KeyboardInterrupt) as stopped:
        if summary.loaded or summary.rejected or summary.duplicates or summary.waiting:
            later = (
                " (their logs are sealed by the next ingest or the server)" if sealed_later else ""
            )
            if summary.waiting:
                # changes of supplier among them, half applied perhaps (README)
                later += (
                    f"; {summary.waiting} lines that waited for the file's end were not applied"
                )
            click.echo(
                f"stopped part way; kept from before: {summary.line()}{later}. Running the same "
                "command again adds only what is missing.",
                err=True,
            )
            for path in summary.reject_files:
                click.echo(
                    f"rejected records, with their line and reason: {printable(str(path))}",
                    err=True,
                )
        if isinstance(stopped, KeyboardInterrupt):
            # told apart from rejects and findings (exit 1): 130, as a shell says of Ctrl-C
            raise Failure("interrupted", 130) from None
        raise


def printable(text: str) -> str:
    """`text` for a terminal: what is not printable (control characters such as ESC, which a
    file's name may hold, direction and zero-width marks, bytes of a name that were not
    UTF-8) written as its escape, line breaks aside."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable() or c == "\n"
        else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


def report_summary(summary: Summary) -> None:
    click.echo(summary.line())
    if summary.corrected:
        click.echo(f"({summary.corrected} of those corrected an existing entry)", err=True)
    if summary.superseded:
        click.echo(
            f"({summary.superseded} of those skipped gave an interval that a later line of the "
            "file gives again, which was taken instead)",
            err=True,
        )
    if summary.skipped_files:  # not loaded, not rejected: said, never dropped in silence
        names = ", ".join(printable(str(p)) for p in summary.skipped_files[:5])
        more = len(summary.skipped_files) - 5
        click.echo(
            f"({len(summary.skipped_files)} file(s) in the folder(s) skipped, hidden, holding "
            "neither DUIS XML nor JSON Lines, or not regular files: "
            f"{names}{f' and {more} more' if more > 0 else ''})",
            err=True,
        )
    for path in summary.reject_files:
        click.echo(
            f"rejected records, with their line and reason: {printable(str(path))}", err=True
        )
    if summary.rejected:
        raise Failure(f"{summary.rejected} record(s) rejected", 1)


def as_asked(names: dict[str, str]) -> dict[str, Any]:
    """The options the command line gave, for an access-log entry's filters (SPEC section 8:
    "as asked"): `names` maps each entry key to the command's parameter. A default that was
    not typed was not asked (entries said `"scope": "all"` for a plain `records`)."""
    context = click.get_current_context()
    return {
        key: context.params[param]
        for key, param in names.items()
        if context.params.get(param) is not None
        and context.get_parameter_source(param) is not ParameterSource.DEFAULT
    }


# the option that carries each field of a search
OPTION_OF = {
    "device_id": "--device",
    "request_id": "--request-id",
    "from": "--from",
    "to": "--to",
    "srv": "--srv",
    "kind": "--kind",
    "scope": "--scope",
}


def search_or_fail(**options: Any) -> Search:
    """A search from a command's options, read as the API reads its parameters; a value it
    refuses is named by its option, in click's words."""
    try:
        return build_search(**options)
    except InvalidField as e:
        option = OPTION_OF.get(e.field, e.field)
        raise Failure(f"Invalid value for '{option}': {e.message}") from None


def cli_reader(party_id: str) -> Reader:
    """Who reads, for the access log (SPEC section 8): the command line, for the Party. The
    command's entries are sealed into the signed access logs when it ends."""
    context = click.get_current_context()
    if not context.meta.get("servicetrail.seal_at_close"):
        context.meta["servicetrail.seal_at_close"] = True
        context.call_on_close(_seal_the_logs)
    return Reader(party_id, "cli", "cli")


# A read has given its answer by now: it waits this long at most for another's seal (an
# ingest's takes up to 10 s a million records) or write, not the store's usual lock waits
CLOSING_SEAL_WAIT_SECONDS = 1.0


def _seal_the_logs() -> None:
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
    viewer = viewer_for(conn, party_id)
    if viewer is None:
        # the store named too: a newcomer's demo.db beside the default servicetrail.db was
        # "unknown party" with no word of which store was asked (audit 22d)
        raise Failure(
            f"unknown party {shown(party_id)} in the store {shown_url(store_url())} (--db names "
            "another; 'servicetrail load users' adds Parties)"
        )
    return viewer


_stdout_closed = False


def standard_streams() -> None:
    """The three streams as every command expects them (audit 23a). A closed standard input
    reads as empty, as `< /dev/null` does (a password prompt met None and a traceback); a
    closed standard error or output takes what would be said there (progress met None, and
    the whole ingest failed unseen, exit 1), except what is shown once (`shown_once`).
    Output is UTF-8 whatever the locale, as records and reports always were (watch list and
    the access log failed on a Latin-1 terminal, after `watch add` had made the watch)."""
    global _stdout_closed
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (the process's stream)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    elif hasattr(sys.stderr, "reconfigure"):  # a stream a caller put there may not have it
        sys.stderr.reconfigure(errors="backslashreplace")
    _stdout_closed = sys.stdout is None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")


def shown_once() -> None:
    """Before making what is printed this once (a token, a webhook's secret): refused when
    standard output is closed, since it would be made and reach no one."""
    if _stdout_closed:
        raise Failure("standard output is closed: what this makes is shown only once there")


def not_the_stores_own(path: Path, option: str) -> Path:
    """A file a command is to write, if it is none of the store's: not its SQLite files, its
    signing key or trust file, nor any SQLite database or PEM key. `report own --output` onto
    the store wrote CSV over the whole trail and exited 0 (audit 23a)."""
    target = resolved(path, f"--{option}")
    if target in _stores_own_files() or _the_stores_own(target):
        raise Failure(f"--{option}: {path} is the store's own file or key; name another file")
    if target.is_file():
        with suppress(OSError), open(target, "rb") as existing:
            if existing.read(16).startswith(NOT_A_REPORT):
                raise Failure(
                    f"--{option}: {path} holds a database or a key, not a report; name another file"
                )
    return path


def _stores_own_files() -> list[Path]:
    """The store's SQLite files, as SQLite opens them (a file: URI's path was read as
    ./file:...), its signing key and its trust file."""
    protected = []
    database = sqlite_file(store_url())
    if database is not None:
        store = resolved(database, "the store")
        protected += [store, *(store.with_name(store.name + s) for s in SQLITE_SIDE_FILES)]
    key = resolved(key_path_for(store_url()), "the signing key")
    return [*protected, key, trust_file(key)]


def _the_stores_own(file: Path | os.stat_result) -> bool:
    """Whether a file (or an opened file's stat) is one of the store's by device and inode:
    a hard link to one has a path of its own (the -shm and the trust file begin with nothing
    NOT_A_REPORT knows; review 23f)."""
    try:
        found = file if isinstance(file, os.stat_result) else file.stat()
    except OSError:
        return False  # a file still to be made is no one's
    for own in _stores_own_files():
        with suppress(OSError):
            if os.path.samestat(found, own.stat()):
                return True
    return False


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# how a SQLite database, its write-ahead log and a PEM key begin, whatever their path
NOT_A_REPORT = (b"SQLite format 3\x00", b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83", b"-----BEGIN")


def _report_file(path: Path) -> IO[bytes]:
    """A file written for the command's user alone, if it makes it: a report holds payloads
    (made 0644 under the usual umask; reject files and stores are 0600). Opened before it is
    emptied, and emptied only if it is none of the store's files: the check by name before
    the export left the time of a whole export to link that name to one (review 24d)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    opened = os.fstat(descriptor)
    if _the_stores_own(opened):
        os.close(descriptor)
        raise Failure(f"--output: {path} is the store's own file or key; name another file")
    if stat.S_ISREG(opened.st_mode):
        os.ftruncate(descriptor, 0)
        # an earlier report's 0644 is not kept (O_CREAT sets only a new file's mode); a file
        # reached through a link (/dev/stdout into a shell's redirection) is the user's own
        if not os.path.islink(path):
            with suppress(OSError):
                os.fchmod(descriptor, 0o600)
    return open(descriptor, "wb")


class HeldOutput:
    """An export's output, held in an unnamed temporary file until `send`: its access-log
    entry, which counts what was written here, is stored first (SPEC section 8: before the
    first byte is sent), and a read that fails leaves no partial file behind."""

    def __init__(self) -> None:
        self.text: TextIO = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")

    def write_bytes(self, chunk: bytes) -> None:
        self.text.flush()
        self.text.buffer.write(chunk)

    def send(self, path: Path | None) -> None:
        self.text.flush()
        self.text.buffer.seek(0)
        sys.stdout.flush()
        with _report_file(path) if path else nullcontext(sys.stdout.buffer) as out:
            shutil.copyfileobj(self.text.buffer, out)
        self.text.close()
