"""Run first by every Python process the suite starts (tests/conftest.py puts this folder on
PYTHONPATH): see cheap_hashing."""

import cheap_hashing  # noqa: F401
