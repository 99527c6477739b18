"""The logs over a store's life: migration 0009 brings records stored before it into their
logs, and retention (PostgreSQL) drops a month's log with its records, keeping its last
checkpoint, after which `log verify` still finds nothing wrong."""

from __future__ import annotations

import json

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from servicetrail.domain.checkpoint import b64
from servicetrail.domain.intervals import Conflict
from servicetrail.domain.times import parse_time
from servicetrail.store import migrate
from servicetrail.store.log_audit import audit
from servicetrail.store.log_tables import (
    log_checkpoint,
    log_leaf,
    log_pending,
    log_retirement,
)
from servicetrail.store.log_tree import latest_checkpoints
from servicetrail.store.merkle_log import seal_store
from servicetrail.store.partitions import drop_older_than, ensure_months, existing_months
from servicetrail.store.schema import sat_record
from servicetrail.store.writer import append_records
from tests.conftest import Cli
from tests.intruder import intrude
from tests.personas import load_personas, starts_with_personas
from tests.store.log_fixtures import check_every_leaf, records_in, store_key, append, records
from tests.store.retired_trail import (
    OLD_MONTHS,
    kept_of,
    sealed_trail,
    unsigned,
    wiped_as_retention_wipes,
)
from tests.store.revisions import store_at, todays_writers
from tests import rfc9162


def test_0009_salts_and_queues_the_records_already_stored(db_at_revision):
    engine = store_at(db_at_revision("0008"), parse_time("2025-03-01T10:00:00Z"))
    sqlite = engine.dialect.name == "sqlite"
    sender, device = "90-B3-D5-1F-30-01-00-00", "00-DB-12-34-56-78-90-A0"
    try:
        with engine.begin() as conn:
            for i in range(1, 4):
                at = f"2025-03-01T0{i}:00:00.000000Z" if sqlite else f"2025-03-01 0{i}:00:00+00"
                conn.execute(
                    text(
                        "INSERT INTO sat_record (id, logged_at, kind, request_id, srv, user_id, "
                        "device_id) VALUES (:id, :at, 'request', :rid, '4.1.1', :u, :d)"
                    ),
                    {"id": i, "at": at, "rid": f"{sender}:{device}:{i}", "u": sender, "d": device},
                )
                conn.execute(
                    text(
                        "INSERT INTO sat_payload (record_id, logged_at, device_id, user_id, "
                        "payload) VALUES (:id, :at, :d, :u, :p)"
                    ),
                    {"id": i, "at": at, "d": device, "u": sender, "p": f"<body>{i}</body>"},
                )
        command.upgrade(migrate._config(engine), "head")
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(log_pending)).scalar() == 3
        assert audit(engine, "servicetrail/sat").findings == []
        assert [s.size for s in seal_store(engine)] == [3]
        assert check_every_leaf(engine) == 3
        assert audit(engine, "servicetrail/sat").findings == []
    finally:
        engine.dispose()


@starts_with_personas
def test_retention_drops_a_months_log_and_keeps_its_last_checkpoint(pg_engine):
    load_personas(pg_engine)
    seal_store(pg_engine)
    with pg_engine.connect() as conn:
        before = {c.origin: c.note for c in latest_checkpoints(conn)}
    with pg_engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(log_leaf.delete().where(log_leaf.c.month == "2025-02"))
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=1, signer=store_key(pg_engine))
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_leaf)).scalar() == 0
        assert {c.origin: c.note for c in latest_checkpoints(conn)} == before
        assert conn.execute(select(func.count()).select_from(log_checkpoint)).scalar() >= len(
            before
        )
    assert audit(pg_engine, "servicetrail/sat").findings == []


