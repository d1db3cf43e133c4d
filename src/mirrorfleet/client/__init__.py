"""The client: find a fresh mirror with a few DNS lookups, and check it."""
