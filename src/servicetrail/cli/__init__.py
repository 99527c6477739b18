"""The `servicetrail` command line (SPEC section 5): the group in `app`, one module per
family of commands, each added here, and what they share in `common`, `options`,
`store_access`, `load_report` and `output_files`. Nothing below `cli` imports from it, so
any module of the package can be imported first."""

from __future__ import annotations

from .serving import demo, serve
from .access import accounts_group, tokens_group
from .access_log import access_log_cmd
from .app import main
from .database import db_group, retention_cmd
from .generating import generate_cmd
from .loading import ingest_cmd, load_cmd
from .logs import log_group
from .reads import records_cmd, report_group, triggers_cmd
from .watching import deliver_cmd, watch_group

for command in (
    load_cmd,
    ingest_cmd,
    accounts_group,
    tokens_group,
    report_group,
    records_cmd,
    triggers_cmd,
    db_group,
    serve,
    demo,
    retention_cmd,
    generate_cmd,
    watch_group,
    deliver_cmd,
    log_group,
    access_log_cmd,
):
    main.add_command(command)

__all__ = ["main"]