@starts_with_personas
def test_a_loader_that_met_retention_part_way_makes_no_retired_month_again(pg_engine):
    """A batch checked its months for retired ones, then retention committed, then the batch
    made its months' partitions: it made the dropped months again, stored 1,773 records there
    that could never be sealed, and `log verify` failed for good (audit 25a). A month with
    checkpoints and no partition is retired: it is not made again, and the batch's rows of
    it fail, to be refused when it is replayed (its log retired: checkpoints and no leaves)."""
    from servicetrail.store import partitions

    load_personas(pg_engine)
    seal_store(pg_engine)
    with pg_engine.begin() as conn:
        dropped = drop_older_than(conn, keep_months=1, signer=store_key(pg_engine))
        kept = partitions.existing_months(conn)
    assert dropped
    partitions._known.pop(str(pg_engine.url), None)  # a loader of another process
    ensure_months(pg_engine, [parse_time("2025-02-03T04:05:06Z")])  # a persona month
    with pg_engine.connect() as conn:
        assert partitions.existing_months(conn) == kept
    assert audit(pg_engine, "servicetrail/sat").findings == []


@starts_with_personas
def test_a_month_dropped_by_hand_is_refused_and_named_until_retention_retires_it(
    pg_url, pg_engine, tmp_path, monkeypatch
):
    """Its partitions dropped by hand, its log kept. A load of the month: the writer took it
    for not retired (leaves), `ensure_months` for retired (checkpoints, no partitions), and it
    failed twice with "no partition of relation sat_record found for row" (60e); refused once
    now, naming the month and what to do. `log verify` named each of its records removed, a
    line each, and never the month; `db check` passed; retention, which walks the months by
    their partitions, never saw it, and its log stayed for ever (61b). Both name it now, and
    retention past the month retires its log as it would have the month's.

    Then, as for every month retention retired: a new tree under its origin would contradict
    its kept checkpoints, so records of it could never be sealed; they are refused, with the
    reason (they were stored, stayed queued for ever, and `log verify` said nothing), and
    make no partitions again, which the next retention dropped again and reported (audit of
    hostile inputs, session 17)."""
    from servicetrail.store.engine import StoreError
    from servicetrail.store.migrate import schema_differences

    load_personas(pg_engine)
    seal_store(pg_engine)
    with pg_engine.begin() as conn:
        for table in ("sat_record", "sat_payload", "sat_visibility"):
            conn.execute(text(f"DROP TABLE {table}_p2025_02"))
    with pytest.raises(StoreError, match="partitions of 2025-02 are gone.* backup"):
        load_personas(pg_engine)
    said = "the store's partitions of 2025-02 are gone, all or some, but its log still holds"
    findings = audit(pg_engine, "servicetrail/sat").findings
    assert findings[0].startswith(f"log servicetrail/sat/2025-02: {said}")
    assert len(findings) > 1 and all(f.endswith(" removed") for f in findings[1:])
    assert [p for p in schema_differences(pg_engine) if said in p] != []
    # a search over it listed nothing and said nothing of why (62d); one beside it, no note
    cli = Cli(pg_url, tmp_path)
    over = cli(
        "records", "--party", "NORTHPOWER", "--from", "2025-02-10", "--to", "2025-03-01",
        "--format", "jsonl",
    )  # fmt: skip
    assert over.exit_code == 0 and over.stdout == "", over.output
    assert "note: the records of 2025-02 are no longer held: its partitions were dropped" in (
        over.stderr
    )
    beside = cli("records", "--party", "NORTHPOWER", "--from", "2025-01-01", "--to", "2025-02-01")
    assert beside.exit_code == 0 and "no longer held" not in beside.stderr
    # the own report over it, the same (it said only "N records")
    report = cli(
        "report", "own", "--party", "NORTHPOWER", "--from", "2025-02-10", "--to", "2025-03-01"
    )
    assert report.exit_code == 0 and "note: the records of 2025-02 are no longer held" in (
        report.stderr
    ), report.output
    # the triggers of a record whose window reaches back into it, the same (it said nothing:
    # 63d); a window within March is records' `beside` above, the same helper
    with pg_engine.connect() as conn:
        response = conn.execute(
            select(sat_record.c.id).where(
                sat_record.c.logged_at == parse_time("2025-03-05T12:00:09Z")
            )
        ).scalar_one()
    week = cli("triggers", str(response), "--party", "SOUTHENERGY", "--window", "10080")
    assert week.exit_code == 0 and "note: the records of 2025-02 are no longer held" in (
        week.stderr
    ), week.output
    # stopped part-way (Ctrl-C as it retires 2025-02, 2025-01 retired before it): the months
    # are one transaction, so nothing of the run stays, and the next run names the month and
    # retires its log (below; 62d)
    from servicetrail.store import partitions

    retire_month = partitions.retire_month

    def stopped_at_february(conn, family, month, *rest):
        if month == "2025-02":
            raise KeyboardInterrupt
        retire_month(conn, family, month, *rest)

    with monkeypatch.context() as stopping:
        stopping.setattr(partitions, "retire_month", stopped_at_february)
        stopped = cli("retention", "--keep-months", "1")
    assert stopped.exit_code == 130, stopped.output
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_retirement)).scalar() == 0
        assert (2025, 1) in existing_months(conn)
    done = cli("retention", "--keep-months", "1")
    assert done.exit_code == 0, done.output
    assert "retired the log of 2025-02, whose partitions were dropped by hand" in done.output
    # and said after it too, by the signed retirement: the run's output was all that told
    # such a month from one its retention removed (62d)
    verified = audit(pg_engine, "servicetrail/sat")
    assert verified.findings == [] and verified.notes == [
        "log servicetrail/sat/2025-02 was retired after its records had been dropped by hand: "
        "their partitions were gone before the retention that retired it ran, which did not "
        "remove them (its signed retirement says so)"
    ]
    with pg_engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(sat_record)).scalar()
    with pytest.raises(Conflict, match="removed by retention"):
        load_personas(pg_engine)
    with pg_engine.begin() as conn:
        assert drop_older_than(conn, keep_months=1, dry_run=True) == []
    assert seal_store(pg_engine) == []
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_pending)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(sat_record)).scalar() == stored
    assert audit(pg_engine, "servicetrail/sat").findings == []


