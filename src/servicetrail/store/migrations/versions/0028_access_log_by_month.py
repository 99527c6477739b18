"""The access log partitioned by month of `at` on PostgreSQL, so that retention drops a month
whole (store.access_partitions).

0027's retention deleted a month's entries row by row through the append-only trigger, some
108,000 a second: a month at 700 reads a second (1.8 billion entries) took about 5 hours in
one transaction, every seal waiting behind it (audit 51e). The key becomes (id, at), as a
partitioned table's key must hold the partition key; ids still come from the same sequence.
The table is copied whole into the partitioned one: a store's upgrade takes as long as that.
Its trigger (0027's), its policy and its reader role's grant are made again on the new table.

The copy is made ahead of the upgrade's transaction (`copy_ahead`, called by store.migrate
with the store at 0027), as 0029's is: into access_log_0028 beside the old table, with its
partitions (named as this migration's first text named them) and its index by time, in
batches each committed, in the order of that index (time, id), each going on from the last
entry copied, so that a copy killed or failed part way is taken up where it stopped by the
next `db upgrade`. In one transaction, a failure at the end lost the whole copy: a million
entries were 4 s and 386 MB of WAL (BENCHMARKS, session 57), a billion some hours. Ahead, it
copies entries an hour old or more alone: an entry is written when its read ends, with the
read's time, so one written later than that falls behind where the copy goes on from. While
the copy is paused (an upgrade killed or failed, the servers of the version before started
again on the store at 0027) one may come in later still: a stream's entry is written when it
ends, hours on. This migration, in the upgrade's transaction, with the old table set aside
(locked), copies what is left (all of it when nothing was copied ahead, as `alembic upgrade`
alone does), then compares the two tables hour by hour (count and sum of ids) and makes the
copy the old table's entries again in any hour that differs (`_mend`): a million entries cost
it some 0.6-0.8 s beside 4-13 s of copy ahead (BENCHMARKS, session 57). Then it puts the
copy in the old table's place: the tables it leaves are those its first text left (session
57 compared the two schemas). Its partitions are made again for the months held then
(retention at 0027 deletes a month's entries whole, in one transaction: the partition of a
month gone goes with its copy).

SQLite keeps its one table: it has no retention of the access log.

Revision ID: 0028
Revises: 0027
"""

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

revision = "0028"
down_revision = "0027"

OLD = "access_log_unpartitioned"
AHEAD_MONTHS = 3  # as store.access_partitions makes them
# the columns as 0010 made them, in its order
COLUMNS = (
    "id, at, party_id, actor, interface, action, filters, records_returned, "
    "mp141_records_returned, device_ids"
)
STAGED = "access_log_0028"  # the copy made ahead, until this migration puts it in place
BATCH = 100_000  # entries a statement: about a second of work, lost at most to a kill
# how old an entry must be for the copy ahead to take it: most come in seconds, and `_mend`
# finds those that come later
SETTLED = "1 hour"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    _set_aside()
    _copy(bind, OLD, None)  # what is not copied yet, or all of it
    _mend(bind)
    op.execute(f"DROP TABLE {OLD}")
    op.execute(f"ALTER TABLE {STAGED} RENAME TO access_log")
    op.execute(f"ALTER TABLE access_log RENAME CONSTRAINT pk_{STAGED} TO pk_access_log")
    for index in ("ix_access_log_party_id", "ix_access_log_at"):
        op.execute(f"ALTER INDEX {index.replace('access_log', STAGED)} RENAME TO {index}")
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY access_log.id")
    _guard()


def copy_ahead(conn: Connection, committed: Callable[[], None]) -> None:
    """The entries an hour old or more into the partitioned copy, BATCH a transaction (each
    ended by `committed`), going on from what an earlier call copied."""
    _copy(conn, "access_log", committed)


