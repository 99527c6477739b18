"""The trail is evidence: the database itself refuses UPDATE and DELETE on SAT records and
payloads."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from servicetrail.store.schema import sat_payload, sat_record
from servicetrail.store.writer import append_records
from tests.personas import World


def snapshot(engine: Engine) -> tuple[list, list]:
    with engine.connect() as conn:
        return (
            conn.execute(select(sat_record).order_by(sat_record.c.id)).all(),
            conn.execute(select(sat_payload).order_by(sat_payload.c.record_id)).all(),
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE sat_record SET srv = '1.1.1' WHERE id = :id",
        "UPDATE sat_record SET user_id = '90-B3-D5-1F-30-09-09-09'",
        "DELETE FROM sat_record WHERE id = :id",
        "DELETE FROM sat_record",
        "UPDATE sat_payload SET payload = 'forged' WHERE record_id = :id",
        "DELETE FROM sat_payload WHERE record_id = :id",
        "DELETE FROM sat_payload",
    ],
)
def test_raw_sql_cannot_change_or_remove_the_trail(world: World, statement: str) -> None:
    before = snapshot(world.engine)
    with pytest.raises(DBAPIError, match="append-only"), world.engine.begin() as conn:
        conn.execute(text(statement), {"id": world.ids["np_resp"]})
    assert snapshot(world.engine) == before


def test_core_update_and_delete_are_refused_too(world: World) -> None:
    before = snapshot(world.engine)
    record_id = world.ids["np_req"]
    for statement in (
        update(sat_record).where(sat_record.c.id == record_id).values(kind="response"),
        delete(sat_record).where(sat_record.c.id == record_id),
        update(sat_payload).where(sat_payload.c.record_id == record_id).values(payload="x"),
        delete(sat_payload).where(sat_payload.c.record_id == record_id),
    ):
        with pytest.raises(DBAPIError, match="append-only"), world.engine.begin() as conn:
            conn.execute(statement)
    assert snapshot(world.engine) == before


def test_appending_still_works(world: World) -> None:
    record = world.records["np_req"]
    later = replace(record, logged_at=record.logged_at.replace(year=2026))
    with world.engine.begin() as conn:
        assert append_records(conn, [later]) == (1, 0)
        assert (
            conn.execute(select(func.count()).select_from(sat_record)).scalar()
            == len(world.records) + 1
        )
