"""Lab scenarios need root, systemd-nspawn and debootstrap; see tests/labkit.py. The
real clients (issue 16) are set up once for every module that uses them."""

from __future__ import annotations

import pyclients
import pytest
import wheelcache
from labkit import require_lab


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    require_lab()


@pytest.fixture(scope="session")
def wheels() -> wheelcache.WheelCache:
    """Real files, fetched once with `pip download` (tests/wheelcache.py)."""
    return wheelcache.ensure()


@pytest.fixture(scope="session")
def clients(
    wheels: wheelcache.WheelCache, tmp_path_factory: pytest.TempPathFactory
) -> pyclients.Clients:
    """Debian's pip, the latest pip and uv (tests/pyclients.py), offline."""
    made = pyclients.Clients(tmp_path_factory.mktemp("clients"), wheels)
    print(f"clients: {made.setup()}")
    return made
