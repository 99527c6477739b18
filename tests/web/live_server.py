"""`servicetrail serve` run for real on 127.0.0.1, for tests that need the HTTP server itself
(its parser, its connection handling, requests arriving at the same time)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVICETRAIL = Path(sys.executable).with_name("servicetrail")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(
    db_url: str,
    folder: Path,
    *options: str,
    env: dict[str, str] | None = None,
    open_files: tuple[int, int] | None = None,
) -> Iterator[str]:
    """The base URL of a server on the store, stopped on exit; `open_files`: its process's
    (soft, hard) limit of open files."""
    with live_server_process(db_url, folder, *options, env=env, open_files=open_files) as (
        _,
        base,
        _log,
    ):
        yield base


@contextmanager
def live_server_process(
    db_url: str,
    folder: Path,
    *options: str,
    env: dict[str, str] | None = None,
    open_files: tuple[int, int] | None = None,
    command: str = "serve",
    own_group: bool = False,
) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """live_server, with its process (to signal it) and the file of its output; `command`:
    `demo` serves a demo store it builds first; `own_group`: in a process group of its own,
    as a terminal starts a command (its workers with it), for the group to be signalled."""
    port = free_port()
    log_path = folder / f"server-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(SERVICETRAIL),
                "--db",
                db_url,
                command,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=own_group,
            preexec_fn=(
                None
                if open_files is None
                else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, open_files)
            ),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(base + "/login", timeout=2):
                        break
                except urllib.error.HTTPError:
                    break  # it answers
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"servicetrail {command} did not start:\n" + log_path.read_text()
                    )
                time.sleep(0.1)
            yield proc, base, log_path
        finally:
            proc.terminate()  # nothing, if it has ended already
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if own_group:  # a worker its supervisor left behind
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
