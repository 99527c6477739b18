"""The `servicetrail` command line (SPEC section 5): the group in `app`, one module per
family of commands, named here, and what they share in `common`, `options`,
`store_access`, `load_report` and `output_files`. Nothing below `cli` imports from it, so
any module of the package can be imported first."""

from __future__ import annotations

from .app import main

# Each command's module is imported when the command is asked for (its run or its --help),
# not before: a command started in a fresh interpreter imported every family's libraries,
# some 0.1 s of its 0.35 s start that `records` or `ingest` never used (the suite starts
# several hundred; session 50). Listed by name, with the first sentence of the command's
# help, which `servicetrail --help` lists: it imported every module to read them, SQLAlchemy
# and all, 0.5 s of CPU for a page of text (session 59; tests/test_start.py holds each to
# the command's own).
main.lazy_commands.update(
    {
        "access-log": (
            "access_log:access_log_cmd",
            "Every read of SAT records (API, web, CLI, webhooks), newest first, one JSON object "
            "a line: id, at, party_id, actor, interface, action, filters, records_returned, "
            "mp141_records_returned, device_ids.",
        ),
        "accounts": ("access:accounts_group", "People who log in to the web screen for a Party."),
        "db": ("database:db_group", "The store's schema."),
        "deliver": (
            "watching:deliver_cmd",
            "Match new records into watches' events and deliver webhooks, until stopped.",
        ),
        "demo": (
            "serving:demo",
            "Build a realistic demo SAT (if the store is empty), print the logins, and serve it.",
        ),
        "generate": (
            "generating:generate_cmd",
            "A seeded, DCC-shaped world: the same seed gives the same bytes.",
        ),
        "ingest": (
            "loading:ingest_cmd",
            "Ingest SAT records: SAT JSON Lines, DUIS JSON Lines captures, or DUIS XML files and "
            "folders.",
        ),
        "load": (
            "loading:load_cmd",
            "Load a registry CSV: users, devices or responsibilities (in that order).",
        ),
        "log": (
            "logs:log_group",
            "The trail's verifiable logs: the verifier key, the server-side audit, offline proofs.",
        ),
        "records": (
            "reads:records_cmd",
            "What a Party may see, newest first, through the MP141 rule.",
        ),
        "report": ("reads:report_group", "Reports from the SAT."),
        "retention": (
            "database:retention_cmd",
            "Drop whole monthly partitions of SAT records and payloads past their retention age, "
            "and with --access-log-keep-months, whole months of the access log.",
        ),
        "serve": ("serving:serve", "Serve the web screen and the HTTP API."),
        "tokens": ("access:tokens_group", "API tokens (Authorization: Bearer TOKEN)."),
        "triggers": (
            "reads:triggers_cmd",
            "What may have caused a record: the requests the Party may see on its Device in the "
            "window before it, newest first, the one sharing its Request ID first (at most 1000).",
        ),
        "watch": (
            "watching:watch_group",
            "A Party's watches: be told of new records it may see that match (titles only).",
        ),
    }
)

__all__ = ["main"]
