"""Retirements signed after the fact (store.log_retirement): `db upgrade --sign-retirements`
signs only a month that retention dropped before it signed retirements, never one an
intruder's row names that is still whole.

The trail, the key and the intruder's wipe are test_log_lifecycle's; `db upgrade`'s own
words about them are tested there too."""

from __future__ import annotations

from servicetrail.store.log_audit import audit
from servicetrail.store.log_tree import latest_checkpoints
from tests.store.test_log_lifecycle import (
    _OLD_MONTHS,
    _kept_of,
    _sealed_trail,
    _this_month,
    _unsigned,
    _wiped_as_retention_wipes,
    store_key,
)


def test_db_upgrade_signs_no_retirement_of_a_month_retention_has_not_dropped(pg_engine):
    """Audit 46j: a row with no note, which anyone with the database can add, had `db upgrade`
    sign the retirement of a month still whole (the current one too) at its last checkpoint;
    the months wiped later then passed `log verify`, even against kept checkpoints."""
    from servicetrail.signing import log_prefix
    from servicetrail.store.log_retirement import (
        retirements_unsigned,
        sign_earlier_retirements,
    )
    from tests.intruder import intrude

    _sealed_trail(pg_engine)
    with pg_engine.connect() as conn:
        kept = [c.note for c in latest_checkpoints(conn)]
    intrude(
        pg_engine,
        *(
            (
                "INSERT INTO log_retirement (origin, family, month, note, created_at) "
                "VALUES ('', 'sat', :m, NULL, now())",
                {"m": month},
            )
            for month in (*_OLD_MONTHS, _this_month())
        ),
    )
    with pg_engine.begin() as conn:
        assert retirements_unsigned(conn) == []
        assert (
            sign_earlier_retirements(
                conn, store_key(pg_engine), log_prefix(), (*_OLD_MONTHS, _this_month())
            )
            == []
        )
    _wiped_as_retention_wipes(pg_engine)
    wanted = [_unsigned(month) for month in _OLD_MONTHS]
    assert audit(pg_engine, "servicetrail/sat", kept=_kept_of(pg_engine, kept)).findings == wanted
