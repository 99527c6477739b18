"""The logs sealed by a process that runs for long and writes access-log entries (`serve`,
`deliver`): SPEC section 8 has them sealed at least once a minute and at shutdown. A
command that ends soon after its reads seals as it ends (cli)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import Engine

from .limits import store_busy
from .merkle_log import seal_store
from .schema_watch import StoreUpgraded

log = logging.getLogger("servicetrail.logs")

SEAL_EVERY_SECONDS = 60.0


async def seal_now(engine: Engine, *, last: bool = False) -> None:
    """Seal what is queued, off the event loop. A failure is said and left to the next round:
    the entries stay queued, never lost. `last`: the process's seal as it stops, which has no
    next round: the next seal is another process's, and the log says whose."""
    try:
        await asyncio.to_thread(seal_store, engine)
    except StoreUpgraded as e:
        log.error("sealing the logs stopped: %s", e)
    except Exception as e:
        busy = store_busy(e)
        if busy is None:
            log.exception("sealing the logs failed")
        elif last:  # "waits for the next round" was said where none came (audit 54g)
            log.warning(
                "sealing the logs as this process stops failed: %s; what it queued stays "
                "queued in the store for the next seal: a server's or `deliver`'s within a "
                "minute of its start, an ingest's, or a read's on the command line with the "
                "store's key",
                busy.reason,
            )
        else:  # a store restarting or locked: said once a round, not as a bug
            log.warning("sealing the logs waits for the next round: %s", busy.reason)


async def seal_every_minute(engine: Engine, seconds: float = SEAL_EVERY_SECONDS) -> None:
    """Until cancelled; the caller seals once more as it stops (seal_now)."""
    while True:
        await asyncio.sleep(seconds)
        await seal_now(engine)
