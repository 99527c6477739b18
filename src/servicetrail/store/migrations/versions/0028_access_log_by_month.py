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
copies entries 10 minutes old or more alone (an hour before session 58): an entry is written
when its read ends, with the read's time, so one written later than that falls behind where
the copy goes on from. While the copy is paused (an upgrade killed or failed, the servers of
the version before started again on the store at 0027) one may come in later still: a
stream's entry is written when it ends, hours on; and retention at 0027 may delete a month's
entries meanwhile. So the copy ahead, in the transaction that makes its table, puts two
triggers on the old one (`_record_behind`): one records each entry written 5 minutes or more
after its time (a read's entry is written within seconds: the trigger's condition is false
and nothing is recorded), the other the month of each DELETE (0027's append-only trigger
lets no other row go, and no UPDATE). This migration, in the upgrade's transaction, with the
old table set aside (locked), copies what is left (all of it when nothing was copied ahead,
as `alembic upgrade` alone does), then copies each month recorded again from the old table
and each entry recorded the copy lacks (`_catch_up`), and drops the triggers and their
record. It compared the two tables hour by hour (count and sum of ids), some 0.6-0.8 s a
million entries, 10-15 minutes a billion with the store locked (session 57); now what it does
is as much as was recorded (at a million entries with a thousand late ones, 0.6 s beside 8.4:
BENCHMARKS, session 58). A copy with no record was made by none of this text's copies ahead:
only by its second and third texts, which never shipped (session 59). It is dropped and the
whole made in the upgrade's transaction, as `alembic upgrade` alone makes it: slower, and
right whatever the copy holds. Then it puts the copy in the old table's place: the tables it
leaves are those its first text left (session 57 compared the two schemas). Its partitions are
made again for the months held then (retention at 0027 deletes a month's entries whole, in one
transaction: the partition of a month gone goes with its copy).

SQLite keeps its one table: it has no retention of the access log.

