"""Reject files: every refused record, as it came, with its file, line and a one-line reason.

SPEC section 4: a reject file is named after its input (the name without its last
extension, plus `.rejects.jsonl`) and written beside it. A run replaces the entries of its
own inputs and keeps those of any other input that shares the file, so that no run loses
another's rejects; it never writes over an input. Runs that share a reject file take turns:
each holds it, under an exclusive lock, from its start to its end (audit 20c: a run that
rewrote the file under another's open descriptor lost that run's later rejects). A run that
replaces its inputs' earlier entries writes the new file beside the old one and puts it in
place at its end: killed part way, it leaves the file as the last run to end left it (audit
25a: the earlier entries were gone, and only some of the new ones written).
"""

from __future__ import annotations

import base64
import codecs
import fcntl
import glob
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

import orjson

from ..output import line_ends_escaped
from .sources import PIECE as _PIECE
from .sources import FRESH_SUFFIX, REJECTS_SUFFIX, Span, UnreadableInput, open_binary
from .stream_names import STANDARD_OUTPUT, descriptor_named, inherited_stream, stream_hop


class RejectsOverInput(UnreadableInput):
    """The reject file would be one of the inputs."""


class NotARejectFile(UnreadableInput):
    """The reject file named exists and holds something else (it would be emptied)."""


class RejectsUnwritable(UnreadableInput):
    """The reject file cannot be written (a full disk, a folder that refuses new files)."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(
            f"cannot write the reject file {path}: {error.strerror or error}. The run stopped: "
            "what it stored stays (a run again skips it as duplicates), and what it rejected "
            "is still in the input, to be rejected again once the reject file can be written"
        )


def default_rejects_path(source: Path) -> Path:
    """The input's name without its last extension, plus `.rejects.jsonl` (SPEC section 4):
    `records.jsonl` -> `records.rejects.jsonl`, `ECS17b_4.1.1_X.XML` ->
    `ECS17b_4.1.1_X.rejects.jsonl`, `day.jsonl.gz` -> `day.jsonl.rejects.jsonl` (so it
    differs from `day.jsonl`'s), beside it. In the working folder when the input's folder
    is read-only."""
    # a folder by its own name, also when given as `.` or `..` (whose name is "" or "..")
    folder_name = source.resolve().name if source.is_dir() else ""
    name = (folder_name if source.is_dir() else source.stem or source.name) + REJECTS_SUFFIX
    beside = source.resolve().parent / name
    return beside if os.access(beside.parent, os.W_OK) else Path.cwd() / name


def _owner(entry: bytes) -> str | None:
    try:
        found = orjson.loads(entry).get("file")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


# how every entry this module writes begins (orjson keeps the keys' order)
_ENTRY_START = b'{"file":'


def file_text(path: str | Path) -> str:
    """A file's name as an entry names it: bytes of a name that are not UTF-8 (which Python
    carries as lone surrogates, and JSON cannot hold) written as `\\xNN`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def entry_name(path: str | Path) -> str:
    """The input an entry names, from wherever the run was: a name as typed was read against
    the working folder of a later run, which then took another input's entries for its own
    and dropped them, or kept its own twice (audit 25d). Its folder with links followed, and
    its own name: made absolute as text, `link/../x` named the working folder's x (review
    25e); the file's own link, if it is one, is the name the user gave it."""
    folder, name = os.path.split(os.fspath(path))
    return file_text(os.path.join(os.path.realpath(folder or "."), name))


def _resolved_text(name: str) -> str:
    try:
        return file_text(Path(name).resolve())
    except (OSError, ValueError):  # a name no file can have (a NUL): not one of ours
        return name


# the reject file as this run writes it: appended to, and never through a link at its name
# (whoever may write the folder could point it anywhere; a named link is not opened so)
_WRITING = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW
_NEW = os.O_CREAT | os.O_EXCL


def _fresh_path(path: Path) -> Path:
    """Where a run writes the file that replaces `path` at its end. One name, beside it: only
    the run holding `path` writes there, and a killed run's is removed by the next one."""
    return path.with_name(f".{path.name}{FRESH_SUFFIX}")


