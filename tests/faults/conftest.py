"""Lab scenarios need root, systemd-nspawn and debootstrap; see tests/labkit.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import require_lab


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    require_lab()


@pytest.fixture(scope="session")
def report() -> Iterator[dict[str, dict]]:
    """What each fault showed, written to MIRRORFLEET_FAULT_REPORT (JSON) at the end
    of the session; docs/RELIABILITY.md is filled from it."""
    observed: dict[str, dict] = {}
    yield observed
    if path := os.environ.get("MIRRORFLEET_FAULT_REPORT"):
        Path(path).write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
