"""The HTTP API and the SSI web screen, over the same store queries as the CLI."""