def _copy(conn: Connection, source: str, committed: Callable[[], None] | None) -> None:
    """`source`'s entries into the copy (made if missing, its partitions those of the months
    held now), after the last one copied: those SETTLED old BATCH a transaction, each ended
    by `committed`; without it, all in the caller's transaction, the index by party after
    them (built once, not grown row by row)."""
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": STAGED}).scalar() is None:
        conn.execute(
            text(
                f"CREATE TABLE {STAGED} (LIKE {source} INCLUDING DEFAULTS) PARTITION BY RANGE (at)"
            )
        )
        conn.execute(text(f"ALTER TABLE {STAGED} ADD CONSTRAINT pk_{STAGED} PRIMARY KEY (id, at)"))
        # before the entries: the copy goes on from its newest by it
        conn.execute(text(f"CREATE INDEX ix_{STAGED}_at ON {STAGED} (at, id) WHERE id > 0"))
    _partitions(conn, source)
    if committed is not None:
        committed()
    newest = conn.execute(
        text(f"SELECT at, id FROM {STAGED} WHERE id > 0 ORDER BY at DESC, id DESC LIMIT 1")
    ).first()
    last: Any = newest or (datetime.min.replace(tzinfo=timezone.utc), 0)
    settled = f"now() - interval '{SETTLED}'" if committed else "'infinity'"
    while last is not None:
        last = conn.execute(
            text(
                f"WITH copied AS (INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {source} "
                f"WHERE id > 0 AND (at, id) > (:at, :id) AND at < {settled} ORDER BY at, id "
                f"LIMIT {BATCH} RETURNING at, id) "
                "SELECT at, id FROM copied ORDER BY at DESC, id DESC LIMIT 1"
            ),
            {"at": last[0], "id": last[1]},
        ).first()
        if committed is not None:
            committed()
    if committed is None:  # none there are: ids are drawn from 1 (copied as the first text did)
        conn.execute(
            text(f"INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {source} WHERE id <= 0")
        )
    conn.execute(
        text(f"CREATE INDEX IF NOT EXISTS ix_{STAGED}_party_id ON {STAGED} (party_id, at, id)")
    )
    if committed is not None:
        committed()


# each hour's entries of a table by their count and the sum of their ids (UTC, as retention's
# months are): an hour of 700 reads a second is 2.5 million, a few seconds' anti-join
_HOURS = (
    "SELECT date_trunc('hour', at AT TIME ZONE 'UTC') AS hour, count(*) AS n, sum(id) AS ids "
    "FROM {} WHERE id > 0 GROUP BY 1"
)


def _mend(conn: Connection) -> None:
    """In each hour where the copy and the old table differ, the old table's entries missing
    from the copy copied, and those it no longer holds deleted from the copy: the copy ahead
    goes on from its newest entry, and an entry written behind it while the copy was paused
    (servers of the version before started again on the store, a stream open for hours
    ending) was lost with the old table (finding 57g 1); the entries of a month that
    retention emptied meanwhile came back with one entry stamped in it. One read of each
    table, then an anti-join in those hours alone."""
    differ = conn.execute(
        text(
            f"SELECT hour FROM ({_HOURS.format(OLD)}) AS old "
            f"FULL JOIN ({_HOURS.format(STAGED)}) AS copy USING (hour) "
            "WHERE (old.n, old.ids) IS DISTINCT FROM (copy.n, copy.ids) ORDER BY hour"
        )
    ).scalars()
    for hour in list(differ):
        start = hour.replace(tzinfo=timezone.utc)
        within = {"start": start, "after": start + timedelta(hours=1)}
        conn.execute(
            text(
                f"INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {OLD} AS old "
                "WHERE id > 0 AND at >= :start AND at < :after AND NOT EXISTS (SELECT 1 FROM "
                f"{STAGED} AS copy WHERE copy.id = old.id AND copy.at = old.at)"
            ),
            within,
        )
        conn.execute(
            text(
                f"DELETE FROM {STAGED} AS copy WHERE id > 0 AND at >= :start AND at < :after "
                f"AND NOT EXISTS (SELECT 1 FROM {OLD} AS old WHERE old.id = copy.id "
                "AND old.at = copy.at)"
            ),
            within,
        )


