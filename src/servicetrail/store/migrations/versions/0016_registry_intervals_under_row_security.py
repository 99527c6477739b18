"""PostgreSQL: the reader role reads its own Party's Responsibility intervals only.

Who supplies which Device, and since when, is each Supplier's commercial business, and rule 3
reads only the viewer's own intervals (`visibility_sql.held_clause`, the device search's
prefetch, the record page's explanations all name the viewer's Party). A statement run as
the reader role, by a bug or through an injection, could read the whole registry (audit,
session 16); row-level security now holds it to the viewer's Party, as it does the trail,
the visibility index, the access log and the watches. Users, Parties and Devices stay
readable: a record shows its sender's role and Party name, and its Device's type. The
writers, the index's derivation and the watch matcher run as the store's owner.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"

READER = "servicetrail_reader"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE responsibility ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY own_party_intervals ON responsibility FOR SELECT TO {READER} "
        "USING (party_id = current_setting('servicetrail.party_id', true))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY own_party_intervals ON responsibility")
    op.execute("ALTER TABLE responsibility DISABLE ROW LEVEL SECURITY")
