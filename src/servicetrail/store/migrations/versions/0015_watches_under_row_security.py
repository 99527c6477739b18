"""PostgreSQL: a Party's watches and their events under row-level security, and no webhook's
signing secret or URL readable by the reader role.

The events pages are read as the viewer (`store.read_transaction.read_as`), whose role was
granted every column of every watch (0008): a statement run as the reader role, by a bug or
through an injection, could read another Party's webhook URLs and signing secrets, which
would let it forge deliveries to that Party's receivers (audit, session 16). Row-level
security already holds the trail, the visibility index and the access log to the viewer's
Party; now the watches too. The delivery worker and the writers run as the store's owner,
which row-level security does not bind. SQLite has neither roles nor policies.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"

READER = "servicetrail_reader"
PARTY = "current_setting('servicetrail.party_id', true)"
# what the events statements read of a watch as the viewer; never the webhook's URL or secret
READER_COLUMNS = "id, party_id, name, created_at, after_record_id, last_event_id, read_event_id"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"REVOKE SELECT ON watch FROM {READER}")
    op.execute(f"GRANT SELECT ({READER_COLUMNS}) ON watch TO {READER}")
    op.execute("ALTER TABLE watch ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY own_party_watches ON watch FOR SELECT TO {READER} "
        f"USING (party_id = {PARTY})"
    )
    op.execute("ALTER TABLE watch_event ENABLE ROW LEVEL SECURITY")
    # the watch is looked up under the policy above: only the viewer's Party's are there
    op.execute(
        f"CREATE POLICY own_party_events ON watch_event FOR SELECT TO {READER} "
        "USING (EXISTS (SELECT 1 FROM watch w WHERE w.id = watch_event.watch_id))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY own_party_events ON watch_event")
    op.execute("ALTER TABLE watch_event DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY own_party_watches ON watch")
    op.execute("ALTER TABLE watch DISABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE SELECT ON watch FROM {READER}")
    op.execute(f"GRANT SELECT ON watch TO {READER}")