@starts_with_personas
def test_a_month_dropped_in_part_by_hand_before_its_first_seal_is_refused_too(pg_engine):
    """One of its partitions dropped by hand (sat_payload's), its log holding leaves and no
    checkpoint yet (an ingest stopped before its seal). The month was taken for made (its
    sat_record partition), and a load of it stopped with "no partition of relation
    sat_payload found for row" alone; `log verify` named each record changed, never the
    month (61b). With no checkpoint, a month dropped whole was made again, empty, and took
    the next load past the loss. Both are refused, and named, as a month dropped whole is."""
    from servicetrail.store import partitions
    from servicetrail.store.engine import StoreError

    load_personas(pg_engine)
    intrude(pg_engine, ("DELETE FROM log_checkpoint", {}), ("DROP TABLE sat_payload_p2025_02", {}))
    partitions._known.pop(str(pg_engine.url), None)
    with pytest.raises(StoreError, match="partitions of 2025-02 are gone.* backup"):
        load_personas(pg_engine)
    findings = audit(pg_engine, "servicetrail/sat").findings
    assert findings[0].startswith("log servicetrail/sat/2025-02: the store's partitions")


def test_a_month_dropped_by_hand_with_its_records_only_queued_is_named_and_refused(
    pg_engine, monkeypatch
):
    """Its records' leaves still queued, unsealed (the writer queues while the family's queue
    holds leaves, as after migration 0009's backfill), its partitions dropped by hand: leaves
    alone told such a month, so `log verify` named each record removed and never the month,
    and a load of it made it again, empty, past the loss (62d). Named and refused now, as a
    month with leaves is."""
    from servicetrail.store import merkle_log, partitions
    from servicetrail.store.engine import StoreError

    with monkeypatch.context() as queueing, pg_engine.begin() as conn:
        queueing.setattr(merkle_log, "_family_queued", lambda conn, family: True)
        append_records(conn, records_in(("2025-04",)))
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_leaf)).scalar() == 0
    with pg_engine.begin() as conn:
        for table in ("sat_record", "sat_payload", "sat_visibility"):
            conn.execute(text(f"DROP TABLE {table}_p2025_04"))
    findings = audit(pg_engine, "servicetrail/sat").findings
    assert findings[0].startswith("log servicetrail/sat/2025-04: the store's partitions")
    partitions._known.pop(str(pg_engine.url), None)  # a loader of another process
    with pytest.raises(StoreError, match="partitions of 2025-04 are gone.* backup"):
        ensure_months(pg_engine, [parse_time("2025-04-02T00:00:00Z")])


