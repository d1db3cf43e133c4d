"""Fixtures for the lab scenarios; the harness itself is tests/labkit.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from labkit import LabRun, kernel_leftovers


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
