"""The files a command writes for its user (`--output`, `--rejects`): in a folder that exists,
never one of the store's own files or keys, a report readable by its user alone, and an
export held back until its access-log entry is stored."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import IO, TextIO

import click

from ..signing import key_path_for, trust_file
from ..sqlite_url import sqlite_file
from .common import Failure
from .store_access import store_url


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
    first byte is sent), and a read that fails leaves no partial file behind. Used in a
    `with`: a read refused or failed before `send` left the file open to the collector, in a
    process that goes on (the tests run every command in theirs; session 59)."""

    def __init__(self) -> None:
        self.text: TextIO = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")

    def __enter__(self) -> HeldOutput:
        return self

    def __exit__(self, *_: object) -> None:
        self.text.close()

    def write_bytes(self, chunk: bytes) -> None:
        self.text.flush()
        self.text.buffer.write(chunk)

    def send(self, path: Path | None) -> None:
        self.text.flush()
        self.text.buffer.seek(0)
        sys.stdout.flush()
        try:
            target = _beside(path) if path else None
            if target is None or not _put_in_place(self.text.buffer, target):
                with _report_file(path) if path else nullcontext(sys.stdout.buffer) as out:
                    shutil.copyfileobj(self.text.buffer, out)
        except OSError as e:
            if path is None or not e.strerror:
                raise
            # the report's own name: a full disk said "[Errno 28] No space left on device"
            # naming no file, and a folder put at the name in between named the hidden file
            # the report was written to (review 46f)
            raise Failure(f"--output: {path}: {e.strerror}") from None
        finally:
            self.text.close()


def may_write(path: Path) -> None:
    """A report's file, refused if it is there and this user may not write it, as a shell's
    `>` refuses it: renamed over, a read-only report in a folder of the user's was replaced
    all the same (session 46). Opened for writing, not emptied: asking the file itself, it
    is the kernel that answers, for root, ACLs and read-only mounts alike."""
    target = resolved(path, "--output")
    if not target.is_file():  # a pipe is not opened here (it would wait for its reader)
        return
    try:
        os.close(os.open(target, os.O_WRONLY))
    except OSError as e:
        raise Failure(f"--output: {path}: {e.strerror}; the file is left as it was") from None


def _beside(path: Path) -> Path | None:
    """The report's real name, when the report is written beside it and put in its place: a
    file, made or to be made. None for what is written in place: a pipe or a device, a link
    (`/dev/stdout` to a shell's `>> app.log`: the file it reaches is the user's own, and stays
    that file), a file of more than one name (hard links: renamed over, this name was split
    off and the others kept the earlier report)."""
    target = resolved(path, "--output")
    if os.path.islink(path):
        return None
    try:
        found = os.stat(target)
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(found.st_mode) or found.st_nlink > 1:
        return None
    may_write(target)  # again: made read-only since the command began
    return target


_NAMED_BYTES = 200  # of the report's name in its new file's


def _put_in_place(source: IO[bytes], target: Path) -> bool:
    """The report written whole beside its file, then put in its place in one step: emptied
    first and then written, a report stopped part way (killed, a full disk) lost the one
    before and left a cut one that still read as a report (audit 45b). Whoever reads the
    earlier one meanwhile reads it to its end. A name, not a file, is replaced: one linked to
    a store's file in between replaces the link, and the store's file is left as it was.
    False, with nothing done, when the folder takes no new file from this user, or when the
    earlier report is another user's that this process may not give back to that user."""
    try:
        # the report's name, cut to leave room for the dot and mkstemp's eight characters
        # in a name's 255 bytes: a report named 247 bytes or more was refused as too long
        short = os.fsdecode(os.fsencode(target.name)[:_NAMED_BYTES])
        descriptor, name = tempfile.mkstemp(prefix=f".{short}.", dir=target.parent)
    except PermissionError:
        return False
    written = Path(name)
    # made and removed in one place: any error or Ctrl-C from here on leaves no hidden file
    # beside the report (SIGKILL, or a machine that stops, cannot be helped: the next
    # report's own file has another name, and this one is left for the user to remove)
    try:
        with open(descriptor, "wb") as out:  # mkstemp's mode: the user's alone (0600)
            if not _keep_owner(out.fileno(), target):
                # renamed over, another user's report (group- or world-writable) became this
                # user's at 0600, unreadable by its owner, or in a sticky folder such as /tmp
                # the rename was refused, naming this hidden file; a shell's > writes it in
                # place, owner kept, and so does the caller
                written.unlink()
                return False
            shutil.copyfileobj(source, out)
            out.flush()
            # on the disk before its name is: a crash after the rename could otherwise
            # leave the name on an empty or cut file, the earlier report gone
            os.fsync(out.fileno())
        if target in _stores_own_files() or _the_stores_own(target):
            raise Failure(f"--output: {target} is the store's own file or key; name another file")
        os.replace(written, target)
    except BaseException:
        with suppress(OSError):
            written.unlink()
        raise
    _sync_folder(target.parent)
    return True


def _keep_owner(descriptor: int, target: Path) -> bool:
    """The earlier report's owner and group for the new one, as far as this process may give
    them (root: both; another user: a group of its own): root's report over a user's made it
    root's, unreadable by that user at 0600. Its mode is not kept: a report is the user's
    alone (docs/security.md, review 23d). Whether the new one has the earlier one's owner."""
    try:
        earlier = os.stat(target)
    except OSError:
        return True  # a new report: mkstemp's owner, this user
    for owner in (earlier.st_uid, -1):
        try:
            os.fchown(descriptor, owner, earlier.st_gid)
            break
        except OSError:
            continue
    return os.fstat(descriptor).st_uid == earlier.st_uid


def _sync_folder(folder: Path) -> None:
    """The rename on the disk too, where the system allows a folder to be synced."""
    with suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
