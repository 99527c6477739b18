"""On PostgreSQL, a watch's events no longer carry a foreign key to the watch.

The key was checked row by row as the matcher wrote its events: with one Party's 200 watches
matching every record it was most of the shared matcher's time (400,000 events: 3.4-4.2 s
with it, 1.4-1.6 s without; session 32), and every Party's events waited behind it. What
the key guarded holds without it: the matcher writes events only for the watches it holds
FOR KEY SHARE to the end of its step, and `delete_watch` deletes the watch's events, then
the watch, waiting for such a step, then the events that step wrote (store.watches; the
matcher is store.watch_matcher now).

SQLite keeps the key: its check is an index probe, cheap, and dropping it would rebuild the
table, whose DROP under `foreign_keys=ON` deletes every pending delivery by cascade.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"

WATCH_KEY = "fk_watch_event_watch_id_watch"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(WATCH_KEY, "watch_event", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(  # events of watches deleted since have no watch to point to
            "DELETE FROM watch_event e WHERE NOT EXISTS "
            "(SELECT 1 FROM watch w WHERE w.id = e.watch_id)"
        )
        op.create_foreign_key(
            WATCH_KEY, "watch_event", "watch", ["watch_id"], ["id"], ondelete="CASCADE"
        )
