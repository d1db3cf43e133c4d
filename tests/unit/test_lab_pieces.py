"""The lab's pure pieces: names, clash detection, template key, errors, CLI surface."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.lab import network, system, template
from mirrorfleet.lab.inventory import public_name
from mirrorfleet.lab.lifecycle import hosts_file, plan_state, resolv_conf
from mirrorfleet.lab.state import MAX_IFNAME, lab_name
from mirrorfleet.lab.topology import load_topology

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
SUBNET = ipaddress.IPv4Network("10.231.0.0/24")


@pytest.mark.parametrize("host", ["origin", "mirror1", "mirror123", "a-very-long-host-name"])
def test_veth_names_fit_the_kernel_limit(host: str) -> None:
    name = network.veth_name("mflab", host)
    assert len(name) <= MAX_IFNAME
    assert name.startswith("mflab-")


def test_long_veth_names_stay_distinct() -> None:
    names = {network.veth_name("mflab", f"long-mirror-name-{i}") for i in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize(
    ("routes", "clashes"),
    [
        ([{"dst": "default", "dev": "eth0"}], []),
        ([{"dst": "192.168.1.0/24", "dev": "eth0"}], []),
        ([{"dst": "10.231.0.0/24", "dev": "mflab-br"}], []),  # our own bridge
        ([{"dst": "10.0.0.0/8", "dev": "wg0"}], ["10.0.0.0/8 on wg0"]),
        ([{"dst": "10.231.0.128/25", "dev": "docker0"}], ["10.231.0.128/25 on docker0"]),
        ([{"dst": "10.231.0.7", "dev": "tun0"}], ["10.231.0.7 on tun0"]),
    ],
)
def test_subnet_clash_detection(routes: list[dict], clashes: list[str]) -> None:
    assert network.find_clashes(SUBNET, routes, "mflab-br") == clashes


def test_hosts_file_names_every_lab_host() -> None:
    state = plan_state("lab", load_topology(), "/t")
    lines = hosts_file(state).splitlines()
    assert "10.231.0.10\torigin" in lines
    assert "10.231.0.16\tmirror3" in lines
    assert lines[0] == "127.0.0.1\tlocalhost"
    # the lab has DNS hosts: fleet names resolve there; the ACME CA (outside the
    # fleet, as a public CA is) only here
    assert "10.231.0.17\tacme\tacme.mirrors.lab.test" in lines


@pytest.mark.parametrize("name", ["-", "Lab", "toolong", "1ab", "a-b"])
def test_bad_lab_names(name: str) -> None:
    with pytest.raises(MirrorfleetError, match="bad lab name"):
        lab_name(name)


def test_template_key_follows_the_package_list() -> None:
    base = template.template_key()
    assert base == template.template_key(tuple(reversed(template.PACKAGES)))  # order-free
    assert base != template.template_key((*template.PACKAGES, "htop"))
    assert base.startswith("bookworm-")


def test_debian_mirror_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRRORFLEET_DEBIAN_MIRROR", "http://mirror.invalid/debian")
    assert template.debian_mirror() == "http://mirror.invalid/debian"


def test_missing_tools_name_the_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MirrorfleetError) as err:
        system.require_tools()
    assert "apt-get install" in str(err.value)
    assert "debootstrap" in str(err.value) and "systemd-container" in str(err.value)


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    with pytest.raises(MirrorfleetError, match=r"needs root.*sudo"):
        system.require_root()


def test_failed_command_reports_its_last_error_line() -> None:
    with pytest.raises(MirrorfleetError, match=r"`ls /nonexistent-dir` failed \(2\).*No such"):
        system.run(["ls", "/nonexistent-dir"])


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MIRRORFLEET, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["lab", "--help"], ["lab", "up", "--help"]])
def test_help(args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout


def test_dry_run_plans_without_touching_the_machine(tmp_path: Path) -> None:
    proc = cli("lab", "up", "--dry-run", "--json", "--mirrors", "5", "--name", "zz")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    names = [h["name"] for h in plan["hosts"]]
    assert names[-6:] == [*(f"mirror{i}" for i in range(1, 6)), "acme"]
    assert plan["bridge"] == "mfzz-br"
    assert not Path("/run/netns/mfzz-origin").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab", "up", "--dry-run", "--subnet", "10.1.2.3/24"], "bad subnet"),
        (["lab", "up", "--dry-run", "--mirrors", "0"], "at least 1"),
        (["lab", "up", "--dry-run", "--topology", "/nonexistent.toml"], "does not exist"),
        (["lab", "exec", "nosuchhost", "--name", "zz", "--", "true"], "not up"),
        (["lab", "status", "--name", "zz"], "lab 'zz' is not up: run `mirrorfleet lab up`"),
        (["lab", "status", "--name", "zz", "--json"], "lab 'zz' is not up"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(args: list[str], message: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_of_a_lab_with_a_stopped_host_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are shown, then one line naming the host that is not running."""
    from click.testing import CliRunner

    from mirrorfleet.cli.lab import lab
    from mirrorfleet.lab import lifecycle

    rows = [
        {
            "name": "origin",
            "groups": ["origin"],
            "address": "10.9.0.10",
            "pid": 7,
            "state": "running",
        },
        {
            "name": "mirror1",
            "groups": ["mirrors"],
            "address": "10.9.0.14",
            "pid": None,
            "state": "stopped",
        },
    ]
    monkeypatch.setattr(lifecycle, "status", lambda name: rows)
    result = CliRunner().invoke(lab, ["status", "--name", "zz", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == rows
    assert str(result.exception) == "lab 'zz' is not up: mirror1 not running"
    monkeypatch.setattr(lifecycle, "status", lambda name: rows[:1])
    assert CliRunner().invoke(lab, ["status", "--name", "zz", "--json"]).exit_code == 0


def test_with_dns_hosts_public_names_resolve_through_them() -> None:
    """issue 17: the default lab has a primary and a secondary; every host asks them
    (the secondary first) and /etc/hosts keeps only the bare names."""
    state = plan_state("lab", load_topology(), "/t")
    dns = {h.data.get("dns_role"): h.address for h in state.hosts if "dns" in h.groups}
    resolver = resolv_conf(state)
    assert resolver is not None
    assert [line.split()[1] for line in resolver.splitlines() if line.startswith("nameserver")] == [
        dns["secondary"],
        dns["primary"],
    ]
    named = [line for line in hosts_file(state).splitlines() if "mirrors.lab.test" in line]
    assert named == [f"{state.host('acme').address}\tacme\tacme.mirrors.lab.test"]


def test_without_dns_hosts_public_names_are_in_etc_hosts() -> None:
    topology = load_topology(Path(__file__).parents[1] / "integration/fleet_topology.toml")
    state = plan_state("lab", topology, "/t")
    assert resolv_conf(state) is None
    assert f"{state.hosts[0].address}\torigin\t{public_name('origin')}" in hosts_file(state)
