"""Alembic, driven from code: `servicetrail db upgrade` and `db check` call these."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from .partitions import is_partition
from .schema import metadata_for

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the migrations have a head"
    return head


def is_known(revision: str) -> bool:
    """Whether `revision` is one of the migrations (a newer servicetrail's is not)."""
    try:
        return ScriptDirectory(str(MIGRATIONS)).get_revision(revision) is not None
    except CommandError:
        return False


def upgrade_to_head(engine: Engine) -> None:
    command.upgrade(_config(engine), "head")


def schema_differences(engine: Engine) -> list[str]:
    """What the database and the migrations-built tables disagree on (empty when in step)."""
    problems: list[str] = []
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _parent: (
                    not (kind == "table" and is_partition(name or ""))
                ),
            },
        )
        current = context.get_current_revision()
        if current != head_revision():
            problems.append(
                f"database is at revision {current}, migrations head is {head_revision()}"
            )
        for diff in compare_metadata(context, metadata_for(conn.dialect.name)):
            problems.append(repr(diff))
    return problems