def test_db_upgrade_seals_what_0009_brought_into_the_logs(db_at_revision, monkeypatch, tmp_path):
    """Records stored before the logs are queued by 0009; `db upgrade` seals them, so that
    their proofs are there at once (a 409 until a server's first seal, a minute or more after
    the upgrade; audit 24a)."""
    from click.testing import CliRunner

    from servicetrail.cli import main
    from servicetrail.signing import load_signer

    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", str(tmp_path / "sign.key"))
    db_url = db_at_revision("0008")
    engine = store_at(db_url, parse_time("2025-03-01T10:00:00Z"))
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            at = "2025-03-01T01:00:00.000000Z" if sqlite else "2025-03-01 01:00:00+00"
            conn.execute(
                text(
                    "INSERT INTO sat_record (id, logged_at, kind, request_id, srv, user_id, "
                    "device_id) VALUES (1, :at, 'request', :rid, '4.1.1', :u, :d)"
                ),
                {"at": at, "rid": "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1",
                 "u": "90-B3-D5-1F-30-01-00-00", "d": "00-DB-12-34-56-78-90-A0"},
            )  # fmt: skip
        # with no signing key, the upgrade makes none: one of its own, made in whatever folder
        # it was run from, signed the server's logs with a key its trust file did not know
        # (review 24e); the leaves wait for a seal with the store's key
        keyless = CliRunner().invoke(main, ["--db", db_url, "db", "upgrade"])
        assert keyless.exit_code == 0, keyless.output
        assert "no signing key" in keyless.stderr and not (tmp_path / "sign.key").exists()
        assert keyless.stdout.startswith("the schema was upgraded from 0008")
        load_signer(tmp_path / "sign.key", "servicetrail")  # the store's key, as a server has it
        upgraded = CliRunner().invoke(main, ["--db", db_url, "db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output
        assert "sealed 1 log(s)" in upgraded.stderr
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(log_pending)).scalar() == 0
            assert [c.size for c in latest_checkpoints(conn)] == [1]
        again = CliRunner().invoke(main, ["--db", db_url, "db", "upgrade"])
        assert again.exit_code == 0 and "sealed" not in again.stderr  # nothing queued
    finally:
        engine.dispose()


@starts_with_personas
def test_retention_seals_the_leaves_of_the_months_it_drops_first(
    pg_engine, pg_url, tmp_path, monkeypatch, use_settings
):
    """Audit 44d: leaves in no signed checkpoint (an ingest stopped before its seal, no
    server running) went with their month and left no signed trace. Retention seals them
    first with the store's key; without the key at hand, it drops nothing."""
    import os

    monkeypatch.chdir(tmp_path)
    load_personas(pg_engine)
    seal_store(pg_engine)
    append(pg_engine, records(3))  # into January and February 2025, stored and unsealed
    with pg_engine.connect() as conn:
        sizes = {
            month: conn.execute(
                select(func.count()).select_from(log_leaf).where(log_leaf.c.month == month)
            ).scalar_one()
            for month in ("2025-01", "2025-02")
        }
    cli = Cli(pg_url, tmp_path)
    stores_key = os.environ["SERVICETRAIL_SIGNING_KEY"]
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "elsewhere.key")
    refused = cli("retention", "--keep-months", "1")
    assert refused.exit_code == 2 and "no signing key at" in refused.stderr
    assert "2025-01" in refused.stderr and not (tmp_path / "elsewhere.key").exists()
    with pg_engine.connect() as conn:
        assert (2025, 1) in existing_months(conn)  # nothing dropped
    use_settings(SERVICETRAIL_SIGNING_KEY=stores_key)
    assert cli("retention", "--keep-months", "1").exit_code == 0
    with pg_engine.connect() as conn:
        kept = {
            c.origin.rsplit("/", 1)[1]: c.size
            for c in latest_checkpoints(conn)
            if c.origin.rsplit("/", 2)[1] == "sat"
        }
        assert (2025, 1) not in existing_months(conn)
    assert {month: kept[month] for month in sizes} == sizes


