"""docs/scaling.md promises the schema shards by Device unchanged (Citus): every primary and
unique key of the large tables includes device_id. Checked on the migrated PostgreSQL store."""

from __future__ import annotations

from sqlalchemy import text

from servicetrail.store.engine import open_store

DISTRIBUTED = ("sat_record", "sat_payload", "responsibility", "device")


def test_every_key_of_the_distributed_tables_includes_device_id(pg_url):
    engine = open_store(pg_url)
    with engine.connect() as conn:
        keys = conn.execute(
            text("""
            SELECT tc.table_name, tc.constraint_name, array_agg(kcu.column_name::text)
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name
            WHERE tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND tc.table_name = ANY(:tables)
            GROUP BY tc.table_name, tc.constraint_name"""),
            {"tables": list(DISTRIBUTED)},
        ).all()
        nullable = conn.execute(
            text(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'device_id' "
                "AND table_name = ANY(:tables) AND is_nullable = 'YES'"
            ),
            {"tables": list(DISTRIBUTED)},
        ).all()
    engine.dispose()
    assert {table for table, _, _ in keys} == set(DISTRIBUTED)
    assert [k for k in keys if "device_id" not in k[2]] == []
    assert nullable == []  # a distribution column cannot hold NULL
