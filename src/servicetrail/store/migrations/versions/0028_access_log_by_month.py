"""The access log partitioned by month of `at` on PostgreSQL, so that retention drops a month
whole (store.access_partitions).

0027's retention deleted a month's entries row by row through the append-only trigger, some
108,000 a second: a month at 700 reads a second (1.8 billion entries) took about 5 hours in
one transaction, every seal waiting behind it (audit 51e). The key becomes (id, at), as a
partitioned table's key must hold the partition key; ids still come from the same sequence.
The table is copied whole into the partitioned one: a store's upgrade takes as long as that.
Its trigger (0027's), its policy and its reader role's grant are made again on the new table.

SQLite keeps its one table: it has no retention of the access log.

Revision ID: 0028
Revises: 0027
"""

from datetime import datetime, timezone

from alembic import op
from sqlalchemy import text

revision = "0028"
down_revision = "0027"

OLD = "access_log_unpartitioned"
AHEAD_MONTHS = 3  # as store.access_partitions makes them
# the columns as 0010 made them, in its order
COLUMNS = (
    "id, at, party_id, actor, interface, action, filters, records_returned, "
    "mp141_records_returned, device_ids"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside()
    op.execute(f"CREATE TABLE access_log (LIKE {OLD} INCLUDING DEFAULTS) PARTITION BY RANGE (at)")
    op.execute("ALTER TABLE access_log ADD CONSTRAINT pk_access_log PRIMARY KEY (id, at)")
    for month in _months_held() | _months_ahead():
        start, after = _bounds(month)
        op.execute(
            f"CREATE TABLE access_log_p{month[:4]}_{month[5:]} PARTITION OF access_log "
            f"FOR VALUES FROM ({start}) TO ({after})"
        )
    _copy_and_guard()


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _set_aside()
    op.execute(f"CREATE TABLE access_log (LIKE {OLD} INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE access_log ADD CONSTRAINT pk_access_log PRIMARY KEY (id)")
    _copy_and_guard()


def _set_aside() -> None:
    """The table as it is, renamed with its key and indexes, its sequence kept."""
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY NONE")
    op.execute(f"ALTER TABLE access_log RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT pk_access_log TO pk_{OLD}")
    for index in ("ix_access_log_party_id", "ix_access_log_at"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_unpartitioned")


def _copy_and_guard() -> None:
    """The entries into the new table, and all 0010, 0026 and 0027 made on the old one."""
    # the indexes after the copy: built once, not grown row by row
    op.execute(f"INSERT INTO access_log ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute(f"DROP TABLE {OLD}")
    op.execute("ALTER SEQUENCE access_log_id_seq OWNED BY access_log.id")
    op.execute("CREATE INDEX ix_access_log_party_id ON access_log (party_id, at, id)")
    op.execute("CREATE INDEX ix_access_log_at ON access_log (at, id) WHERE id > 0")
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


def _months_held() -> set[str]:
    """The months (`YYYY-MM`, UTC) the old table holds entries of: from its oldest entry's
    to its newest's, each looked up in the index by time (a month is a seek, not a scan)."""
    bind = op.get_bind()
    first, last = bind.execute(text(f"SELECT min(at), max(at) FROM {OLD} WHERE id > 0")).one()
    if first is None:
        return set()
    held = set()
    for month in _months_between(_month_of(first), _month_of(last)):
        start, after = _bounds(month)
        found = bind.execute(
            text(f"SELECT 1 FROM {OLD} WHERE id > 0 AND at >= {start} AND at < {after} LIMIT 1")
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