def test_retention_keeps_a_month_whose_records_wait_in_the_logs_queue(
    pg_at_revision, tmp_path, monkeypatch
):
    """Review 44f: the check looked at leaves appended past a checkpoint only; the records of
    a store upgraded without its key wait in the queue (0009), and went with their month."""
    from click.testing import CliRunner

    from servicetrail.cli import main

    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", str(tmp_path / "absent.key"))
    url = pg_at_revision("0008")
    engine = store_at(url, parse_time("2025-03-01T10:00:00Z"))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sat_record (id, logged_at, kind, request_id, srv, user_id, "
                    "device_id) VALUES (1, '2025-03-01 01:00:00+00', 'request', :rid, '4.1.1', "
                    ":u, :d)"
                ),
                {"rid": "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1",
                 "u": "90-B3-D5-1F-30-01-00-00", "d": "00-DB-12-34-56-78-90-A0"},
            )  # fmt: skip
        upgraded = CliRunner().invoke(main, ["--db", url, "db", "upgrade"])
        assert upgraded.exit_code == 0 and "no signing key" in upgraded.stderr
        dry = CliRunner().invoke(
            main, ["--db", url, "retention", "--keep-months", "1", "--dry-run"]
        )
        assert dry.exit_code == 0 and "note: the logs of 2025-03 hold records" in dry.stderr
        refused = CliRunner().invoke(main, ["--db", url, "retention", "--keep-months", "1"])
        assert refused.exit_code == 2 and "nothing dropped: the logs of 2025-03" in refused.stderr
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(sat_record)).scalar() == 1
            assert conn.execute(select(func.count()).select_from(log_pending)).scalar() == 1
    finally:
        engine.dispose()


# --- signed retirements (audit 46d) -------------------------------------------------------


