"""The suite's helper modules explain a failed assert as its test modules do (tests/conftest.py
registers them for pytest's assertion rewriting)."""

from __future__ import annotations

import sys

from _pytest.assertion.rewrite import AssertionRewritingHook

from tests import live_server  # noqa: F401 - one helper imported here for certain
from tests.conftest import _helper_modules


def test_every_helper_module_imported_is_assertion_rewritten() -> None:
    imported = [name for name in _helper_modules() if name in sys.modules]
    assert "tests.live_server" in imported and "tests.personas" in imported
    plain = [
        n for n in imported if not isinstance(sys.modules[n].__loader__, AssertionRewritingHook)
    ]
    assert plain == []
