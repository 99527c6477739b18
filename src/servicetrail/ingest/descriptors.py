"""The descriptors this command was started with: `/dev/fd/3` named the store's own file or
its PostgreSQL socket, and the rejects went into it (28f). Noted as every command starts,
before it opens anything of its own; apart from ingest.rejects, which only a load imports
(a command's start imported the reject files' whole module for these lines; session 50)."""

from __future__ import annotations

import os
from contextlib import suppress

_inherited: frozenset[int] = frozenset({0, 1, 2})


def remember_inherited_descriptors() -> None:
    """Called as the command starts, before it opens anything of its own."""
    global _inherited
    with suppress(OSError):
        listed = [int(n) for n in os.listdir("/proc/self/fd") if n.isdigit()]
        _inherited = frozenset(n for n in listed if is_open(n))  # not the listing's own


def inherited(descriptor: int) -> bool:
    """Whether this command was started with `descriptor`, and it is still open."""
    return descriptor in _inherited and is_open(descriptor)


def is_open(descriptor: int) -> bool:
    try:
        os.fstat(descriptor)
    except OSError:
        return False
    return True
