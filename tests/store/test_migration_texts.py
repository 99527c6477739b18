"""A migration, once committed, is never edited: a store it built keeps what its first text
did. 0004, 0006 and 0019 were edited after they were committed, and stores built by their first
texts failed after upgrading (an ingest refused on a column the new text no longer made, an
owner left in the shared reader role): 0023 and 0024 had to mend them (audit 48d). A change
belongs in a new migration. Comments and docstrings may change: each text is pinned by its
code alone (the syntax tree without docstrings)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import servicetrail.store as store

VERSIONS = Path(store.__file__).parent / "migrations" / "versions"

# A new migration is added here once it is committed; an edited one fails until its edit is
# undone and made a migration of its own.
PINNED = {
    "0001_initial.py": "4f0aae02105bb1c3",
    "0002_web_sessions.py": "f06e5b0e213286b6",
    "0003_device_user_index.py": "6c4b1c88de4fb3f0",
    "0004_duis_fields_identity.py": "8f6a22b8e97288d3",
    "0005_account_security.py": "1083c04b4a5bddf2",
    "0006_visibility_index.py": "f701b3d64c1dfc6e",
    "0007_visibility_by_record.py": "171b78e7da39486b",
    "0008_watches.py": "caf979e8fbf0354b",
    "0009_merkle_logs.py": "969dba8ab5438458",
    "0010_access_log.py": "c4ae72d8e4f6d977",
    "0011_outbox_by_watch.py": "02ae09911e5faf0f",
    "0012_log_statistics.py": "d85178c62f016db9",
    "0013_token_ids_never_reused.py": "c47d4dc1f4a11f01",
    "0014_visibility_by_record_first.py": "571c855e74e23654",
    "0015_watches_under_row_security.py": "e11f37d879bb4486",
    "0016_registry_intervals_under_row_security.py": "d31a84671a9d898c",
    "0017_indexes_that_read_no_hidden_rows.py": "d8b9a7375a34f863",
    "0018_bare_file_requests.py": "2f0c346fcb5dce5f",
    "0019_a_reader_role_per_store.py": "82df595023988aa7",
    "0020_watch_events_keyed_by_lock.py": "e8de297667cc46e7",
    "0021_webhooks_gone.py": "d4019f988e919cd0",
    "0022_signed_retirements.py": "e156522a3a9a7c5c",
    "0023_visibility_index_as_first_built.py": "109a1074e51b1281",
    "0024_owner_out_of_the_shared_role.py": "9b622b8c0a9de5fe",
    "0025_records_apart_from_their_request_id.py": "96e4eb932de5a9d7",
    "0026_everyones_access_by_time_for_the_auditor.py": "9ee12cf9f1fa12b4",
    "0027_access_log_retention.py": "0c18a2383b138816",
    # 0028's second text (session 57, as 0029's): its copy of the access log made ahead of the
    # upgrade's transaction, in batches committed. It leaves the tables, partitions, indexes
    # and rows its first text left (the two upgraded stores' pg_dump compared): the copy is
    # made as the first text's table was, its index by time made before the rows and renamed
    # to the first text's names, and a partition's indexes are named by the partition, which
    # keeps its name. No store needs mending
    # Its third (finding 57g 1, session 57): the copy compared with the old table hour by hour
    # in the migration's transaction, and made the old table's entries again where they
    # differ (an entry written behind the copy while it was paused was lost). Rows alone
    # change, and only where the second text lost or kept one wrongly; the schema is the same
    # (pg_dump --schema-only of two stores upgraded by the second and third texts compared).
    # No store needs mending: one upgraded by the second text with an entry lost has no trace
    # of it left to mend from
    # Its fourth (finding 57l, session 58): the copy ahead puts two triggers on the old table
    # that record the entries written behind it and the months retention deletes, and the
    # migration's transaction makes those again alone (a copy with no record is checked hour
    # by hour still), then drops the triggers, their function and the record. The tables,
    # partitions and rows it leaves are those of an upgrade in one go (the copy-ahead tests
    # compare the rows; pg_dump --schema-only of two stores compared); no store needs
    # mending. In the same session its copy ahead takes entries 10 minutes old, not an hour,
    # so that its transaction copies some 6 times fewer: the rows are the same
    # Its fifth (session 59): a copy ahead with no record behind it, which only the second and
    # third texts made (both on main for two hours of session 57, never shipped), is dropped
    # and the copy made whole in the migration's transaction, not compared hour by hour
    # (`_mend`, deleted). Safe for every store that can exist: one at 0028 or past never runs
    # it again; one at 0027 holds no copy, or a copy with its record (made by the fourth text's
    # copy ahead, or this one's, the same), and takes the path it took; the path changed is
    # that of a copy no shipped text made, and it leaves the rows and tables of an upgrade in
    # one go, as `alembic upgrade` alone leaves them
    "0028_access_log_by_month.py": "9975afa744544bb1",
    # 0029's second text (finding 53b 1, session 57): its copy of the leaves and tiles made
    # ahead of the upgrade's transaction, in batches committed. It leaves the tables and rows
    # its first text left (the two upgraded stores' pg_dump compared): no store needs mending
    "0029_logs_by_family_and_month.py": "ffdc0056154a0945",
    "0030_outbox_failed_by_watch.py": "a53e85ea97f6a8d7",
    # 0031's second text (session 65): its walk of every log its own, no longer imported from
    # merkle_log (all_log_sizes, which then moved to store.log_sizes): a migration must not
    # change when the product's code does. The same walk as merkle_log's on SQLite, and the
    # same logs listed on PostgreSQL as the first text's partition read listed (the upgrade
    # from 0030 of test_migrations, on both engines): no store needs mending
    "0031_logs_unsealed.py": "6d939adeee917cf3",
}


def code_digest(text: str) -> str:
    """The migration's code, without its comments and docstrings."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    # unparsed, not dumped: a dump names the syntax tree's fields, which Python versions add to
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def test_every_migration_keeps_the_code_it_was_committed_with() -> None:
    found = {path.name: code_digest(path.read_text()) for path in sorted(VERSIONS.glob("0*.py"))}
    assert found == PINNED


def test_the_pin_sees_a_change_of_code_and_not_of_words() -> None:
    text = '"""A migration."""\n\n# why\nrevision = "0001"\n\n\n'
    text += 'def upgrade():\n    """Up."""\n    pass\n'
    reworded = text.replace("A migration.", "Another word.").replace("# why", "# because")
    changed = text.replace('"0001"', '"0002"')
    assert code_digest(reworded) == code_digest(text) != code_digest(changed)
