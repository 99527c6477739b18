"""A throwaway PostgreSQL server on 127.0.0.1, from the machine's binaries (tests and bench).

The tests start one per worker and clone each test's database from a template that the
Alembic migrations built (tests/conftest.py); a benchmark starts one per run, with the
shared_buffers a tuned server would have (bench/harness.py).
"""

from __future__ import annotations

import glob
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries: run scripts/system-deps (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


MEMORY_FOLDER_ROOM = 1 << 30  # a test server peaked at ~100 MB; a container's /dev/shm may be 64 MB


def _memory_folder(wanted: bool) -> str | None:
    """/dev/shm for a test server's data when asked and the machine has room there. The
    tests make and drop a database for each test, thousands of files a minute: on a nearly
    full ext4 disk each new file's inode search cost more than the test itself (the kernel's
    `recently_deleted` scan took most of the server's CPU in a profile)."""
    shm = Path("/dev/shm")
    if not (wanted and shm.is_dir() and os.access(shm, os.W_OK)):
        return None
    room = os.statvfs(shm)
    return str(shm) if room.f_bavail * room.f_frsize >= MEMORY_FOLDER_ROOM else None


# how many ports a start tries, each picked free, before it gives up (PgServer._start)
PORT_TRIES = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _started_at(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), telling it from a later process
    given the same pid; None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before may hold spaces


def _owner_gone(folder: Path) -> bool:
    try:
        pid, started = (folder / "owner").read_text().split()
    except (OSError, ValueError):  # pg-throwaway's running server, or a folder left half-built
        return _abandoned(folder)
    return _started_at(int(pid)) != started


# How long a folder with no owner and no server running may stay before a start removes it:
# a start writes its owner a moment after making the folder, and one from before owners were
# written for pg-throwaway's servers ran initdb ownerless (seconds)
ABANDONED_AFTER_SECONDS = 120


def _abandoned(folder: Path) -> bool:
    """A folder no process owns and no server runs in: pg-throwaway's server stopped by other
    means, or a start from before owners were written killed during initdb. pg-throwaway's
    running servers have no owner by design: they stay."""
    if not folder.is_dir() or _postmaster(folder) is not None:  # pg-throwaway's default
        return False  # state file is named as the folders are
    try:  # initdb's work shows in the data folder's time, not the folder's own
        touched = max(p.stat().st_mtime for p in (folder, folder / "data") if p.exists())
    except (OSError, ValueError):
        return False
    return time.time() - touched > ABANDONED_AFTER_SECONDS


def _postmaster(folder: Path) -> tuple[int, int] | None:
    """The pid and port of the server running in `folder`, None when none runs there."""
    try:
        lines = (folder / "data" / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _started_at(pid) is not None else None


# A pg-throwaway server's folder names the state file that remembers it (PG_THROWAWAY_STATE),
# so that the server is found again when that file is lost (`found_throwaway`)
THROWAWAY_MARK = "pg-throwaway-state"


def found_throwaway(state: str) -> PgServer | None:
    """The running pg-throwaway server that `state` remembered, found by its folder's mark:
    without it, a lost state file left the server running unseen until the machine stopped."""
    for folder in sorted(Path(tempfile.gettempdir()).glob("servicetrail-pg-*")):
        try:
            if (folder / THROWAWAY_MARK).read_text() != state:
                continue
        except OSError:
            continue
        running = _postmaster(folder)
        if running is not None:
            server = PgServer.__new__(PgServer)
            server.shared_buffers, server.messages, server.bin = "128MB", None, _bin_dir()
            server.folder, server.data, server.port = folder, folder / "data", running[1]
            server.as_postgres, server.outlives_owner = os.geteuid() == 0, True
            return server
    return None


_WATCHED: list[PgServer] = []  # this process's servers, each with a watchdog
_ADMIN_LOCK = threading.Lock()  # one statement at a time on a server's kept admin session


def _forget_in_child() -> None:
    """A forked child (a fork pool's worker) would hold each lifeline open, and a pool
    orphaned with its owner runs on: the server with it."""
    for server in _WATCHED:
        if server._lifeline is not None:
            os.close(server._lifeline)
        server._lifeline = server._watchdog = None  # the child's `stop` waits for none
        # the parent's session: psycopg never ends, in another process, a connection it
        # made (no goodbye on the socket they share), so the child only forgets it
        server._admin_connection = None
    _WATCHED.clear()
    global _ADMIN_LOCK
    _ADMIN_LOCK = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_forget_in_child)


class PgServer:
    _lifeline: int | None = None  # class defaults: a server pickled before these existed
    _watchdog: subprocess.Popen[bytes] | None = None
    _admin_connection: psycopg.Connection[Any] | None = None

    def __init__(
        self,
        shared_buffers: str = "128MB",
        in_memory: bool = False,
        messages: str | None = None,
        outlives_owner: bool = False,
    ) -> None:
        self.shared_buffers = shared_buffers  # tests: small; benchmarks: as a tuned server would
        # a locale for the server's messages, such as "de_DE.UTF-8": built from the machine's
        # locale sources (Debian's `locales`) into the server's folder, since a test may not
        # count on the machine having generated it
        self.messages = messages
        self.bin = _bin_dir()
        self.folder = Path(
            tempfile.mkdtemp(prefix="servicetrail-pg-", dir=_memory_folder(in_memory))
        )
        self.data = self.folder / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0  # the server refuses to run as root
        # scripts/pg-throwaway's server lives on after the script, until `pg-throwaway stop`;
        # any other stops with the process that started it, however that process ends
        self.outlives_owner = outlives_owner

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *command] if self.as_postgres else command

    def _run(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = self._command(*args)
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, env=env and {**os.environ, **env}
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{args[0]} failed: {done.stdout[-1000:]} {done.stderr[-2000:]}"
            )

    def start(self) -> PgServer:
        self._stop_orphans()
        # first: an owner killed during initdb leaves a folder the next start removes
        (self.folder / "owner").write_text(f"{os.getpid()} {_started_at(os.getpid())}")
        if not self.outlives_owner:
            self._watch()
        try:
            self._start()
        except BaseException:  # a failed start leaves no cluster behind (in /dev/shm: RAM)
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        if self.outlives_owner:  # pg-throwaway's: running, it outlives the script by design
            (self.folder / "owner").unlink()
        return self

    def __getstate__(self) -> dict[str, Any]:
        """What pickle keeps (pg-throwaway's state file): not this process's connection."""
        kept = dict(self.__dict__)
        kept.pop("_admin_connection", None)
        return kept

    def remember_in(self, state: str) -> None:
        """pg-throwaway's: the state file that remembers this server, and the mark in its
        folder by which `found_throwaway` finds it should that file be lost."""
        (self.folder / THROWAWAY_MARK).write_text(state)
        with open(state, "wb") as out:
            pickle.dump(self, out)

    def _stop_orphans(self) -> None:
        """Stops the servers beside this one whose owner is gone: the watchdog killed with
        it (`pkill -9 python`) left them running; and removes the folders no process owns
        and no server runs in, left half-built (`_abandoned`). A few directory reads a
        start."""
        for folder in self.folder.parent.glob("servicetrail-pg-*"):
            if folder == self.folder or not _owner_gone(folder):
                continue
            if (folder / "data" / "postmaster.pid").exists():
                stop = self._command("pg_ctl", "-D", str(folder / "data"), "-m", "immediate")
                subprocess.run([*stop, "-w", "stop"], capture_output=True, timeout=60)
            shutil.rmtree(folder, ignore_errors=True)

    def _watch(self) -> None:
        """A watchdog that stops the server when this process ends without `stop`
        (devsupport/pg_watchdog.py); Popen returns at once, so a start costs no more."""
        reading, self._lifeline = os.pipe()  # both ends close on exec: no other child holds it
        try:
            stop = self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    str(Path(__file__).with_name("pg_watchdog.py")),
                    str(self.folder),
                    *stop,
                ],
                stdin=reading,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the test run's process group, not it
            )
        finally:
            os.close(reading)
        _WATCHED.append(self)

    def _start(self) -> None:
        env = None
        if self.messages:  # first: the commonest failure, before initdb's work
            env = {"LOCPATH": self._built_locale(self.messages)}  # glibc looks only there
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        )
        # the port was free when it was picked, before initdb's second or more: another
        # process (a parallel test's server or client) may have bound it since, and the start
        # failed for that alone; a fresh port is picked for each of a few tries
        log = self.folder / "log"
        for tries_left in reversed(range(PORT_TRIES)):
            said_before = log.stat().st_size if log.exists() else 0
            try:
                self._run("pg_ctl", *self._start_arguments(), env=env)
                return
            except PostgresUnavailable:
                if not tries_left or not self._port_was_taken(said_before):
                    raise
                self.port = _free_port()

    def _start_arguments(self) -> list[str]:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c "
            f"shared_buffers={self.shared_buffers}"
        )
        if self.messages:
            options += f" -c lc_messages={self.messages}"
        return ["-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"]

    def _port_was_taken(self, said_before: int) -> bool:
        """Whether the server's log, past `said_before` bytes (the earlier tries'), says its
        start failed on a port in use."""
        try:
            with open(self.folder / "log", "rb") as log:
                log.seek(said_before)
                said = log.read().decode(errors="replace")
        except OSError:
            return False
        return "could not bind" in said and "Address already in use" in said

    def _built_locale(self, name: str) -> str:
        """A folder holding locale `name` (language_TERRITORY.CHARSET), made by localedef."""
        folder = self.folder / "locales"
        folder.mkdir()
        source, charset = name.split(".", 1)
        done = subprocess.run(
            ["localedef", "-i", source, "-f", charset, str(folder / name)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:  # localedef warns and exits 1 for what it still builds
            if not (folder / name / "LC_MESSAGES").exists():
                raise PostgresUnavailable(
                    f"localedef {name} failed (scripts/system-deps installs Debian's "
                    f"locales): {done.stderr[-1000:]}"
                )
        return str(folder)

    def stop(self) -> None:
        if self._admin_connection is not None:
            self._admin_connection.close()
            self._admin_connection = None
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self._lifeline is not None:  # the watchdog finds nothing left and exits
                os.close(self._lifeline)
                self._lifeline = None
            if self._watchdog is not None:
                self._watchdog.wait(timeout=60)
                self._watchdog = None
            if self in _WATCHED:
                _WATCHED.remove(self)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Runs `sql` on the server's postgres database, on one connection kept for the
        process: a connection of its own each time cost the server a backend's start, ~5 ms
        of its CPU, twice a test (its database made, then dropped: session 65). A connection
        the server has closed since (a restart) is replaced, and the statement sent again."""
        import psycopg

        with _ADMIN_LOCK:
            kept = self._admin_connection
            if kept is not None and not kept.closed:
                try:
                    kept.execute(sql)
                    return
                except psycopg.OperationalError:
                    if not kept.broken:
                        raise
                    kept.close()
            self._admin_connection = psycopg.connect(self.url(), autocommit=True)
            self._admin_connection.execute(sql)

    def new_database_name(self) -> str:
        """A name no database of this server has: one that `drop_database` drops."""
        return "t_" + uuid.uuid4().hex[:12]

    def new_database(self, template: str | None = None, url: str | None = None) -> str:
        """A new database (at `url`, one of this server's, if given), copied from `template`."""
        name = url.rsplit("/", 1)[1] if url else self.new_database_name()
        assert name.startswith("t_"), name  # only throwaway ones, which drop_database drops
        # copied file by file, as before PostgreSQL 15: 15's default (WAL_LOG) writes each
        # block of the ~10 MB template through the WAL, ~9 ms more of the server's CPU a test
        # here (a throwaway server: nothing is ever recovered from its WAL)
        strategy = " STRATEGY FILE_COPY" if int(self.bin.parent.name) >= 15 else ""
        self.admin(
            f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "") + strategy
        )
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drops a database `new_database` made, closing what still holds it: a test's store
        is ~10 MB, and a suite's worth of them filled gigabytes of a small CI disk."""
        name = url.rsplit("/", 1)[1]
        assert name.startswith("t_"), name  # only the throwaway ones
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
