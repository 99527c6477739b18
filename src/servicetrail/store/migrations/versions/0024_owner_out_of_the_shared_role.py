"""The store's owner out of the shared reader role of stores before 0019, for a store that
passed 0019 as it was first committed (dcc9ff7).

That text gave the store a reader role of its own and left the owner a member of
servicetrail_reader, which 0019 has taken the owner out of since (a9b4e73, audit 29e). Upgraded
by any later servicetrail, such a store kept the membership: `db check` failed on it at once
(REVOKE servicetrail_reader FROM the owner), and through it the owner read every store on the
server still before 0019. As 0019 now does, this may stop the reads of the owner's stores still
before 0019 until they are upgraded too (docs/operating.md, "Upgrades").

Revision ID: 0024
Revises: 0023
"""

from alembic import op

from servicetrail.store.reader_role import leave_the_shared_role

revision = "0024"
down_revision = "0023"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        leave_the_shared_role(op.get_bind())


def downgrade() -> None:
    """Nothing: the membership was never meant to outlive 0019."""
