"""Packaged pyinfra deploys, one per role (imported as `mirrorfleet_roles`)."""