def _partitions(conn: Connection, source: str) -> None:
    """The copy's partitions: one for each month `source` holds entries of and the next few,
    as the first text made them; one made earlier for a month since emptied (retention) or
    now past is dropped with what was copied into it."""
    wanted = {
        f"access_log_p{month[:4]}_{month[5:]}": month
        for month in _months_held(conn, source) | _months_ahead()
    }
    made = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass(:t)"
            ),
            {"t": STAGED},
        )
        .scalars()
        .all()
    )
    for name in set(made) - set(wanted):
        conn.execute(text(f"DROP TABLE {name}"))
    for name, month in sorted(wanted.items()):
        if name not in made:
            start, after = _bounds(month)
            conn.execute(
                text(
                    f"CREATE TABLE {name} PARTITION OF {STAGED} "
                    f"FOR VALUES FROM ({start}) TO ({after})"
                )
            )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside()
    op.execute(f"CREATE TABLE access_log (LIKE {OLD} INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE access_log ADD CONSTRAINT pk_access_log PRIMARY KEY (id)")
    # the indexes after the copy: built once, not grown row by row
    op.execute(f"INSERT INTO access_log ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute(f"DROP TABLE {OLD}")
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY access_log.id")
    op.execute("CREATE INDEX ix_access_log_party_id ON access_log (party_id, at, id)")
    op.execute("CREATE INDEX ix_access_log_at ON access_log (at, id) WHERE id > 0")
    _guard()


def _set_aside() -> None:
    """The table as it is, renamed with its key and indexes, its sequence kept."""
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY NONE")
    op.execute(f"ALTER TABLE access_log RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_access_log TO pk_{OLD}")
    for index in ("ix_access_log_party_id", "ix_access_log_at"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_unpartitioned")


def _guard() -> None:
    """All 0010, 0026 and 0027 made on the old table but its indexes."""
    op.execute(
        "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
        "FOR EACH ROW EXECUTE FUNCTION servicetrail_access_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION servicetrail_append_only()"
    )
    reader = op.get_bind().execute(text("SELECT servicetrail_reader_role()")).scalar_one()
    op.execute(f'GRANT SELECT ON access_log TO "{reader}"')
    op.execute("ALTER TABLE access_log ENABLE ROW LEVEL SECURITY")
    op.execute(
        f'CREATE POLICY own_party_entries ON access_log FOR SELECT TO "{reader}" '
        "USING (party_id = current_setting('servicetrail.party_id', true))"
    )


def _months_held(bind: Connection, table: str) -> set[str]:
    """The months (`YYYY-MM`, UTC) the table holds entries of: from its oldest entry's
    to its newest's, each looked up in the index by time (a month is a seek, not a scan)."""
    first, last = bind.execute(text(f"SELECT min(at), max(at) FROM {table} WHERE id > 0")).one()
    if first is None:
        return set()
    held = set()
    for month in _months_between(_month_of(first), _month_of(last)):
        start, after = _bounds(month)
        found = bind.execute(
            text(f"SELECT 1 FROM {table} WHERE id > 0 AND at >= {start} AND at < {after} LIMIT 1")
        ).first()
        if found is not None:
            held.add(month)
    return held


def _months_ahead() -> set[str]:
    now = _month_of(datetime.now(timezone.utc))
    return set(_months_between(now, _shift(now, AHEAD_MONTHS)))


def _month_of(at: datetime) -> str:
    at = at.astimezone(timezone.utc)
    return f"{at.year:04d}-{at.month:02d}"


def _shift(month: str, count: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _months_between(first: str, last: str) -> list[str]:
    months = [first]
    while months[-1] < last:
        months.append(_shift(months[-1], 1))
    return months


def _bounds(month: str) -> tuple[str, str]:
    return f"'{month}-01 00:00:00+00'", f"'{_shift(month, 1)}-01 00:00:00+00'"
