"""The lab end to end, on real hosts: up -> pyinfra deploy over SSH -> no-change
rerun -> testinfra -> down with nothing left behind.

Needs root, systemd-nspawn and debootstrap (.ci/run installs them). The lab is
torn down even when a step fails. Steps run in file order and share one lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import testinfra

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAB = "ci"  # its own name and subnet, so a developer's lab is left alone
SUBNET = "10.232.0.0/24"
HOSTS = ["origin", "dns1", "dns2", "monitor", "mirror1", "mirror2"]

pytestmark = pytest.mark.lab


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ip"):
        if not any((Path(p) / tool).exists() for p in os.environ["PATH"].split(":")):
            return f"needs {tool}"
    return None


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    missing = _missing_prerequisite()
    if missing:
        if os.environ.get("MIRRORFLEET_REQUIRE_LAB"):
            pytest.fail(f"lab integration tests are required here but {missing}")
        pytest.skip(f"lab integration tests {missing}")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return {**os.environ, "MIRRORFLEET_LAB": LAB}


def run(env: dict[str, str], *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(argv), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def mirrorfleet(env: dict[str, str], *args: str, timeout: float = 600) -> dict | list:
    proc = run(env, str(BIN / "mirrorfleet"), *args, "--json", timeout=timeout)
    assert proc.returncode == 0, f"mirrorfleet {' '.join(args)} failed:\n{proc.stderr}"
    return json.loads(proc.stdout)


def pyinfra(env: dict[str, str], *args: str) -> dict:
    proc = run(env, str(BIN / "pyinfra"), "-y", "--json", "inventories/lab.py", *args)
    assert proc.returncode == 0, f"pyinfra {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lab(env: dict[str, str]) -> Iterator[dict]:
    try:
        yield mirrorfleet(env, "lab", "up", "--mirrors", "2", "--subnet", SUBNET)
    finally:
        run(env, str(BIN / "mirrorfleet"), "lab", "down", timeout=120)


def test_every_host_boots_to_running(lab: dict) -> None:
    assert [h["name"] for h in lab["hosts"]] == HOSTS
    assert {h["name"]: h["system_state"] for h in lab["hosts"]} == dict.fromkeys(HOSTS, "running")
    assert [h["address"] for h in lab["hosts"]] == [f"10.232.0.{10 + i}" for i in range(6)]


def test_up_again_changes_nothing(lab: dict, env: dict[str, str]) -> None:
    again = mirrorfleet(env, "lab", "up", "--mirrors", "2", "--subnet", SUBNET)
    assert {h["name"]: h["pid"] for h in again["hosts"]} == {
        h["name"]: h["pid"] for h in lab["hosts"]
    }


def test_up_with_another_topology_is_refused(lab: dict, env: dict[str, str]) -> None:
    proc = run(env, str(BIN / "mirrorfleet"), "lab", "up", "--mirrors", "3", "--subnet", SUBNET)
    assert proc.returncode == 1
    assert "already up with another topology" in proc.stderr


def test_overlapping_subnet_is_refused_before_anything_is_made(
    lab: dict, env: dict[str, str]
) -> None:
    other = {**env, "MIRRORFLEET_LAB": "ci2"}
    proc = run(other, str(BIN / "mirrorfleet"), "lab", "up", "--subnet", "10.232.0.0/25")
    assert proc.returncode == 1
    assert "overlaps 10.232.0.0/24 on mfci-br" in proc.stderr
    assert not [n for n in run(env, "ip", "netns", "list").stdout.split() if "mfci2" in n]
    run(other, str(BIN / "mirrorfleet"), "lab", "down")


def test_unknown_host_names_the_known_ones(lab: dict, env: dict[str, str]) -> None:
    proc = run(env, str(BIN / "mirrorfleet"), "lab", "exec", "mirror9", "--", "true")
    assert proc.returncode == 1
    assert "unknown lab host 'mirror9'" in proc.stderr and "mirror2" in proc.stderr


@pytest.mark.parametrize("host", HOSTS)
def test_host_identity_is_unique(lab: dict, host: str, env: dict[str, str]) -> None:
    """Each overlay got its own hostname, machine-id and host key."""
    ids = {}
    for name in (host, "origin" if host != "origin" else "mirror1"):
        proc = run(
            env,
            str(BIN / "mirrorfleet"),
            "lab",
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
        )
        assert proc.returncode == 0, proc.stderr
        ids[name] = proc.stdout.splitlines()
    (this, other) = ids.values()
    assert this[0] == host
    assert this[1] != other[1]
    assert this[2] != other[2]


def test_deploy_common_over_ssh(lab: dict, env: dict[str, str]) -> None:
    result = pyinfra(env, "deploy.py")
    ops = result["results"]["operations"]
    assert ops, "the deploy ran no operations"
    assert not [op["name"] for op in ops if op["error"]]
    changed = {op["name"] for op in ops if op["success"]}
    assert "mirrorfleet common | Harden sshd" in changed


def test_rerun_reports_zero_changes(lab: dict, env: dict[str, str]) -> None:
    ops = pyinfra(env, "deploy.py")["results"]["operations"]
    assert {op["name"]: op["success"] for op in ops if op["success"]} == {}
    assert all(len(op["no_change"]) == len(HOSTS) for op in ops)


@pytest.mark.parametrize("name", HOSTS)
def test_testinfra_sees_sshd_and_hostname(lab: dict, name: str) -> None:
    ssh_config = Path(lab["ssh_config"])
    # openssh with the lab's pinned host keys (paramiko would accept any key)
    host = testinfra.get_host(f"ssh://{name}", ssh_config=str(ssh_config), controlpersist=0)
    assert host.check_output("hostname") == name
    assert host.service("ssh").is_running
    assert host.file("/etc/ssh/sshd_config.d/50-mirrorfleet.conf").contains(
        "^PasswordAuthentication no"
    )


def infra_suite(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return run(
        env,
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


def test_infra_suite_passes_on_the_lab(lab: dict, env: dict[str, str]) -> None:
    proc = infra_suite(env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_infra_suite_catches_a_broken_host(lab: dict, env: dict[str, str]) -> None:
    """A test of the tests: loosen one host's config dir and the suite must say so."""
    broken = run(
        env,
        str(BIN / "mirrorfleet"),
        "lab",
        "exec",
        "mirror2",
        "--",
        "chmod",
        "0777",
        "/etc/mirrorfleet",
    )
    assert broken.returncode == 0, broken.stderr
    try:
        proc = infra_suite(env)
        assert proc.returncode == 1
        assert (
            "FAILED tests/infra/test_common.py::test_config_dir_is_closed_to_others[ssh://mirror2]"
            in (proc.stdout)
        )
        assert proc.stdout.count("FAILED") == 1
    finally:
        pyinfra(env, "deploy.py")  # the role puts it back
    assert infra_suite(env, "-k", "config_dir").returncode == 0


