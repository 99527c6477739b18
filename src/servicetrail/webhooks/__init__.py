"""Outbound webhooks (SPEC section 6): where they may go, how they are signed, and the worker
that delivers the store's outbox."""