def test_retention_signs_each_months_retirement_and_log_verify_passes(pg_engine, pg_url, tmp_path):
    """And drops the months' leaves and tiles whole, their partitions, deleting no row:
    deleted, a month at 700 reads a second took over an hour under the records' lock, every
    ingest batch's leaves and every seal waiting for it (finding 52b 2)."""
    from sqlalchemy import event

    from servicetrail.domain.checkpoint import BY_RETENTION

    sealed_trail(pg_engine)
    with pg_engine.connect() as conn:
        kept = {c.origin: c for c in latest_checkpoints(conn)}
    said: list[str] = []
    with pg_engine.begin() as conn:
        event.listen(conn, "before_cursor_execute", lambda *a: said.append(a[2]))
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
    assert not [s for s in said if "DELETE FROM log_leaf" in s or "DELETE FROM log_node" in s]
    with pg_engine.connect() as conn:
        notes = dict(conn.execute(select(log_retirement.c.month, log_retirement.c.note)).all())
        left = set(conn.execute(text("SELECT relname FROM pg_class")).scalars())
    assert (
        not {f"{t}_sat_p{m[:4]}_{m[5:]}" for t in ("log_leaf", "log_node") for m in OLD_MONTHS}
        & left
    )
    assert sorted(notes) == list(OLD_MONTHS)
    origin = "servicetrail/sat/2025-01"
    assert notes["2025-01"].startswith(
        f"servicetrail retired\n{origin}\n3\n{b64(kept[origin].root)}\n{BY_RETENTION}\n\n"
    )
    kept_notes = kept_of(pg_engine, [c.note for c in kept.values()])
    verified = audit(pg_engine, "servicetrail/sat", kept=kept_notes)
    assert (verified.findings, verified.notes) == ([], [])  # removed by retention: the rule
    # a store upgraded with retirements signed before they said how (62d): not a guess; a
    # count and the span of months, not every origin on one line (63d)
    for month in ("2025-01", "2025-03"):
        at = f"servicetrail/sat/{month}"
        signed_then = store_key(pg_engine).retirement(at, 3, kept[at].root)
        intrude(
            pg_engine,
            (
                "UPDATE log_retirement SET note = :n WHERE month = :m",
                {"n": signed_then, "m": month},
            ),
        )
    verified = audit(pg_engine, "servicetrail/sat", kept=kept_notes)
    assert verified.findings == [] and verified.notes == [
        "the signed retirements of 2 log(s), of 2025-01 to 2025-03, do not say whether "
        "retention removed their records or found them dropped by hand (signed before "
        "servicetrail recorded it; `servicetrail log retirements` lists them)"
    ]
    # which `log retirements` lists, a line a log (there was no list: 63d); a junk row beside
    # a signed one does not hide it, and a forged one alone is shown unverified
    forged = notes["2025-02"].replace("/2025-02\n", "/2024-12\n")
    intrude(
        pg_engine,
        *(
            (
                "INSERT INTO log_retirement (origin, family, month, note, created_at) "
                "VALUES (:o, 'sat', :m, :n, now())",
                {"o": o, "m": m, "n": n},
            )
            for o, m, n in (
                ("servicetrail/sat/2025-02", "2025-02", "junk"),
                ("x", "2024-12", forged),
            )
        ),
    )
    listed = Cli(pg_url, tmp_path)("log", "retirements")
    assert listed.exit_code == 0 and listed.stderr == "4 retired log(s)\n", listed.output
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["month"], r["how"], r["size"], r["verified"]) for r in lines] == [
        ("2025-03", "not_recorded", 3, True),
        ("2025-02", "retention", 3, True),
        ("2025-01", "not_recorded", 3, True),
        ("2024-12", "retention", 3, False),
    ]
    assert lines[2]["origin"] == origin and lines[2]["root"] == b64(kept[origin].root)
    assert lines[3]["origin"] == "servicetrail/sat/2024-12"  # its note's, not the column's
    assert lines[0]["retired_at"].endswith("Z")


