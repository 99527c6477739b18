"""Whether an error is a stop: Ctrl-C, or SIGTERM raised as one (cli.common.Terminated).
Raised inside a library's clean-up (SQLAlchemy's commit, between the database's COMMIT and
its own bookkeeping), the KeyboardInterrupt comes out as another error raised while handling
it: an AssertionError, the stop in its context (the fresh-clone suite, session 37)."""

from __future__ import annotations


def interruption_in(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt `error` is, or happened while handling, if any."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
