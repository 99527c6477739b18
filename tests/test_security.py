"""Passwords are hashed at argon2's production cost outside the tests' own process."""

from __future__ import annotations

import subprocess
import sys

from argon2 import PasswordHasher, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY


def test_a_password_is_hashed_at_the_rfc_9106_cost_outside_the_tests() -> None:
    # in-process the suite hashes cheaply (tests/conftest.py), so ask a fresh interpreter
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
    ).stdout.strip()
    assert made.startswith("$argon2id$")
    assert extract_parameters(made) == RFC_9106_LOW_MEMORY
    assert PasswordHasher().verify(made, "correct horse battery staple")
