"""The lab end to end, on real hosts: up -> pyinfra deploy over SSH -> no-change
rerun -> testinfra -> down with nothing left behind.

Needs root, systemd-nspawn and debootstrap (.ci/run installs them). The lab is
torn down even when a step fails. Steps run in file order and share one lab.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import testinfra
from labkit import changed_operations

BIN = Path(sys.executable).parent

LAB = "ci"
SUBNET = "10.232.0.0/24"
FLEET = ["origin", "dns1", "dns2", "monitor", "mirror1", "mirror2"]
HOSTS = [*FLEET, "acme"]  # and the lab's ACME CA, which no role deploys

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(LAB, SUBNET)
    lab.up("--mirrors", "2")
    return lab


def test_every_host_boots_to_running(lab) -> None:
    hosts = lab.state["hosts"]
    assert [h["name"] for h in hosts] == HOSTS
    assert {h["name"]: h["system_state"] for h in hosts} == dict.fromkeys(HOSTS, "running")
    assert [h["address"] for h in hosts] == [f"10.232.0.{10 + i}" for i in range(len(HOSTS))]


def test_up_again_changes_nothing(lab) -> None:
    pids = {h["name"]: h["pid"] for h in lab.state["hosts"]}
    again = lab.cli("lab", "up", "--mirrors", "2", "--subnet", SUBNET)
    assert {h["name"]: h["pid"] for h in again["hosts"]} == pids


def test_up_with_another_topology_is_refused(lab) -> None:
    proc = lab.run(str(BIN / "mirrorfleet"), "lab", "up", "--mirrors", "3", "--subnet", SUBNET)
    assert proc.returncode == 1
    assert "already up with another topology" in proc.stderr


def test_overlapping_subnet_is_refused_before_anything_is_made(lab) -> None:
    other = {**lab.env, "MIRRORFLEET_LAB": "ci2"}
    proc = lab.run(str(BIN / "mirrorfleet"), "lab", "up", "--subnet", "10.232.0.0/25", env=other)
    assert proc.returncode == 1
    assert "overlaps 10.232.0.0/24 on mfci-br" in proc.stderr
    assert not [n for n in lab.run("ip", "netns", "list").stdout.split() if "mfci2" in n]
    lab.run(str(BIN / "mirrorfleet"), "lab", "down", env=other)


def test_unknown_host_names_the_known_ones(lab) -> None:
    proc = lab.exec("mirror9", "true")
    assert proc.returncode == 1
    assert "unknown lab host 'mirror9'" in proc.stderr and "mirror2" in proc.stderr


IDENTITY = "hostname; cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


@pytest.mark.parametrize("host", HOSTS)
def test_host_identity_is_unique(lab, host: str) -> None:
    """Each overlay got its own hostname, machine-id and host key."""
    other = "origin" if host != "origin" else "mirror1"
    this = lab.check(host, "sh", "-c", IDENTITY).splitlines()
    that = lab.check(other, "sh", "-c", IDENTITY).splitlines()
    assert this[0] == host
    assert this[1] != that[1]
    assert this[2] != that[2]


def test_deploy_over_ssh(lab) -> None:
    ops = lab.pyinfra("deploy.py")["results"]["operations"]
    assert ops, "the deploy ran no operations"
    assert not [op["name"] for op in ops if op["error"]]
    changed = {op["name"] for op in ops if op["success"]}
    assert "mirrorfleet common | Harden sshd" in changed


def test_rerun_reports_zero_changes(lab) -> None:
    result = lab.pyinfra("deploy.py")
    assert result["results"]["operations"], "the rerun ran no operations"
    assert changed_operations(result) == []


@pytest.mark.parametrize("name", FLEET)
def test_testinfra_sees_sshd_and_hostname(lab, name: str) -> None:
    # openssh with the lab's pinned host keys (paramiko would accept any key)
    host = testinfra.get_host(f"ssh://{name}", ssh_config=lab.state["ssh_config"], controlpersist=0)
    assert host.check_output("hostname") == name
    assert host.service("ssh").is_running
    assert host.file("/etc/ssh/sshd_config.d/50-mirrorfleet.conf").contains(
        "^PasswordAuthentication no"
    )


def test_infra_suite_passes_on_the_lab(lab) -> None:
    proc = lab.infra_suite()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_infra_suite_catches_a_broken_host(lab) -> None:
    """A test of the tests: loosen one host's config dir and the suite must say so."""
    lab.check("mirror2", "chmod", "0777", "/etc/mirrorfleet")
    try:
        proc = lab.infra_suite()
        assert proc.returncode == 1
        check = "src/mirrorfleet/checks/test_common.py::test_config_dir_is_closed_to_others"
        assert f"FAILED {check}[ssh://mirror2]" in proc.stdout
        assert proc.stdout.count("FAILED") == 1
    finally:
        lab.pyinfra("deploy.py")  # the role puts it back
    assert lab.infra_suite("-k", "config_dir").returncode == 0


def test_status_reports_every_host(lab) -> None:
    rows = lab.cli("lab", "status")
    assert {r["name"]: r["state"] for r in rows} == dict.fromkeys(HOSTS, "running")


def test_down_leaves_nothing_behind(lab, leftovers) -> None:
    assert any(leftovers(LAB).values()), "the lab should be visible before down"
    result = lab.cli("lab", "down", timeout=120)
    assert len(result["found"]["processes"]) == len(HOSTS)
    assert not any(leftovers(LAB).values()), leftovers(LAB)
    assert not Path(lab.state["ssh_config"]).parent.exists()


def test_down_cleans_up_after_a_crash_without_state(lab, leftovers) -> None:
    """A killed `up` may leave no usable state file: `down` finds the lab by name."""
    state = lab.up("--mirrors", "1")
    Path(state["ssh_config"]).with_name("state.json").write_text("{ truncated")
    proc = lab.run(str(BIN / "mirrorfleet"), "lab", "status")
    assert proc.returncode == 1 and "unreadable" in proc.stderr
    result = lab.cli("lab", "down", timeout=120)
    assert len(result["found"]["processes"]) == 6  # four fixed, one mirror, the CA
    assert not any(leftovers(LAB).values()), leftovers(LAB)
