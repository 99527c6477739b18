"""servicetrail: the DCC Service Audit Trail with SEC MP141 (Option B) visibility."""

__version__ = "0.1.0"