def test_a_forged_or_edited_retirement_retires_nothing(pg_engine):
    """Signed by a key of the intruder's own (listed among the store's keys), or by the
    store's key over another size or root, or a true one edited: each month is named."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from servicetrail.domain.checkpoint import retirement_body

    sealed_trail(pg_engine)
    with pg_engine.begin() as conn:
        drop_older_than(conn, keep_months=0, signer=store_key(pg_engine))
        last = {c.month: c for c in latest_checkpoints(conn)}
        notes = dict(
            conn.execute(select(log_retirement.c.month, log_retirement.c.note)).tuples().all()
        )
    origin = "servicetrail/sat/{}".format
    rogue_note, rogue = rfc9162.signed_note(
        Ed25519PrivateKey.generate(),
        "servicetrail/sat",
        retirement_body(origin("2025-01"), 3, last["2025-01"].root),
    )
    store = store_key(pg_engine)
    other_size = store.retirement(origin("2025-02"), 2, last["2025-02"].root)
    edited = notes["2025-03"].replace(f"{origin('2025-03')}\n3\n", f"{origin('2025-03')}\n4\n")
    intrude(
        pg_engine,
        ("INSERT INTO log_verifier_key VALUES (:k, :at)", {"k": rogue, "at": "2020-01-01"}),
        *(
            ("UPDATE log_retirement SET note = :n WHERE month = :m", {"n": note, "m": month})
            for month, note in (("2025-01", rogue_note), ("2025-02", other_size))
        ),
        ("UPDATE log_retirement SET note = :n WHERE month = '2025-03'", {"n": edited}),
    )
    trusted = {store.verifier_key}
    assert audit(pg_engine, "servicetrail/sat", trusted).findings == [
        unsigned(month) for month in OLD_MONTHS
    ]


def test_retention_without_the_key_drops_nothing_even_of_sealed_months(
    pg_engine, pg_url, tmp_path, monkeypatch, use_settings
):
    """It could not sign the months' retirements, and unsigned they are an intruder's drop
    to `log verify`: refused, naming the key it looked for, and no key made."""
    import os

    monkeypatch.chdir(tmp_path)
    sealed_trail(pg_engine)
    cli = Cli(pg_url, tmp_path)
    stores_key = os.environ["SERVICETRAIL_SIGNING_KEY"]
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "elsewhere.key")
    refused = cli("retention", "--keep-months", "1")
    assert refused.exit_code == 2, refused.output
    said = " ".join(refused.stderr.split())
    assert f"no signing key at {tmp_path / 'elsewhere.key'}" in said
    assert "SERVICETRAIL_SIGNING_KEY" in said and "nothing dropped" in said
    assert "2025-01, 2025-02, 2025-03" in said
    assert not (tmp_path / "elsewhere.key").exists()
    with pg_engine.connect() as conn:
        assert (2025, 1) in existing_months(conn)
        assert conn.execute(select(func.count()).select_from(log_retirement)).scalar() == 0
    use_settings(SERVICETRAIL_SIGNING_KEY=stores_key)
    assert cli("retention", "--keep-months", "1").exit_code == 0
    verified = cli("log", "verify")
    assert verified.exit_code == 0 and verified.stdout == "", verified.output


@pytest.fixture
def retired_before_0022(pg_at_revision, tmp_path, monkeypatch):
    """A store at 0021 whose months before the current one a retention of then dropped (logs
    and partitions, no retirement), working in `tmp_path`: its URL and engine."""
    monkeypatch.chdir(tmp_path)
    url = pg_at_revision("0021")
    engine = store_at(url, parse_time("2025-01-01T00:00:00Z"))
    try:
        with todays_writers(engine):
            with engine.begin() as conn:
                append_records(conn, records_in(OLD_MONTHS))
            seal_store(engine)
        wiped_as_retention_wipes(engine)
        yield url, engine
    finally:
        engine.dispose()


def test_db_upgrade_signs_the_retirements_of_months_dropped_before_only_those_named(
    retired_before_0022, tmp_path, monkeypatch
):
    """A store whose retention ran before 0022 has months dropped with no retirement: 0022
    lists them, and `db upgrade` says what `log verify` will report until the operator names
    them with `--sign-retirements`, run with the key. No upgrade signs them unasked, the one
    that applies 0022 included: the list and the revision are anyone's to write (audits 46j,
    46l: an intruder wiped months, listed them, or set the revision back to 0021, and the
    operator's next upgrade with the key signed them)."""
    import os

    cli = Cli(retired_before_0022[0], tmp_path)
    upgraded = cli("db", "upgrade")  # with the key at hand, applying 0022
    assert upgraded.exit_code == 0, upgraded.output
    said = " ".join(upgraded.stderr.split())
    assert "reports the 3 month(s) listed as dropped" in said
    assert "(2025-01, 2025-02, 2025-03)" in said and "--sign-retirements MONTHS" in said
    assert "signed the" not in said
    found = cli("log", "verify")
    assert found.exit_code == 1
    assert found.stdout.splitlines() == [unsigned(month) for month in OLD_MONTHS]
    assert cli("db", "upgrade", "--sign-retirements", "2025-13").exit_code == 2
    stores_key = os.environ["SERVICETRAIL_SIGNING_KEY"]
    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", str(tmp_path / "absent.key"))
    keyless = cli("db", "upgrade", "--sign-retirements", "2025-01")
    assert keyless.exit_code == 2 and "no signing key at" in keyless.stderr
    assert not (tmp_path / "absent.key").exists()
    monkeypatch.setenv("SERVICETRAIL_SIGNING_KEY", stores_key)
    one = cli("db", "upgrade", "--sign-retirements", "2025-02, 2024-12")
    assert one.exit_code == 0, one.output
    said = " ".join(one.stderr.split())
    assert "not signed, as not listed unsigned: 2024-12" in said
    assert "signed the retirement of 1 month(s): 2025-02" in said
    rest = cli("db", "upgrade", "--sign-retirements", "2025-01,2025-03")
    assert "signed the retirement of 2 month(s): 2025-01, 2025-03" in rest.stderr
    verified = cli("log", "verify")
    assert verified.exit_code == 0 and verified.stdout == "", verified.output
    again = cli("db", "upgrade")
    assert again.exit_code == 0 and "retirement" not in again.stderr