def test_status_reports_every_host(lab: dict, env: dict[str, str]) -> None:
    rows = mirrorfleet(env, "lab", "status")
    assert {r["name"]: r["state"] for r in rows} == dict.fromkeys(HOSTS, "running")


def _leftovers() -> dict[str, list[str]]:
    """Read straight from the kernel and /proc, not through the code under test."""
    prefix = f"mf{LAB}-"
    netns = run({}, "ip", "netns", "list").stdout.split()
    links = json.loads(run({}, "ip", "-j", "link", "show").stdout)
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
        "netns": [n for n in netns if n.startswith(prefix)],
        "links": [link["ifname"] for link in links if link["ifname"].startswith(prefix)],
        "mounts": [m for m in mounts if f"/labs/{LAB}/" in m],
        "processes": procs,
    }


def test_down_leaves_nothing_behind(lab: dict, env: dict[str, str]) -> None:
    assert any(_leftovers().values()), "the lab should be visible before down"
    result = mirrorfleet(env, "lab", "down", timeout=120)
    assert len(result["found"]["processes"]) == len(HOSTS)
    assert _leftovers() == {"netns": [], "links": [], "mounts": [], "processes": []}
    assert not Path(lab["ssh_config"]).parent.exists()


def test_down_cleans_up_after_a_crash_without_state(env: dict[str, str]) -> None:
    """A killed `up` may leave no usable state file: `down` finds the lab by name."""
    state = mirrorfleet(env, "lab", "up", "--mirrors", "1", "--subnet", SUBNET)
    Path(state["ssh_config"]).with_name("state.json").write_text("{ truncated")
    proc = run(env, str(BIN / "mirrorfleet"), "lab", "status")
    assert proc.returncode == 1 and "unreadable" in proc.stderr
    result = mirrorfleet(env, "lab", "down", timeout=120)
    assert len(result["found"]["processes"]) == 5
    assert _leftovers() == {"netns": [], "links": [], "mounts": [], "processes": []}
