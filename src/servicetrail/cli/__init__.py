"""The `servicetrail` command line (SPEC section 5): the group in `app`, one module per
family of commands, named here, and what they share in `common`, `options`,
`store_access`, `load_report` and `output_files`. Nothing below `cli` imports from it, so
any module of the package can be imported first."""

from __future__ import annotations

from .app import main

# Each command's module is imported when the command is asked for (its run, its --help, or
# the group's list), not before: a command started in a fresh interpreter imported every
# family's libraries, some 0.1 s of its 0.35 s start that `records` or `ingest` never used
# (the suite starts several hundred; session 50). Listed by name; `servicetrail --help`
# imports them all, as it shows each one's first line.
main.lazy_commands.update(
    {
        "access-log": "access_log:access_log_cmd",
        "accounts": "access:accounts_group",
        "db": "database:db_group",
        "deliver": "watching:deliver_cmd",
        "demo": "serving:demo",
        "generate": "generating:generate_cmd",
        "ingest": "loading:ingest_cmd",
        "load": "loading:load_cmd",
        "log": "logs:log_group",
        "records": "reads:records_cmd",
        "report": "reads:report_group",
        "retention": "database:retention_cmd",
        "serve": "serving:serve",
        "tokens": "access:tokens_group",
        "triggers": "reads:triggers_cmd",
        "watch": "watching:watch_group",
    }
)

__all__ = ["main"]
