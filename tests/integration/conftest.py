"""Shared pieces of the lab scenarios: prerequisites, and a handle on one lab.

Each test module boots its own lab (own name and subnet, so a developer's lab is
left alone) and tears it down even when a step fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "need root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "rsync"):
        if shutil.which(tool) is None:
            return f"need {tool}"
    return None


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    missing = _missing_prerequisite()
    if missing:
        if os.environ.get("MIRRORFLEET_REQUIRE_LAB"):
            pytest.fail(f"lab integration tests are required here but {missing}")
        pytest.skip(f"lab integration tests {missing}")


class LabRun:
    """Drive one lab through the real CLIs, as an operator would."""

    def __init__(self, name: str, subnet: str) -> None:
        self.name, self.subnet = name, subnet
        self.env = {**os.environ, "MIRRORFLEET_LAB": name}
        self.state: dict = {}

    def run(self, *argv: str, timeout: float = 600, env: dict | None = None, input_text: str = ""):
        return subprocess.run(
            list(argv),
            env=env or self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
        )

    def cli(self, *args: str, timeout: float = 600) -> dict | list:
        proc = self.run(str(BIN / "mirrorfleet"), *args, "--json", timeout=timeout)
        assert proc.returncode == 0, f"mirrorfleet {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout)

    def up(self, *args: str) -> dict:
        self.state = self.cli("lab", "up", "--subnet", self.subnet, *args)
        return self.state

    def down(self) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "mirrorfleet"), "lab", "down", timeout=120)

    def pyinfra(self, *args: str) -> dict:
        proc = self.run(str(BIN / "pyinfra"), "-y", "--json", "inventories/lab.py", *args)
        assert proc.returncode == 0, (
            f"pyinfra {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        )
        return json.loads(proc.stdout)

    def infra_suite(self, *extra: str) -> subprocess.CompletedProcess:
        """The operator's verification suite (tests/infra) against this lab."""
        return self.run(
            sys.executable,
            "-m",
            "pytest",
            "tests/infra",
            "--inventory",
            "inventories/lab.py",
            "-q",
            "-p",
            "no:cacheprovider",
            *extra,
            timeout=300,
        )

    def exec(self, host: str, *command: str, timeout: float = 120, input_text: str = ""):
        return self.run(
            str(BIN / "mirrorfleet"),
            "lab",
            "exec",
            host,
            "--",
            *command,
            timeout=timeout,
            input_text=input_text,
        )

    def check(self, host: str, *command: str, timeout: float = 120, input_text: str = "") -> str:
        proc = self.exec(host, *command, timeout=timeout, input_text=input_text)
        assert proc.returncode == 0, f"{host}: {' '.join(command)} failed:\n{proc.stderr}"
        return proc.stdout

    def address(self, host: str) -> str:
        return next(h["address"] for h in self.state["hosts"] if h["name"] == host)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
        """Seconds until predicate() held; fails the test at timeout."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                pytest.fail(f"condition not met within {timeout}s")
            time.sleep(interval)
        return time.monotonic() - start


@pytest.fixture(scope="module")
def make_lab() -> Iterator[Callable[[str, str], LabRun]]:
    labs: list[LabRun] = []

    def make(name: str, subnet: str) -> LabRun:
        labs.append(LabRun(name, subnet))
        return labs[-1]

    yield make
    for lab in labs:
        lab.down()


@pytest.fixture(scope="session")
def leftovers() -> Callable[[str], dict[str, list[str]]]:
    """lab name -> what it left behind: netns, links, mounts, nspawn processes."""
    return kernel_leftovers


def kernel_leftovers(lab: str) -> dict[str, list[str]]:
    """What a lab left behind, read straight from the kernel and /proc, not through
    the code under test."""
    prefix = f"mf{lab}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    )
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    procs = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "systemd-nspawn" in cmdline and f"/run/netns/{prefix}" in cmdline:
            procs.append(cmdline)
    return {
        "netns": [n for n in netns.split() if n.startswith(prefix)],
        "links": [link["ifname"] for link in links if link["ifname"].startswith(prefix)],
        "mounts": [m for m in mounts if f"/labs/{lab}/" in m],
        "processes": procs,
    }
