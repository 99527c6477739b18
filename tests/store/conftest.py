"""The store tests' own fixtures: stores at older revisions (tests/store/revisions.py)."""

from tests.store.revisions import db_at_revision, pg_at_revision, revision_templates

__all__ = ["db_at_revision", "pg_at_revision", "revision_templates"]
