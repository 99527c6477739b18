"""The logs' leaves and tiles partitioned by log (family, month) on PostgreSQL, so that
retention drops a month's whole (store.log_partitions).

Retention deleted them row by row, some 370,000 a second: a month of the access log at 700
reads a second (1.8 billion leaves) took some 80 minutes in one transaction, and the
trail's retention held the records' lock all the while, every ingest batch's leaves and
every seal waiting behind it (findings 52b 1, 2). A partitioned table's unique keys must hold
its partition key: (family, entry_id) becomes a plain index, as a leaf is found by it. 0012's
statistics settings go on each partition, as a partitioned table takes none. The tables are
copied whole into the partitioned ones: a store's upgrade takes as long as that. A partition
is made for every log with leaves, tiles or queued entries, and for every month the trail
and the access log have partitions for (their entries' leaves go into these).

SQLite keeps its tables: it has no retention.

Revision ID: 0029
Revises: 0028
"""

from alembic import op
from sqlalchemy import text

revision = "0029"
down_revision = "0028"

TABLES = ("log_leaf", "log_node")
KEYS = {"log_leaf": "family, month, leaf_index", "log_node": "family, month, level, node_index"}
STATISTICS = {"log_leaf": 50_000, "log_node": 5_000}
COLUMNS = {
    "log_leaf": "family, month, leaf_index, entry_id, leaf_hash, salt",
    "log_node": "family, month, level, node_index, hash",
}
# each family's month partitions, by their parent (0028's and store.partitions')
ENTRY_TABLES = {"sat": "sat_record", "access": "access_log"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    logs = _logs()
    for table in TABLES:
        old = _set_aside(table)
        op.execute(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (family, month)"
        )
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({KEYS[table]})")
        for family, month in sorted(logs):
            op.execute(
                f"CREATE TABLE {table}_{family}_p{month[:4]}_{month[5:]} PARTITION OF {table} "
                f"FOR VALUES FROM ('{family}', '{month}') TO ('{family}', {_next(month)}) "
                f"WITH (autovacuum_analyze_scale_factor = 0, "
                f"autovacuum_analyze_threshold = {STATISTICS[table]})"
            )
        _copy_and_guard(table, old)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        old = _set_aside(table)
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({KEYS[table]})")
        op.execute(
            f"ALTER TABLE {table} SET (autovacuum_analyze_scale_factor = 0, "
            f"autovacuum_analyze_threshold = {STATISTICS[table]})"
        )
        _copy_and_guard(table, old)


def _set_aside(table: str) -> str:
    """The table as it is, renamed with its key and index."""
    old = f"{table}_before_0029"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    if table == "log_leaf":
        unique = op.get_bind().execute(
            text("SELECT 1 FROM pg_constraint WHERE conname = 'uq_log_leaf_family_entry_id'")
        )
        if unique.first() is not None:
            op.execute(
                f"ALTER TABLE {old} RENAME CONSTRAINT uq_log_leaf_family_entry_id "
                "TO uq_log_leaf_before_0029"
            )
        else:
            op.execute("ALTER INDEX ix_log_leaf_family_entry_id RENAME TO ix_log_leaf_before_0029")
    return old


def _copy_and_guard(table: str, old: str) -> None:
    """The rows into the new table, then the index and the triggers 0009 made on the old
    one (the row trigger is each partition's too)."""
    partitioned = (
        op.get_bind()
        .execute(text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table})
        .scalar_one()
    )
    # the indexes after the copy: built once, not grown row by row
    op.execute(f"INSERT INTO {table} ({COLUMNS[table]}) SELECT {COLUMNS[table]} FROM {old}")
    op.execute(f"DROP TABLE {old}")
    if table == "log_leaf":
        if partitioned == "p":
            op.execute("CREATE INDEX ix_log_leaf_family_entry_id ON log_leaf (family, entry_id)")
        else:
            op.execute(
                "ALTER TABLE log_leaf ADD CONSTRAINT uq_log_leaf_family_entry_id "
                "UNIQUE (family, entry_id)"
            )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION servicetrail_log_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
    )


def _logs() -> set[tuple[str, str]]:
    """Every log (family, month) with leaves, tiles or queued entries, and every month
    either family's entries have a partition for."""
    bind = op.get_bind()
    found = {
        (str(family), str(month))
        for table in (*TABLES, "log_pending")
        for family, month in bind.execute(text(f"SELECT DISTINCT family, month FROM {table}"))
    }
    for family, parent in ENTRY_TABLES.items():
        names = bind.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent "
                "JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE p.relname = :parent AND n.nspname = current_schema()"
            ),
            {"parent": parent},
        ).scalars()
        found |= {(family, f"{name[-7:-3]}-{name[-2:]}") for name in names}
    return found


def _next(month: str) -> str:
    """The partition's upper bound: the next month, but December 9999's, past the column's
    seven characters (the year 10000), is the family's end."""
    if month == "9999-12":
        return "MAXVALUE"
    index = int(month[:4]) * 12 + int(month[5:7])
    return f"'{index // 12:04d}-{index % 12 + 1:02d}'"
