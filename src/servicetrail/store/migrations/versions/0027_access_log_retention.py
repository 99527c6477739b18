"""Retention of the access log (`servicetrail retention --access-log-keep-months`): the one
month it names for its transaction (`servicetrail.retiring_access_month`) may lose its
entries, as `servicetrail.retiring_month` lets a month's leaves and tiles go (0009). Every
other UPDATE or DELETE is refused, as before. At 700 reads a second the log grew some 24 GB a
day and nothing ever removed it (audit 49d).

PostgreSQL only: a SQLite store keeps its access log whole, as it keeps its trail (retention
drops monthly partitions, which only PostgreSQL has).

Revision ID: 0027
Revises: 0026
"""

from alembic import op

revision = "0027"
down_revision = "0026"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # the month of `at` as the access log's monthly logs name it (UTC)
    op.execute(
        "CREATE FUNCTION servicetrail_access_log_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF TG_OP = 'DELETE' AND to_char(OLD.at AT TIME ZONE 'UTC', 'YYYY-MM') "
        "= current_setting('servicetrail.retiring_access_month', true) THEN RETURN OLD; "
        "END IF; "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
    )
    _trigger("servicetrail_access_log_append_only")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _trigger("servicetrail_append_only")  # 0001's, as 0010 made it
    op.execute("DROP FUNCTION servicetrail_access_log_append_only()")


def _trigger(function: str) -> None:
    op.execute("DROP TRIGGER access_log_append_only ON access_log")
    op.execute(
        "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
