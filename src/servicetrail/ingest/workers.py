"""Parsing an input file in forked worker processes, results back in file order.

Validating a SAT record costs about as much CPU as storing it, and DUIS XML costs several
times more; one process doing both leaves the second core idle. A worker reads the file
itself (so raw lines never cross a pipe), parses its share of fixed-size chunks of lines,
and sends each chunk's prepared rows and rejects back; the loading process only writes.

A worker never touches the store, the terminal or anything but its own pipe, and leaves
with os._exit: it shares the parent's database sockets and stdio after fork, and closing
or flushing those from the child would disturb the parent. If the parent dies (SIGKILL
mid-load), the worker's next write fails on the closed pipe and it exits too, so nothing
outlives the loader holding its stdout open.
"""

from __future__ import annotations

import ctypes
import fcntl
import marshal
import os
import pickle
import signal
import struct
from collections.abc import Callable, Iterable, Iterator
from itertools import count
from pathlib import Path
from typing import IO, Any

from . import sources
from .sources import DAMAGED, Span, damage_reason, open_binary, without_bom

Lines = list[tuple[int, bytes]]  # (line number, raw line), blank lines left out
Chunk = tuple[
    list[Any], list[tuple[Any, ...]], int
]  # (prepared rows, rejects as (line, reason, raw), bytes read)
Parser = Callable[[Lines], Chunk]
Damage = tuple[int, str] | None  # (line, reason): where a compressed input became unreadable

_LENGTH = struct.Struct("<Q")
CHUNK_BYTES = 8 << 20
_F_SETPIPE_SZ = 1031  # Linux: a deeper pipe lets a worker run further ahead of the writer
_PR_SET_PDEATHSIG = 1


LongLine = tuple[int, int, int, int]  # (line number, offset, length without its end, bytes read)


def chunks_of(
    stream: IO[bytes], size: int, index: int = 0, step: int = 1
) -> Iterator[tuple[Lines, Damage, list[LongLine]]]:
    """Chunk k: the next `size` physical lines, or fewer when they reach CHUNK_BYTES (huge
    payloads must not make a chunk huge), or more when a run of blank lines ends it; this
    yields chunks index, index+step, index+2*step... Every worker reads the whole file, so
    each finds the same chunk boundaries, and the same damage to a compressed file: the chunk
    it falls in carries it, and is the last. A line over `sources.max_line_bytes` is not held:
    the chunk names where it lies instead."""
    number, offset = 1, 0  # the next line's
    lines = sources.bounded_lines(stream, sources.max_line_bytes())
    for k in count():
        block: Lines = []
        long_lines: list[LongLine] = []
        read = held = 0  # this chunk's lines, blank ones too, and the bytes it holds
        damage: Damage = None
        try:
            for line in lines:
                if isinstance(line, sources.Blanks):
                    taken, size_read = line.lines, line.size
                elif isinstance(line, tuple):
                    long_lines.append((number, offset, *line))
                    taken, size_read = 1, line[1]
                else:
                    taken, size_read = 1, len(line)
                    held += len(line)
                    # most lines start with a non-space, and so skip the copying strip(); a
                    # first line's BOM is left on it for _parsed, which keeps it for a reject
                    if line and (
                        line[0] not in sources.SPACE or without_bom(line).strip(sources.BLANK)
                    ):
                        block.append((number, line))
                number, offset, read = number + taken, offset + size_read, read + taken
                if read >= size or held >= CHUNK_BYTES:
                    break
        except DAMAGED as e:
            damage = (number, damage_reason(e))
        if not read and damage is None:
            return
        if k % step == index:
            yield block, damage, long_lines
        if damage is not None:
            return


def _parsed(parse: Parser, lines: Lines, damage: Damage, long_lines: list[LongLine]) -> Chunk:
    """The chunk parsed; damage to the file where it ends becomes a reject at its line, with
    nothing of the unreadable rest as its raw input, and each long line a reject whose raw
    input is copied from the file."""
    bom = b""
    if lines and lines[0][0] == 1:
        first = without_bom(lines[0][1])
        bom = lines[0][1][: len(lines[0][1]) - len(first)]
        lines = [(1, first), *lines[1:]] if bom else lines
    rows, rejected, size = parse(lines)
    if bom and rejected and rejected[0][0] == 1 and isinstance(rejected[0][2], bytes):
        # written to the reject file as it came (SPEC: a rejected record loses nothing)
        rejected[0] = (1, rejected[0][1], bom + rejected[0][2], *rejected[0][3:])
    if long_lines:
        reason = sources.too_long(sources.max_line_bytes())
        for number, offset, length, read in long_lines:
            span: Span = ("span", offset, length)
            rejected.append((number, reason, span))
            size += read
        rejected.sort(key=lambda reject: reject[0])
    if damage is not None:
        rejected.append((damage[0], damage[1], b""))
    return rows, rejected, size