def test_a_junk_note_does_not_keep_a_named_month_from_being_signed(retired_before_0022, tmp_path):
    """Audit 46l: any note beside a listed month's row counted as its signature, so an
    intruder's junk one had `--sign-retirements` skip the month for ever ("not listed
    unsigned") while `log verify` reported it. Only a note the key at hand signed counts."""

    url, engine = retired_before_0022
    cli = Cli(url, tmp_path)
    assert cli("db", "upgrade").exit_code == 0
    intrude(
        engine,
        (
            "INSERT INTO log_retirement (origin, family, month, note, created_at) "
            "VALUES ('x', 'sat', '2025-02', 'x', now())",
            {},
        ),
    )
    signed = cli("db", "upgrade", "--sign-retirements", "2025-01,2025-02,2025-03")
    assert signed.exit_code == 0, signed.output
    said = " ".join(signed.stderr.split())
    assert "signed the retirement of 3 month(s): 2025-01, 2025-02, 2025-03" in said
    assert cli("log", "verify").exit_code == 0


def test_no_upgrade_signs_a_row_an_intruder_added(pg_engine, pg_url, tmp_path, monkeypatch):
    """Rows with no note added at the head (audit 46j 1b): the operator's upgrade with the key
    signs none."""

    monkeypatch.chdir(tmp_path)
    sealed_trail(pg_engine)
    with pg_engine.connect() as conn:
        kept = [c.note for c in latest_checkpoints(conn)]
    wiped_as_retention_wipes(pg_engine)
    intrude(
        pg_engine,
        *(
            (
                "INSERT INTO log_retirement (origin, family, month, note, created_at) "
                "VALUES ('', 'sat', :m, NULL, now())",
                {"m": month},
            )
            for month in OLD_MONTHS
        ),
    )
    unasked = Cli(pg_url, tmp_path)("db", "upgrade")
    assert unasked.exit_code == 0 and "signed the" not in unasked.stderr, unasked.output
    wanted = [unsigned(month) for month in OLD_MONTHS]
    assert audit(pg_engine, "servicetrail/sat", kept=kept_of(pg_engine, kept)).findings == wanted


def test_a_dry_run_without_the_key_says_a_run_would_drop_nothing(
    pg_engine, pg_url, tmp_path, monkeypatch, use_settings
):
    """Audit 46j: every log sealed, a dry run without the key said only what it would drop
    (exit 0), and the run itself then dropped nothing, having no key to sign the
    retirements."""

    monkeypatch.chdir(tmp_path)
    sealed_trail(pg_engine)
    cli = Cli(pg_url, tmp_path)
    use_settings(SERVICETRAIL_SIGNING_KEY=tmp_path / "elsewhere.key")
    dry = cli("retention", "--keep-months", "1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    said = " ".join(dry.stderr.split())
    assert "would drop 3 month(s)" in said
    assert (
        "note: a run drops none: it signs the retirement of each month it drops "
        f"(2025-01, 2025-02, 2025-03) with the store's key, and there is no signing key at "
        f"{tmp_path / 'elsewhere.key'}" in said
    )
    assert not (tmp_path / "elsewhere.key").exists()
    assert cli("retention", "--keep-months", "1").exit_code == 2
