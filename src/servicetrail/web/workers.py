"""`serve --workers N`: uvicorn's supervisor and its worker processes, stopped by Ctrl-C as
one server process is (web.forced_stop).

A terminal sends Ctrl-C to the whole process group, the supervisor and each worker alike.
Under uvicorn's own supervisor, a second Ctrl-C made each worker's uvicorn skip the app's
shutdown, and starlette logged the lifespan's CancelledError with a traceback (review 47k);
a worker still importing (the second one a second after the first answered, on a busy
machine) died of the first Ctrl-C with a traceback of wherever it stood; and the supervisor
exited 0 as after a graceful stop. Here each worker serves with web.forced_stop's Server
and starts deaf to Ctrl-C (until it serves, a stop is the supervisor's SIGTERM), no worker is
replaced once a stop signal has come (uvicorn reads its signals only every half second),
and the supervisor tells whether the stop was forced (two Ctrl-C): `interrupted` (130).
"""

from __future__ import annotations

import logging
import signal
from socket import socket
from types import FrameType

import uvicorn
from uvicorn.supervisors import multiprocess

from .forced_stop import Server

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("uvicorn.error")  # the server's log, where its other warnings go
STARTING_SECONDS = 60.0  # a worker's first answer, while it imports the app


class _Worker(multiprocess.Process):
    """uvicorn's worker process, serving with web.forced_stop's Server (built in the worker,
    which unpickles this class from here)."""

    # set in the supervisor once a stop signal has come: a worker found dead then died of
    # the stop itself, and one spawned in its place would only meet the next Ctrl-C
    replaceable = True

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server

    answered = False  # this worker has answered a ping: it has imported and started

    def is_alive(self, timeout: float = 5) -> bool:
        # uvicorn replaces a worker that is not alive: not one that a stop signal ended,
        # which may come while the answer is awaited (up to `timeout` for one starting)
        if not _Worker.replaceable:
            return True
        # a worker answers its first ping once it has imported the app: past uvicorn's 5 s
        # on a busy machine (load 10-17), where each worker was killed as hung and spawned
        # again, for ever, and the server never started (audit 51b). Once it has answered,
        # a worker that stops answering is hung, as uvicorn means.
        alive = super().is_alive(timeout if self.answered else max(timeout, STARTING_SECONDS))
        self.answered = self.answered or alive
        return alive or not _Worker.replaceable

    def start(self) -> None:
        # the worker starts with Ctrl-C ignored (a disposition a new program keeps), for the
        # time it imports: Ctrl-C then made it die with a traceback of wherever it stood.
        # Blocked meanwhile, not only ignored, in this process (one thread), which must not
        # miss one: a Ctrl-C pending there is delivered once its handler is back.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        ours = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            super().start()
        finally:
            signal.signal(signal.SIGINT, ours)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def target(self, sockets: list[socket] | None = None) -> None:  # in the worker
        # uvicorn's server, about to listen for Ctrl-C, needs it delivered (the mask is
        # inherited too); until then a stop is the supervisor's SIGTERM
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        super().target(sockets)


class Workers(multiprocess.Multiprocess):
    def __init__(self, config: uvicorn.Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.interrupts = 0
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._told)

    def _told(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn reads its queue of signals only every half second, and its should_exit (an
        # Event, whose lock the interrupted thread may hold) cannot be set from a handler
        _Worker.replaceable = False
        if sig == signal.SIGINT:
            self.interrupts += 1
        self.signal_queue.append(sig)

    def run(self) -> None:
        # uvicorn's supervisor makes each worker (at the start, in place of one that died,
        # on SIGHUP or SIGTTIN) as its module's Process: ours for the time it runs
        uvicorn_own, multiprocess.Process = multiprocess.Process, _Worker  # type: ignore[misc]
        try:
            super().run()
        finally:
            multiprocess.Process = uvicorn_own  # type: ignore[misc]

    def keep_subprocess_alive(self) -> None:
        # uvicorn says a worker's death (a crash, the kernel's out-of-memory kill, or a hang it
        # killed) and its replacement at INFO, below serve's level: an operator never learnt
        # that a worker died, nor what it held (audit 68f)
        serving = list(self.processes)
        super().keep_subprocess_alive()
        # replaced in place, one for one; not strict: the supervisor must not fall over a count
        for before, now in zip(serving, self.processes, strict=False):
            if now is not before:
                log.warning(
                    "Worker process %s ended (%s); its connections were closed. Worker "
                    "process %s started in its place.",
                    before.pid,
                    _ended(before.exitcode),
                    now.pid,
                )

    @property
    def forced(self) -> bool:
        """Whether a second Ctrl-C came: each worker, told it too, stopped at once."""
        return self.interrupts > 1


def _ended(exit_code: int | None) -> str:
    if exit_code is None or exit_code >= 0:
        return f"exit code {exit_code}"
    try:
        return f"killed by {signal.Signals(-exit_code).name}"
    except ValueError:  # a real-time signal Python has no name for
        return f"killed by signal {-exit_code}"