def parsed_chunks(path: Path, parse: Parser, workers: int, chunk_lines: int) -> Iterator[Chunk]:
    """`parse` applied to every chunk of the file, in file order; `workers` 0 parses in this
    process."""
    if workers <= 0:
        with open_binary(path) as stream:
            for lines, damage, long_lines in chunks_of(stream, chunk_lines):
                yield _parsed(parse, lines, damage, long_lines)
        return
    children: list[tuple[int, IO[bytes]]] = []
    try:
        for index in range(workers):
            children.append(
                _start(path, parse, chunk_lines, index, workers, [s for _, s in children])
            )
    except BaseException:
        _end(children)
        raise
    yield from _drain(children)


def _drain(children: list[tuple[int, IO[bytes]]]) -> Iterator[Any]:
    """What the children send, taking turns, until one ends (or raises what a child raised);
    the children are ended whatever happens, also when the consumer stops early."""
    try:
        for k in count():
            kind, body = _receive(children[k % len(children)][1])
            if kind == "end":
                return
            if kind == "error":
                raise body
            yield body
    finally:
        _end(children)


def _end(children: list[tuple[int, IO[bytes]]]) -> None:
    for _, stream in children:
        stream.close()  # a worker still writing gets EPIPE and leaves
    for pid, _ in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _start(
    path: Path, parse: Parser, chunk_lines: int, index: int, workers: int, siblings: list[IO[bytes]]
) -> tuple[int, IO[bytes]]:
    return _fork_writer(lambda fd: _work(fd, path, parse, chunk_lines, index, workers), siblings)


def _fork_writer(
    child: Callable[[int], None], siblings: Iterable[IO[bytes]] = ()
) -> tuple[int, IO[bytes]]:
    """A forked process running `child(write end of a pipe)`, and the pipe's read end here."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    pid = os.fork()
    if pid == 0:
        try:  # the child must never return into the parent's code, which would write the store too
            os.close(read_end)
            for stream in siblings:  # only the parent may hold a read end, or a worker outlives it
                os.close(stream.fileno())
            child(write_end)
        finally:
            os._exit(1)
    os.close(write_end)
    return pid, os.fdopen(read_end, "rb")


def _work(fd: int, path: Path, parse: Parser, chunk_lines: int, index: int, workers: int) -> None:
    code = 1
    try:
        _tied_to_parent()
        out = os.fdopen(fd, "wb", closefd=False)
        try:
            with open_binary(path) as stream:
                for lines, damage, long_lines in chunks_of(stream, chunk_lines, index, workers):
                    _send(out, ("chunk", _parsed(parse, lines, damage, long_lines)))
            _send(out, ("end", None))
            code = 0
        except BrokenPipeError:
            pass  # the parent has gone
        except BaseException as e:  # the parent re-raises it, as if it had parsed the line itself
            try:
                _send(out, ("error", _picklable(e)))
            except BaseException:
                pass
    finally:
        os._exit(code)


def _tied_to_parent() -> None:
    """A worker stops with its parent and only so: Ctrl-C and SIGTERM are the parent's to
    handle (a forked worker inherits the command line's SIGTERM handler, which would raise
    inside a half-sent chunk), and the parent's death kills it."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the closed pipe still ends the worker


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _send(out: IO[bytes], message: tuple[str, Any]) -> None:
    # marshal: rows are tuples of str, int and None, which it writes twice as fast as pickle
    # (both ends are the same interpreter); pickle only for an exception
    try:
        data = b"m" + marshal.dumps(message)
    except ValueError:
        data = b"p" + pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)))
    out.write(data)
    out.flush()


def _receive(stream: IO[bytes]) -> tuple[str, Any]:
    head = stream.read(_LENGTH.size)
    if len(head) == _LENGTH.size:
        (length,) = _LENGTH.unpack(head)
        data = stream.read(length)
        if len(data) == length:
            return (
                marshal.loads(memoryview(data)[1:])
                if data[:1] == b"m"
                else pickle.loads(memoryview(data)[1:])
            )
    raise RuntimeError("a parsing worker ended unexpectedly (killed, or out of memory?)")


def produced(items: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """What `items()` yields, made in one forked worker process while this one consumes it
    (for an input whose records cannot be cut into chunks by lines, such as a CSV whose
    quoted fields may hold line breaks). The worker runs at most a pipe's depth ahead, so
    memory stays bounded; an exception it raises is raised here."""
    yield from _drain([_fork_writer(lambda fd: _produce(fd, items))])


def _produce(fd: int, items: Callable[[], Iterable[Any]]) -> None:
    code = 1
    try:
        _tied_to_parent()
        out = os.fdopen(fd, "wb", closefd=False)
        try:
            for item in items():
                _send(out, ("chunk", item))
            _send(out, ("end", None))
            code = 0
        except BrokenPipeError:
            pass  # the parent has gone
        except BaseException as e:
            try:
                _send(out, ("error", _picklable(e)))
            except BaseException:
                pass
    finally:
        os._exit(code)
