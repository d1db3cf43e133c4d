"""Lab scenarios need root, systemd-nspawn and debootstrap; see tests/labkit.py."""

from __future__ import annotations

import pytest
from labkit import require_lab


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    require_lab()
