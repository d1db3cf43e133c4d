#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and the lab integration scenario on real
# hosts. The lab tests must run here: missing root or tools fail them, not skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh vagrant
# real wheels for the client tests (issue 16), in /var/cache/mirrorfleet/wheels:
# fetched once with pip download, then used offline
.venv/bin/python tests/wheelcache.py
.venv/bin/ruff check .
.venv/bin/ruff format --check .
MIRRORFLEET_REQUIRE_LAB=1 .venv/bin/python -m pytest "$@"
