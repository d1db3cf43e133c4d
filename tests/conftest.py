"""Fixtures for the lab scenarios; the harness itself is tests/labkit.py. And one for
every test: the client's memory of verified serials (client/memory.py) is the test's
own, since the tests' fleets start their serials again in the same zone names."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from labkit import LabRun, kernel_leftovers

from mirrorfleet.client.memory import STATE_ENV

# a module's fixtures run before any test's: they get a folder of the session's own
os.environ[STATE_ENV] = tempfile.mkdtemp(prefix="mirrorfleet-state-")
atexit.register(shutil.rmtree, os.environ[STATE_ENV], True)


@pytest.fixture(autouse=True)
def _own_verified_serials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))


@pytest.fixture(scope="module")
def make_lab() -> Iterator[Callable[[str, str], LabRun]]:
    """Each module boots its own lab (own name and subnet, so a developer's lab is
    left alone) and tears it down even when a step fails."""
    labs: list[LabRun] = []

    def make(name: str, subnet: str) -> LabRun:
        labs.append(LabRun(name, subnet))
        return labs[-1]

    yield make
    if os.environ.get("MIRRORFLEET_KEEP_LAB"):  # a developer rerunning one scenario
        return
    for lab in labs:
        lab.down()


@pytest.fixture(scope="session")
def leftovers() -> Callable[[str], dict[str, list[str]]]:
    """lab name -> what it left behind: netns, links, mounts, nspawn processes."""
    return kernel_leftovers