def _remove_killed_runs_files(fresh: Path) -> None:
    """The files of runs killed while they wrote under a name of their own, beside `fresh`
    (`tempfile.mkstemp`'s: its name, a dot, eight of its characters); left, each held copies
    of rejected records until someone noticed (review 26f)."""
    for stale in fresh.parent.glob(glob.escape(fresh.name) + ".*"):
        own = stale.name.removeprefix(fresh.name + ".")
        if re.fullmatch(r"[a-z0-9_]{8}", own) and stale.is_file() and not stale.is_symlink():
            with suppress(OSError):
                stale.unlink()


def _position(out: IO[bytes]) -> int | None:
    """How far the stream is, its buffer counted; None for a pipe or a terminal."""
    try:
        return out.tell()
    except OSError:
        return None


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open at `fd` (not replaced nor removed)."""
    try:
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISREG(named.st_mode) and (named.st_dev, named.st_ino) == (
        held.st_dev,
        held.st_ino,
    )


def _one_of(path: Path, inputs: Iterable[Path]) -> bool:
    """Whether `path` is one of the inputs: by name, or as another name of the same file (a
    hard link at the reject file's name was added to, and so was the input: audit 42b)."""
    inputs = list(inputs)
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        return True
    try:
        there = path.stat()
    except OSError:
        return False  # nothing there yet (or nothing to tell): no input either
    for p in inputs:
        with suppress(OSError):
            found = os.stat(p)
            if (found.st_dev, found.st_ino) == (there.st_dev, there.st_ino):
                return True
    return False


class RejectFile:
    """The reject file of one or more inputs (`sources`, as their entries name them).

    Entries an earlier run wrote for these sources are dropped when it opens; entries of
    other inputs stay. Nothing is created for a run without rejects. A new reject file is
    readable by its owner only: it holds the records as they came, payloads included, and an
    input may be a link to a file its reader could not otherwise read."""

    def __init__(
        self,
        path: Path,
        sources: Iterable[str | Path] = (),
        inputs: Iterable[Path] = (),
        named: bool = False,
        folders: Iterable[Path] = (),
        shown: Path | None = None,
    ) -> None:
        """`named`: the path was given (--rejects), not made beside an input: a link there is
        the user's own choice (`--rejects /dev/stderr`), and is followed. `folders`: inputs
        that are folders, whose entries are theirs whether or not the file is still there (an
        entry of a file since removed from the folder stayed for good). `shown`: the name as
        the user gave it, for what is said of it (its folder resolved, `/dev/fd/3` was said as
        `/proc/<pid>/fd/3`; review 47b)."""
        self.path = path
        self.shown = shown or path
        self._follow = named
        self.count = 0
        self._out: IO[bytes] | None = None
        self._readers: dict[str, IO[bytes]] = {}  # inputs long lines are copied from
        # the last input an entry named, and its name: its folder's links were resolved again
        # for each of its entries, three lstat calls (2.9 s of CPU for 240,000 conflicts). The
        # last one alone, so that a folder of a million inputs holds no million names
        self._named: tuple[str | Path, str] | None = None
        self._fd: int | None = None  # the file held for this run (`_held`)
        self._created = False  # by this run, to be removed at its end if it stays empty
        self._emptied = False
        self._fresh: int | None = None  # the file taking the held one's place at the end
        self._fresh_name = _fresh_path(path)  # and its name
        self._stream: Path | None = None  # the stream a link given leads to (stream_hop)
        if _one_of(path, inputs):
            raise RejectsOverInput(
                f"the reject file {self.shown} would overwrite an input; name another with "
                "--rejects"
            )
        if path.is_symlink() and not named:  # whoever may write the folder could point it anywhere
            raise NotARejectFile(
                f"the reject file {self.shown} is a symbolic link; name the file itself with "
                "--rejects"
            )
        # one not open yet counts too: at the first reject, /dev/fd/6 was the input being
        # read, and the rejects were added to it (review 47b)
        names_one = descriptor_named(os.path.normpath(str(path))) is not None
        self._stream = stream_hop(path) if path.is_symlink() else None
        if descriptor_named(os.path.normpath(str(self._stream or path))) == STANDARD_OUTPUT:
            # where the summary line goes: a pipe of the rejects got it among their lines
            # (review 47j), as `--rejects -` is refused for
            raise NotARejectFile(
                f"the reject file {self.shown} is standard output, which carries the summary "
                "line; name a file, or /dev/stderr"
            )
        if (self._stream or names_one) and inherited_stream(self._stream or path) is None:
            raise NotARejectFile(
                f"the reject file {self.shown} names a descriptor this command did not start "
                "with (its store, say); name a file, or /dev/stderr"
            )
        if path.is_symlink():
            try:
                target = path.resolve()
            except RuntimeError:  # a loop of links: said when the first reject is written
                return
            if self._stream is not None or (target.exists() and not target.is_file()):
                return  # a link to /dev/stderr (`2>log`, `2>>log`, a pipe): written as it is
            # the file it leads to is the reject file: added to as the link, every run's
            # entries piled up, each run's again (audit 28a); a rename replaces the file
            self.path = path = target
            self._fresh_name = _fresh_path(path)
        if path.exists() and not path.is_file():
            if not named:  # a FIFO there blocked the run for ever at its first reject
                raise NotARejectFile(
                    f"the reject file {self.shown} is not a regular file; name another with "
                    "--rejects"
                )
            return  # `--rejects /dev/stderr`: written to as it is
        try:
            self._fd = self._held()
        except RejectsUnwritable:
            if path.exists():
                raise
            return  # a folder that takes no file: said at the first reject, if any
        try:
            self._keep_other_inputs(
                {file_text(Path(s).resolve()) for s in sources},
                [file_text(Path(f).resolve()) + os.sep for f in folders],
            )
        except BaseException:
            self._let_go()
            raise

    @property
    def written_to(self) -> Path:
        """Where the rejects are, as the run's summary says: the file, or down one of the
        command's streams, as the user named it (`/dev/fd/2`, not `/proc/<pid>/fd/2`)."""
        return self.shown if self._stream is not None else self.path

    def _held(self) -> int:
        """The reject file, made if missing, open and locked for this run alone. One whose
        holder replaced or removed it while this run waited is opened again."""
        told = False
        while True:
            try:
                fd = os.open(self.path, _WRITING | _NEW, 0o600)
                created = True
            except FileExistsError:
                try:
                    fd = os.open(self.path, _WRITING)
                    created = False
                except FileNotFoundError:
                    continue  # removed between the two tries: make it
                except OSError as e:
                    raise RejectsUnwritable(self.shown, e) from None
            except OSError as e:
                raise RejectsUnwritable(self.shown, e) from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not told:
                        print(f"waiting for another run that writes {self.shown}", file=sys.stderr)
                        told = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                same = _same_file(fd, self.path)
            except BaseException:
                # Ctrl-C while waiting for another run's lock, in a process that goes on (an
                # in-process run, the tests): its descriptor was left open (session 59)
                os.close(fd)
                raise
            if same:
                self._created = created
                return fd
            os.close(fd)

    def _let_go(self) -> None:
        """Remove the file if it is empty and this run made or emptied it, or it is at its
        input's name (one a run killed before its end left empty): nothing is left behind by
        a run without rejects. Then give up the lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            empty = os.fstat(fd).st_size == 0
            ours = self._created or self._emptied or not self._follow
            if empty and ours and _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # left as it is: an empty reject file is harmless
        finally:
            os.close(fd)

    def _keep_other_inputs(self, ours: set[str], our_folders: list[str]) -> None:
        """Read a line at a time (a reject file may be far larger than memory), the entries
        kept go to a fresh file, which this run then adds its own to and which takes the old
        one's place at its end (`_put_fresh_in_place`). A file that holds nothing of this
        run's inputs is added to as it is."""
        assert self._fd is not None
        with suppress(OSError):
            _fresh_path(self.path).unlink()  # a killed run's
        if os.fstat(self._fd).st_size == 0:
            return
        try:
            fd = os.open(self._fresh_name, _WRITING | _NEW, 0o600)
        except FileExistsError:
            # a folder there, or another user's file in a sticky folder (/tmp): it stopped
            # every run (review 26d); a name of the run's own, as the held file's lock allows,
            # and those of runs killed before (only the holder of the lock makes one)
            _remove_killed_runs_files(self._fresh_name)
            try:
                fd, made = tempfile.mkstemp(
                    prefix=self._fresh_name.name + ".", dir=self.path.parent
                )
            except OSError as e:
                raise RejectsUnwritable(self.shown, e) from None
            self._fresh_name = Path(made)
        except OSError as e:
            raise RejectsUnwritable(self.shown, e) from None
        entries = kept = 0
        cut = False
        resolved: dict[str, str] = {}  # a name's resolve() is a system call per part of it
        try:
            with open(os.dup(self._fd), "rb") as old, open(os.dup(fd), "wb") as out:
                for number, line in enumerate(old, start=1):
                    if not line.strip():
                        continue
                    owner = _owner(line)
                    if owner is None:
                        if not line.endswith(b"\n") and line.startswith(_ENTRY_START):
                            cut = True  # an entry cut short by a run that died writing it
                            continue
                        # a file that is not a reject file (a CSV, notes, a typo of --rejects)
                        # was emptied and deleted, whether or not the run rejected anything
                        raise NotARejectFile(
                            f"{self.shown} exists and is not a reject file (line {number} is "
                            "not a reject entry); name another with --rejects"
                        )
                    entries += 1
                    if owner not in resolved:
                        resolved[owner] = _resolved_text(owner)
                    mine = resolved[owner]
                    if mine not in ours and not mine.startswith(tuple(our_folders)):
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        kept += 1
                    # a whole entry with no line end (a run stopped just after it, an
                    # editor): added to as it was, this run's first ran on from it (28d)
                    cut = cut or not line.endswith(b"\n")
            # some were this run's inputs', or an entry was cut (appended to, it ran on into
            # this run's first, and every later run refused the file; audit 28a): the fresh
            # file replaces them
            if kept < entries or cut:
                self._fresh = fd
        except OSError as e:
            raise RejectsUnwritable(self.shown, e) from None
        finally:
            if self._fresh is None:
                os.close(fd)
                self._fresh_name.unlink(missing_ok=True)

    def _put_fresh_in_place(self) -> None:
        """The fresh file this run wrote, if any, takes the held one's place, whole on the
        disk before it does. Locked first, so that a run waiting for the old one looks again
        and waits for this one. Empty (every entry was this run's inputs', and it rejected
        nothing), the held file is emptied instead, and removed as this run lets it go."""
        if self._fresh is None or self._fd is None:
            return
        try:
            if os.fstat(self._fresh).st_size == 0:
                os.ftruncate(self._fd, 0)
                self._emptied = True
                return
            fcntl.flock(self._fresh, fcntl.LOCK_EX)
            os.fsync(self._fresh)
            os.replace(self._fresh_name, self.path)
        except OSError as e:
            raise RejectsUnwritable(self.shown, e) from None
        self._fd, self._fresh = self._fresh, self._fd  # the old one is dropped with its lock

    def _drop_fresh(self) -> None:
        """The fresh file let go of, and removed if it was not put in place."""
        if self._fresh is None:
            return
        fd, self._fresh = self._fresh, None
        with suppress(OSError):
            if _same_file(fd, self._fresh_name):
                self._fresh_name.unlink()
        os.close(fd)

    def add(
        self,
        line: int,
        reason: str,
        raw: str | bytes | Span,
        source: str | Path,
        whole: bool = False,
    ) -> None:
        """One reject. `raw` is a line of its input (its line end is the separator, not part
        of the record) or, with `whole`, a whole document, kept byte for byte; or where in
        the input it lies (a Span, too long to hold), copied from there."""
        before, start = self.count, None
        try:
            start = _position(self._opened())
            self._write(line, reason, raw, source, whole)
            self.count = before + 1
        except OSError as e:
            self._abandon()
            raise RejectsUnwritable(self.shown, e) from None
        except BaseException:
            # Ctrl-C between the entry's write and its count: a load stopped part way said
            # "rejected 204" of a file holding 205 (CI, session 58). Counted if it was written
            # (where the stream says how far it is: a pipe does not)
            if start is not None and self._out is not None:
                self.count = before + (_position(self._out) not in (None, start))
            raise

    def _opened(self) -> IO[bytes]:
        if self._out is None:
            if self._fd is not None:
                held = self._fresh if self._fresh is not None else self._fd
                self._out = open(os.dup(held), "ab")
            elif (inherited := inherited_stream(self._stream or self.path)) is not None:
                # the command's own stream, written through: opened again, a stream the shell
                # sent to a file (2>log) had its own offset, and its next lines overwrote the
                # rejects written through the new one (audit 25d)
                sys.stderr.flush()
                self._out = open(os.dup(inherited), "ab")
            else:  # a link or a device named with --rejects: not locked, never rewritten
                follow = 0 if self._follow else os.O_NOFOLLOW
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | follow
                self._out = open(os.open(self.path, flags, 0o600), "ab")
        return self._out

    def _write(
        self, line: int, reason: str, raw: str | bytes | Span, source: str | Path, whole: bool
    ) -> None:
        if isinstance(raw, tuple):
            self._write_span(line, reason, raw, source)
            return
        out = self._opened()
        if isinstance(raw, bytes):
            exact = raw if whole else raw.removesuffix(b"\n").removesuffix(b"\r")
            try:
                text, undecodable = exact.decode("utf-8"), None
            except UnicodeDecodeError:  # JSON holds text: the exact bytes ride along in base64
                text, undecodable = (
                    exact.decode("utf-8", "replace"),
                    base64.b64encode(exact).decode("ascii"),
                )
        else:
            text, undecodable = (raw if whole else raw.removesuffix("\n").removesuffix("\r")), None
        entry = {"file": self._entry_name(source), "line": line, "reason": reason, "raw": text}
        if undecodable is not None:
            entry["raw_base64"] = undecodable
        out.write(line_ends_escaped(orjson.dumps(entry)) + b"\n")

    def _entry_name(self, source: str | Path) -> str:
        if self._named is None or self._named[0] != source:
            self._named = (source, entry_name(source))
        return self._named[1]

    def _write_span(self, line: int, reason: str, span: Span, source: str | Path) -> None:
        """The entry `_write` makes, its raw input copied from the input a piece at a time:
        read once to learn whether it is UTF-8, once for `raw` (the text, undecodable bytes
        replaced) and, if not UTF-8, once more for `raw_base64`."""
        _, offset, length = span
        copy = self._copied(source, offset, length)

        def pieces() -> Iterator[bytes]:
            copy.seek(0)
            while piece := copy.read(_PIECE):
                yield piece

        checking = codecs.getincrementaldecoder("utf-8")()
        try:
            for piece in pieces():
                checking.decode(piece)
            checking.decode(b"", final=True)
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        out = self._opened()
        head = {"file": self._entry_name(source), "line": line, "reason": reason, "raw": ""}
        out.write(line_ends_escaped(orjson.dumps(head)[:-2]))  # up to raw's opening quote
        text = codecs.getincrementaldecoder("utf-8")("replace")
        for piece in pieces():
            out.write(line_ends_escaped(orjson.dumps(text.decode(piece))[1:-1]))
        out.write(line_ends_escaped(orjson.dumps(text.decode(b"", final=True))[1:-1]))
        if not utf8:
            out.write(b'","raw_base64":"')
            left_over = b""
            for piece in pieces():
                piece = left_over + piece
                whole_groups = len(piece) - len(piece) % 3  # base64 of 3-byte groups joins up
                out.write(base64.b64encode(piece[:whole_groups]))
                left_over = piece[whole_groups:]
            out.write(base64.b64encode(left_over))
        out.write(b'"}\n')
        copy.close()

    def _copied(self, source: str | Path, offset: int, length: int | None) -> IO[bytes]:
        """The span copied once into a temporary file, from a reader of the input kept between
        spans: each span read again from the start of a gzip input (a seek there reads all
        before it) made many long lines quadratic (review, session 17). Spans of one input
        come in file order, so the reader only goes forward (else it starts again)."""
        kept = self._readers.pop(str(source), None)
        if kept is not None and kept.tell() > offset:
            kept.close()
            kept = None
        reader = kept or open_binary(Path(source))
        reader.seek(offset)  # forward from where it is
        copy = tempfile.TemporaryFile()
        left = length
        while left is None or left > 0:
            piece = reader.read(_PIECE if left is None else min(_PIECE, left))
            if not piece:
                break
            copy.write(piece)
            if left is not None:
                left -= len(piece)
        self._readers[str(source)] = reader
        return copy

    def _close_readers(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def close(self) -> None:
        self._close_readers()
        try:
            if self._out is not None:
                try:
                    self._out.close()  # a full disk may only say so here, as the buffer goes out
                except OSError as e:
                    self._out = None
                    raise RejectsUnwritable(self.shown, e) from None
                self._out = None
            self._put_fresh_in_place()
        finally:
            self._drop_fresh()  # unless put in place: what the last whole run wrote stays
            self._let_go()

    def _abandon(self) -> None:
        self._close_readers()
        self._drop_fresh()
        if self._out is not None:
            try:
                self._out.close()
            except OSError:
                pass  # already failing: the first error is the one to tell
            self._out = None
