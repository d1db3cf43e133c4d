"""The Vagrant route (Vagrantfile, inventories/vagrant.py) builds the lab's default topology.

The Vagrantfile checks run the real `vagrant` (no provider needed, no VM started) and
skip when it is absent. The inventory checks run `pyinfra --json <inventory>
debug-inventory` with a stand-in `vagrant` on PATH that reports every VM as running.
"""

from __future__ import annotations

import ipaddress
import json
import os
import runpy
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.lab.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "vagrant.py"
VAGRANT_SUBNET = ipaddress.IPv4Network("192.168.56.0/24")

# MIRRORFLEET_MIRRORS values; None leaves it unset (the default, 3 mirrors).
MIRROR_COUNTS = pytest.mark.parametrize("mirrors", [None, 1, 5], ids=["default", "1", "5"])
BAD_MIRROR_COUNTS = pytest.mark.parametrize("value", ["0", "three"])

# Groups pyinfra adds on its own: every host, the inventory file's name, the connector.
PYINFRA_GROUPS = {"all", "vagrant", "@vagrant"}


def _offset(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> int:
    assert address in subnet, f"{address} is outside {subnet}"
    return int(address) - int(subnet.network_address)


# What inventories/vagrant.py adds to the lab's host data: the VMs have no ACME CA;
# pyinfra logs in as `vagrant`, so it works through sudo; host keys as `vagrant ssh`.
VAGRANT_DATA = {
    "tls": "off",
    "_sudo": True,
    "ssh_known_hosts_file": "/dev/null",
    "ssh_strict_host_key_checking": "off",
}


def _fleet(topology: Topology) -> list:
    """The lab's hosts less its ACME CA (a lab host outside the fleet, last in the
    topology), which the Vagrant fleet does not run."""
    return [h for h in topology.hosts if "acme" not in h.groups]


def _lab_table(topology: Topology) -> list[tuple[str, list[str], int, dict]]:
    return [
        (h.name, list(h.groups), _offset(h.address, topology.subnet), dict(h.data))
        for h in _fleet(topology)
    ]


def _run_vagrant(tmp_path: Path, *args: str, env: dict[str, str | None]):
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant not installed: apt-get install vagrant")
    full_env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check over the network
        "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant"),  # keep the checkout clean
    }
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [vagrant, *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _mirrors_env(mirrors: int | None) -> dict[str, str | None]:
    return {"MIRRORFLEET_MIRRORS": None if mirrors is None else str(mirrors)}


def test_vagrantfile_validates(tmp_path):
    result = _run_vagrant(tmp_path, "validate", "-p", env=_mirrors_env(None))
    assert result.returncode == 0, result.stdout + result.stderr


@MIRROR_COUNTS
def test_vagrantfile_matches_lab_topology(tmp_path, mirrors):
    dump = tmp_path / "hosts.json"
    env = {**_mirrors_env(mirrors), "MIRRORFLEET_VAGRANT_DUMP": str(dump)}
    result = _run_vagrant(tmp_path, "validate", "-p", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    table = json.loads(dump.read_text())

    vagrant_table = [
        (h["name"], h["groups"], _offset(ipaddress.IPv4Address(h["ip"]), VAGRANT_SUBNET), h["data"])
        for h in table["hosts"]
    ]
    assert vagrant_table == _lab_table(load_topology(mirrors=mirrors))
    # The machines Vagrant actually defined, in order, are the table's hosts.
    assert table["machines"] == [h["name"] for h in table["hosts"]]


@BAD_MIRROR_COUNTS
def test_vagrantfile_rejects_bad_mirror_count(tmp_path, value):
    result = _run_vagrant(tmp_path, "validate", "-p", env={"MIRRORFLEET_MIRRORS": value})
    assert result.returncode != 0
    assert "MIRRORFLEET_MIRRORS must be a whole number" in result.stdout + result.stderr


@pytest.fixture
def fake_vagrant(tmp_path) -> Path:
    """A directory holding a `vagrant` that reports every lab VM (up to 9 mirrors) running."""
    names = [h.name for h in load_topology(mirrors=9).hosts]
    status = "".join(f"1,{name},state,running\\n" for name in names)
    script = tmp_path / "bin" / "vagrant"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = status ]; then printf "{status}"; exit 0; fi\n'
        '[ "$1" = ssh-config ] || exit 1\n'
        'printf "Host %s\\n  HostName 127.0.0.1\\n  User vagrant\\n  Port 2222\\n\\n" "$2"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script.parent


@MIRROR_COUNTS
def test_inventory_matches_lab_topology(fake_vagrant, mirrors):
    # The pyinfra CLI in a child process: importing pyinfra_cli here would gevent-patch
    # the whole test session.
    env = {**os.environ, "PATH": f"{fake_vagrant}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MIRRORFLEET_MIRRORS", None)
    if mirrors is not None:
        env["MIRRORFLEET_MIRRORS"] = str(mirrors)
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "--json", str(INVENTORY), "debug-inventory"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = json.loads(result.stdout)

    lab = load_topology(mirrors=mirrors)
    # Host data as pyinfra resolved it also holds group_data/ and connector keys.
    lab_keys = {key for host in lab.hosts for key in host.data} | set(VAGRANT_DATA)
    inventory_table = [
        (
            host["name"],
            list(dict.fromkeys(g for g in host["groups"] if g not in PYINFRA_GROUPS)),
            {k: v for k, v in host["data"].items() if k in lab_keys},
        )
        for host in hosts
    ]
    expected = [
        (f"@vagrant/{h.name}", list(h.groups), {**h.data, **VAGRANT_DATA}) for h in _fleet(lab)
    ]
    assert inventory_table == expected
    # Every host is reached with the SSH settings the @vagrant connector got from vagrant.
    ssh = {(h["data"]["ssh_hostname"], h["data"]["ssh_user"], h["data"]["ssh_port"]) for h in hosts}
    assert ssh == {("127.0.0.1", "vagrant", 2222)}


@MIRROR_COUNTS
def test_inventory_host_data_is_the_labs(monkeypatch, mirrors):
    """Exactly the lab's host data (and plain HTTP), in the inventory module itself."""
    monkeypatch.delenv("MIRRORFLEET_MIRRORS", raising=False)
    if mirrors is not None:
        monkeypatch.setenv("MIRRORFLEET_MIRRORS", str(mirrors))
    module = runpy.run_path(str(INVENTORY))

    groups = {
        name: [entry if isinstance(entry, tuple) else (entry, {}) for entry in module[name]]
        for name in module
        if not name.startswith("_") and isinstance(module[name], list | tuple)
    }
    lab = load_topology(mirrors=mirrors)
    expected = {
        group: [(f"@vagrant/{name}", {**lab.host(name).data, **VAGRANT_DATA}) for name in names]
        for group, names in lab.groups.items()
        if group != "acme"
    }
    assert groups == expected


@BAD_MIRROR_COUNTS
def test_inventory_rejects_bad_mirror_count(monkeypatch, value):
    monkeypatch.setenv("MIRRORFLEET_MIRRORS", value)
    with pytest.raises(MirrorfleetError, match="MIRRORFLEET_MIRRORS must be a whole number"):
        runpy.run_path(str(INVENTORY))


def test_verify_reaches_vagrant_hosts_by_their_host_part() -> None:
    """`mirrorfleet verify inventories/vagrant.py`: testinfra parses `ssh://@vagrant/dns1`
    as host "vagrant", so the checks name each host by its host part, in the
    ssh_config and in testinfra's host list alike."""
    from types import SimpleNamespace

    from mirrorfleet.control.inventory import ssh_config_for

    hosts = [
        SimpleNamespace(name="@vagrant/dns1", data={"ssh_hostname": "192.168.121.5"}),
        SimpleNamespace(name="origin", data={}),
    ]
    config = ssh_config_for(hosts)  # type: ignore[arg-type]
    assert "Host dns1\n    HostName 192.168.121.5\n" in config
    assert "Host origin\n    HostName origin\n" in config
    assert "@vagrant" not in config


def test_dns_checks_name_vagrant_hosts_as_the_roles_do() -> None:
    """The dns checks compare the zone with the inventory: `@vagrant/mirror1` is the
    zone's `mirror1`, as roles/dns names it, not `vagrant/mirror1`."""
    from types import SimpleNamespace

    from mirrorfleet.checks.test_dns import in_zone_addresses, labels

    groups = {
        "origin": [SimpleNamespace(name="@vagrant/origin", data={"ssh_hostname": "192.0.2.10"})],
        "mirrors": [
            SimpleNamespace(name="@vagrant/mirror1", data={"ssh_hostname": "192.0.2.14"}),
            SimpleNamespace(name="m2", data={"public_name": "eu.example.net."}),
        ],
    }
    inventory = SimpleNamespace(get_group=lambda group, default: groups.get(group, default))
    assert labels(inventory) == {"mirror1", "eu"}
    assert in_zone_addresses(inventory, "mirrors.example.org") == {
        "origin.mirrors.example.org": "192.0.2.10",
        "mirror1.mirrors.example.org": "192.0.2.14",
    }
