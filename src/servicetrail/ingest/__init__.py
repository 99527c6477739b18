"""Readers of everything that comes in: registry CSVs, SAT JSON Lines and DUIS XML."""
