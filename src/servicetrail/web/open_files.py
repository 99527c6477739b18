"""The server's open files: its soft limit raised to the hard one, and how many connections it
holds at once, short of that limit by a reserve for the files it opens itself."""

from __future__ import annotations

import contextlib
import functools
import resource

# Past the process's open-file limit every new connection was reset, and so is a store's
# connection or a report's spool file the server opens (four addresses' 256 slow connections
# each, under a limit of 1,024; audit 27b). This many descriptors stay for those.
RESERVED_DESCRIPTORS = 128


@functools.cache
def most_connections() -> int:
    """Connections this process holds at once: its open-file limit, less the reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - RESERVED_DESCRIPTORS)


def raise_open_file_limit() -> int:
    """The process's soft limit of open files raised to its hard limit (often 1,024 against
    hundreds of thousands): each connection takes a descriptor. Returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    most_connections.cache_clear()
    return soft
