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

The copy is made ahead of the upgrade's transaction (`copy_ahead`, called by store.migrate
with the store at 0028): into tables beside the old ones (log_leaf_0029, log_node_0029,
partitioned as the new ones are), a log at a time in batches each committed, each going on
from the last row copied, so that a copy killed or failed part way is taken up where it
stopped by the next `db upgrade`. In one transaction, a failure at the end lost the whole
copy: for a billion leaves some 50 minutes of the server's CPU (3 us a leaf), 266 GB of WAL,
hours of a loaded machine (finding 53b 1; BENCHMARKS, session 57). This migration, in the
upgrade's transaction, copies what is not copied yet (all of it when nothing was copied
ahead, as `alembic upgrade` alone does) and puts the copies in the old tables' place: the
tables it leaves are those its first text left (session 57 compared the two schemas). A
log's leaves, and its tiles of a level, are written in the order of their numbers and never
changed: the last one copied says what is left (retention at 0028 deletes a log whole: its
copy goes with it). So too while the copy is paused and servers of 0028 run on the store: a
log's leaves are numbered from its size under the family's lock and committed with their
tiles, so a late entry's leaf comes after the last one copied; and a log retention deleted is
not begun again (its entries stay queued), so a copy kept for it is not another log's.

SQLite keeps its tables: it has no retention.

Revision ID: 0029
Revises: 0028
"""

from collections.abc import Callable

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

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
# the copies made ahead, beside the old tables until this migration puts them in their place
STAGED = {table: f"{table}_0029" for table in TABLES}
# the rows a log's copy goes on from: its leaves by number, its tiles a level at a time
RUNS = {
    "log_leaf": ("family, month", "leaf_index"),
    "log_node": ("family, month, level", "node_index"),
}
BATCH = 100_000  # rows a statement: some 1-2 s of work, lost at most to a kill


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    copy_ahead(bind, committed=None)  # what is not copied yet, or all of it
    for table in TABLES:
        old = _set_aside(table)
        op.execute(f"DROP TABLE {old}")
        op.execute(f"ALTER TABLE {STAGED[table]} RENAME TO {table}")
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{STAGED[table]} TO pk_{table}")
        if table == "log_leaf":
            op.execute(
                f"ALTER INDEX ix_{STAGED[table]}_family_entry_id "
                "RENAME TO ix_log_leaf_family_entry_id"
            )
        _guard(table)


def copy_ahead(conn: Connection, committed: Callable[[], None] | None) -> None:
    """The leaves and tiles into the partitioned copies, BATCH rows a transaction (each ended
    by `committed`), going on from what an earlier call copied; without `committed`, all in
    the caller's transaction (this migration's own)."""
    done = committed or (lambda: None)
    for table in TABLES:
        _partitioned_copy(conn, table)
        done()
        for run in _runs(conn, table):
            _copy_run(conn, table, run, done)
    # the index after the copy: built once, not grown row by row
    conn.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS ix_{STAGED['log_leaf']}_family_entry_id "
            f"ON {STAGED['log_leaf']} (family, entry_id)"
        )
    )
    done()


def _partitioned_copy(conn: Connection, table: str) -> None:
    """The table's copy, made if missing, with a partition for each log there is now: one
    made by an earlier call for a log that retention has since removed (the servers run on
    a store whose upgrade stopped part way) is dropped with the rows copied into it."""
    staged = STAGED[table]
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": staged}).scalar() is None:
        conn.execute(
            text(
                f"CREATE TABLE {staged} (LIKE {table} INCLUDING DEFAULTS) "
                "PARTITION BY RANGE (family, month)"
            )
        )
        conn.execute(
            text(f"ALTER TABLE {staged} ADD CONSTRAINT pk_{staged} PRIMARY KEY ({KEYS[table]})")
        )
    logs = {
        f"{table}_{family}_p{month[:4]}_{month[5:]}": (family, month)
        for family, month in _logs(conn)
    }
    made = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:t)"
            ),
            {"t": staged},
        )
        .scalars()
        .all()
    )
    for name in set(made) - set(logs):
        conn.execute(text(f"DROP TABLE {name}"))
    for name, (family, month) in sorted(logs.items()):
        if name not in made:
            conn.execute(
                text(
                    f"CREATE TABLE {name} PARTITION OF {staged} FOR VALUES FROM "
                    f"('{family}', '{month}') TO ('{family}', {_next(month)}) "
                    f"WITH (autovacuum_analyze_scale_factor = 0, "
                    f"autovacuum_analyze_threshold = {STATISTICS[table]})"
                )
            )


def _copy_run(
    conn: Connection, table: str, run: tuple[object, ...], done: Callable[[], None]
) -> None:
    """One run's rows (a log's leaves, or its tiles of one level) after the last one copied,
    BATCH numbers a transaction. By ranges of the key, not ORDER BY and LIMIT, which sorted
    each batch on disk for no gain."""
    prefix, order = RUNS[table]
    names = prefix.split(", ")
    where = " AND ".join(f"{name} = :{name}" for name in names)
    given = dict(zip(names, run, strict=True))
    last, after = (
        conn.execute(
            text(f"SELECT coalesce(max({order}), -1) FROM {name} WHERE {where}"), given
        ).scalar_one()
        for name in (table, STAGED[table])
    )
    while after < last:
        upto = min(after + BATCH, last)
        conn.execute(
            text(
                f"INSERT INTO {STAGED[table]} ({COLUMNS[table]}) SELECT {COLUMNS[table]} "
                f"FROM {table} WHERE {where} AND {order} > :after AND {order} <= :upto"
            ),
            {**given, "after": after, "upto": upto},
        )
        done()
        after = upto


def _runs(conn: Connection, table: str) -> list[tuple[object, ...]]:
    """Each (family, month) of the table's rows, and for tiles each level of it, read by
    skipping along the primary key (a DISTINCT read every row: a billion for a big store)."""
    prefix = RUNS[table][0].split(", ")
    found: list[tuple[object, ...]] = []
    last: tuple[object, ...] | None = None
    while True:
        after = f"WHERE ({', '.join(prefix)}) > ({', '.join(f':k{i}' for i in range(len(prefix)))})"
        row = conn.execute(
            text(
                f"SELECT {', '.join(prefix)} FROM {table} {after if last else ''} "
                f"ORDER BY {', '.join(prefix)} LIMIT 1"
            ),
            {f"k{i}": value for i, value in enumerate(last or ())},
        ).first()
        if row is None:
            return found
        last = tuple(row)
        found.append(last)


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
        op.execute(f"INSERT INTO {table} ({COLUMNS[table]}) SELECT {COLUMNS[table]} FROM {old}")
        op.execute(f"DROP TABLE {old}")
        if table == "log_leaf":
            op.execute(
                "ALTER TABLE log_leaf ADD CONSTRAINT uq_log_leaf_family_entry_id "
                "UNIQUE (family, entry_id)"
            )
        _guard(table)


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


def _guard(table: str) -> None:
    """The triggers 0009 made on the old table (the row trigger is each partition's too)."""
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION servicetrail_log_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
    )


def _logs(conn: Connection) -> set[tuple[str, str]]:
    """Every log (family, month) with leaves, tiles or queued entries, and every month
    either family's entries have a partition for."""
    found = {(str(family), str(month)) for family, month, *_ in _runs(conn, "log_node")}
    found |= {(str(family), str(month)) for family, month in _runs(conn, "log_leaf")}
    found |= {
        (str(family), str(month))
        for family, month in conn.execute(text("SELECT DISTINCT family, month FROM log_pending"))
    }
    for family, parent in ENTRY_TABLES.items():
        names = conn.execute(
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