Revision ID: 0028
Revises: 0027
"""

import time
from collections.abc import Callable
from datetime import datetime, timezone
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
# How old an entry must be for the copy ahead to take it: most come in seconds, and BEHIND
# holds those that come later. What is younger is copied in this migration's transaction, the
# store locked: an hour of 700 reads a second was 2.5 million entries (BENCHMARKS, session 58).
# No less than LATE: else an entry written behind a batch, by a transaction that began after
# it, could be stamped less than LATE before it was written, and go unrecorded
SETTLED = "10 minutes"
# While the copy is made ahead, the old table's entries written behind it and the months
# retention empties (0027's DELETE, the one a transaction names) are recorded here by two
# triggers (RECORD), so that this migration's transaction makes again those entries and months
# alone. Made with the copy, in its transaction, dropped with the old table: a copy without it
# was made by no copy ahead that shipped, and is made again whole (`upgrade`).
BEHIND = "access_log_0028_behind"
RECORD = "servicetrail_access_log_0028_behind"
# An entry is recorded when stamped this long or more before it is written (a stream's,
# stamped at its start, hours before); no batch of the copy takes one stamped later before it
# is committed (`_settled`). A read's entry, stamped when the read began, is written within
# seconds: the trigger's condition, evaluated on the live server's every write, is then false
# and nothing is recorded (BENCHMARKS, session 58).
LATE = "5 minutes"
# How many seconds the copy ahead waits, a batch at a time, for a writer that holds it back
# (`_settled`: retention at 0027 deletes a month in one transaction, for hours) before it
# leaves the rest to this migration's transaction, which waits UPGRADE_LOCK_WAIT for its lock
WAITS = 60


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    ahead = bind.execute(text("SELECT to_regclass(:t)"), {"t": STAGED}).scalar() is not None
    recorded = bind.execute(text("SELECT to_regclass(:t)"), {"t": BEHIND}).scalar() is not None
    if ahead and not recorded:  # made by no copy ahead that shipped: nothing says what it lacks
        op.execute(f"DROP TABLE {STAGED}")  # and its partitions
    _set_aside()
    _copy(bind, OLD, None)  # what is not copied yet, or all of it
    if recorded:
        _catch_up(bind)
    op.execute(f"DROP TABLE {OLD}")  # and its triggers
    if recorded:
        op.execute(f"DROP TABLE {BEHIND}")
        op.execute(f"DROP FUNCTION {RECORD}()")
    op.execute(f"ALTER TABLE {STAGED} RENAME TO access_log")
    op.execute(f"ALTER TABLE access_log RENAME CONSTRAINT pk_{STAGED} TO pk_access_log")
    for index in ("ix_access_log_party_id", "ix_access_log_at"):
        op.execute(f"ALTER INDEX {index.replace('access_log', STAGED)} RENAME TO {index}")
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY access_log.id")
    _guard()


def copy_ahead(conn: Connection, committed: Callable[[], None]) -> None:
    """The entries SETTLED old or more into the partitioned copy, BATCH a transaction (each
    ended by `committed`), going on from what an earlier call copied."""
    _copy(conn, "access_log", committed)


def _copy(conn: Connection, source: str, committed: Callable[[], None] | None) -> None:
    """`source`'s entries into the copy (made if missing, its partitions those of the months
    held now), after the last one copied: those SETTLED old BATCH a transaction, each ended
    by `committed`; without it, all in the caller's transaction, the index by party after
    them (built once, not grown row by row)."""
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": STAGED}).scalar() is None:
        if committed is not None:  # committed with the copy: nothing is written behind it unseen
            _record_behind(conn, source)
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
    waits = WAITS
    while last is not None:
        # all of it with the table set aside (locked); ahead, read before the batch's snapshot
        # is taken, in its transaction
        settled, held = ("infinity", False) if committed is None else _settled(conn, source)
        copied = conn.execute(
            text(
                f"WITH copied AS (INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {source} "
                "WHERE id > 0 AND (at, id) > (:at, :id) AND at < :settled ORDER BY at, id "
                f"LIMIT {BATCH} RETURNING at, id) "
                "SELECT at, id FROM copied ORDER BY at DESC, id DESC LIMIT 1"
            ),
            {"at": last[0], "id": last[1], "settled": settled},
        ).first()
        if committed is not None:
            committed()
        if copied is None and held and waits:  # for the writer, not for the lock 0028 takes
            waits -= 1
            time.sleep(1)
        else:
            last = copied
    if committed is None:  # none there are: ids are drawn from 1 (copied as the first text did)
        conn.execute(
            text(f"INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {source} WHERE id <= 0")
        )
    conn.execute(
        text(f"CREATE INDEX IF NOT EXISTS ix_{STAGED}_party_id ON {STAGED} (party_id, at, id)")
    )
    if committed is not None:
        committed()


def _settled(conn: Connection, source: str) -> tuple[str, bool]:
    """What a batch of the copy ahead may take: entries stamped SETTLED ago, and LATE before
    the start of each transaction writing to `source` now (an entry it wrote, not committed
    yet, is unseen by the batch, and unrecorded when stamped less than LATE before it was
    written). An entry written after this is read is written after the batch's transaction
    began: one behind the batch is stamped more than SETTLED (no less than LATE) before it
    was written, and recorded. A writer not shown (another role's session, a prepared
    transaction) holds the copy where it is. As text (-infinity is no Python time), and
    whether a writer holds it back."""
    bound, held = conn.execute(
        text(
            "SELECT least(ago, first - CAST(:late AS interval))::text, first - "
            "CAST(:late AS interval) < ago FROM (SELECT now() - CAST(:settled AS interval) AS ago, "
            "min(coalesce(a.xact_start, '-infinity')) AS first "
            "FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND l.relation = to_regclass(:table) "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.mode = 'RowExclusiveLock' AND l.pid IS DISTINCT FROM pg_backend_pid()) AS w"
        ),
        {"settled": SETTLED, "late": LATE, "table": source},
    ).one()
    return str(bound), bool(held)


def _record_behind(conn: Connection, source: str) -> None:
    """BEHIND and its triggers on `source` (the old table, at 0027): an entry written LATE or
    more after its time, and the month of a DELETE (0027's append-only trigger refuses every
    other row, and every UPDATE)."""
    conn.execute(text(f"CREATE TABLE {BEHIND} (id bigint, at timestamptz, retired text)"))
    conn.execute(
        text(
            f"CREATE FUNCTION {RECORD}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "DECLARE month text := current_setting('servicetrail.retiring_access_month', true); "
            f"BEGIN IF TG_LEVEL = 'ROW' THEN INSERT INTO {BEHIND} (id, at) "
            "VALUES (NEW.id, NEW.at); "
            f"ELSIF month ~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$' THEN INSERT INTO {BEHIND} (retired) "
            "VALUES (month); END IF; RETURN NULL; END $$"
        )
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {BEHIND}_late AFTER INSERT ON {source} FOR EACH ROW "
            f"WHEN (NEW.at < clock_timestamp() - interval '{LATE}') EXECUTE FUNCTION {RECORD}()"
        )
    )
    conn.execute(
        text(
            f"CREATE TRIGGER {BEHIND}_retired AFTER DELETE ON {source} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {RECORD}()"
        )
    )


def _catch_up(conn: Connection) -> None:
    """The copy made the old table's entries again where BEHIND says they may differ: each
    month retention emptied, as the old table holds it now (the partition of a month it holds
    no entry of went with its copy: `_partitions`), and each entry recorded, unless copied."""
    months = conn.execute(
        text(f"SELECT DISTINCT retired FROM {BEHIND} WHERE retired IS NOT NULL ORDER BY 1")
    ).scalars()
    for month in list(months):
        name = _partition(month)
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar() is None:
            continue
        start, after = _bounds(month)
        conn.execute(text(f"TRUNCATE {name}"))
        conn.execute(
            text(
                f"INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {OLD} "
                f"WHERE at >= {start} AND at < {after}"
            )
        )
    conn.execute(
        text(
            f"INSERT INTO {STAGED} ({COLUMNS}) SELECT {COLUMNS} FROM {OLD} AS old "
            f"WHERE (id, at) IN (SELECT id, at FROM {BEHIND}) AND NOT EXISTS "
            f"(SELECT 1 FROM {STAGED} AS copy WHERE copy.id = old.id AND copy.at = old.at)"
        )
    )


def _partitions(conn: Connection, source: str) -> None:
    """The copy's partitions: one for each month `source` holds entries of and the next few,
    as the first text made them; one made earlier for a month since emptied (retention) or
    now past is dropped with what was copied into it."""
    wanted = {_partition(month): month for month in _months_held(conn, source) | _months_ahead()}
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


def _partition(month: str) -> str:
    return f"access_log_p{month[:4]}_{month[5:]}"


def _bounds(month: str) -> tuple[str, str]:
    return f"'{month}-01 00:00:00+00'", f"'{_shift(month, 1)}-01 00:00:00+00'"
