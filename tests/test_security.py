"""Passwords are hashed at argon2's production cost outside the tests' own process."""

from __future__ import annotations

import os
import subprocess
import sys

from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY

from tests.conftest import without_the_subprocess_site


def test_a_password_is_hashed_at_the_rfc_9106_cost_outside_the_tests() -> None:
    # the suite hashes cheaply in its own process and in those it starts (tests/conftest.py),
    # so ask a fresh interpreter started as a deployment starts one
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "from servicetrail.security import hash_password; "
            "print(hash_password('correct horse battery staple'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=without_the_subprocess_site(dict(os.environ)),
    ).stdout.strip()
    assert made.startswith("$argon2id$")
    assert extract_parameters(made) == RFC_9106_LOW_MEMORY
    assert PasswordHasher().verify(made, "correct horse battery staple")


def test_hashes_run_one_fewer_at_once_than_there_are_cores(monkeypatch):
    """Each argon2 hash takes 64 MiB while it runs: 40 sign-ins at once took 2.5 GB (audit of
    stalled clients, session 17); as many as the cores left none for the searches (audit
    27b). The count is taken at argon2's own entry points."""
    import os
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from servicetrail import security

    stored = security.hash_password("correct horse battery")
    running = peak = 0
    lock = threading.Lock()
    real = security._hasher

    class Counted:
        """argon2's hasher, counting the verifications running at once."""

        def verify(self, *args, **kwargs):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                time.sleep(0.05)  # long enough for every thread to arrive
                return real.verify(*args, **kwargs)
            finally:
                with lock:
                    running -= 1

    monkeypatch.setattr(security, "_hasher", Counted())
    with ThreadPoolExecutor(12) as pool:
        results = list(
            pool.map(lambda _: security.verify_password(stored, "correct horse battery"), range(12))
        )
    assert results == [True] * 12
    assert peak == min(12, max(1, (os.cpu_count() or 1) - 1))
