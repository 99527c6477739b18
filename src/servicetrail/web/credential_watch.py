"""The look, beside an answer's sends, at whether the credential it was asked with still holds.

A report download and a watch's event stream outlive their request: each asks again, at least
every state.credential_recheck_seconds, whether its token or session holds, and is cut off
once it does not. The look runs in a task of its own, not between the answer's sends: a send
to a slow client waits for the client to drain the buffers, and a stream that looked only
between its pages learnt of a revoked token 4-5 s (0.7-0.8 MB) late (BENCHMARKS.md, 62h).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..store.limits import store_busy
from .state import credential_recheck_seconds


async def until_the_credential_ends(still_held: Callable[[], bool]) -> None:
    """Returns once `still_held` (which reads the store: run on a thread) says the credential
    no longer holds. A store too busy to answer is asked again at the next look; any other
    error is raised."""
    while True:
        await anyio.sleep(credential_recheck_seconds())
        try:
            held = await anyio.to_thread.run_sync(still_held)
        except Exception as e:
            if store_busy(e) is None:
                raise
            continue
        if not held:
            return
