"""Inventory files load offline, carry the right data, and reject bad input early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorfleet.control.inventory import validate_groups
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.lab.lifecycle import plan_state
from mirrorfleet.lab.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ROOT / "inventories"
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


# load_inventory imports pyinfra_cli, which gevent-patches the whole process (ssl
# included, which then breaks boto3 in later tests): load it in a child process.
LOADER = """
import json, sys
from mirrorfleet.control.inventory import load_inventory
inventory = load_inventory(sys.argv[1])
print(json.dumps([
    {"name": h.name, "groups": sorted(h.groups), "data": h.data.dict()} for h in inventory
], default=str))
"""


def load_in_child(path: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(path)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise MirrorfleetError(proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout)


def groups_of(hosts: list[dict]) -> dict[str, list[str]]:
    return {
        name: sorted(h["name"] for h in hosts if name in h["groups"])
        for name in ("origin", "mirrors", "dns", "monitor")
    }


def data_of(hosts: list[dict], name: str) -> dict:
    return next(h["data"] for h in hosts if h["name"] == name)


def test_prod_inventory_loads_offline() -> None:
    inventory = load_in_child(INVENTORIES / "prod.py")
    assert groups_of(inventory) == {
        "origin": ["origin.example.org"],
        "mirrors": sorted(f"mirror-{s}.example.org" for s in ("fra1", "ams1", "nyc1")),
        "dns": ["ns1.example.org", "ns2.example.org"],
        "monitor": ["monitor.example.org"],
    }
    assert data_of(inventory, "ns1.example.org")["dns_role"] == "primary"
    # group_data/all.py reaches every host
    assert {h["data"]["service_user"] for h in inventory} == {"mirrorfleet"}


def test_prod_debug_inventory_cli_works_offline() -> None:
    proc = subprocess.run(
        [PYINFRA, str(INVENTORIES / "prod.py"), "debug-inventory"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ns2.example.org" in proc.stdout + proc.stderr


@pytest.fixture
def lab_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MIRRORFLEET_LAB_ROOT", str(tmp_path))
    monkeypatch.setenv("MIRRORFLEET_LAB", "tst")
    return tmp_path


def test_lab_inventory_reads_the_state_file(lab_root: Path) -> None:
    state = plan_state("tst", load_topology(mirrors=2), "/nonexistent/rootfs")
    state.save()
    inventory = load_in_child(INVENTORIES / "lab.py")
    assert groups_of(inventory)["mirrors"] == ["mirror1", "mirror2"]
    origin = data_of(inventory, "origin")
    assert origin["ssh_hostname"] == "10.231.0.10"
    assert origin["ssh_key"] == str(lab_root / "tst" / "id_ed25519")
    assert origin["ssh_known_hosts_file"] == str(lab_root / "tst" / "known_hosts")
    assert origin["ssh_strict_host_key_checking"] == "yes"
    assert origin["common_apt_update"] is False
    assert origin["mirror_zone"] == "mirrors.lab.test"
    assert data_of(inventory, "dns2")["dns_role"] == "secondary"


def test_lab_inventory_without_a_lab_says_so(lab_root: Path) -> None:
    with pytest.raises(MirrorfleetError, match="not up: run `mirrorfleet lab up` first"):
        load_in_child(INVENTORIES / "lab.py")


GOOD = {
    "origin": ["o.example.org"],
    "mirrors": ["m1.example.org"],
    "dns": [("ns1", {"dns_role": "primary"}), ("ns2", {"dns_role": "secondary"})],
}


def test_good_groups_pass() -> None:
    validate_groups(GOOD)
    validate_groups({**GOOD, "mirrors": ["m1", ("m2", {"mirror_upstream": "m1"})]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mirrors": ["m1", "m1"]}, "listed twice"),
        ({"mirrors": ["bad_name"]}, "not a valid host name"),
        ({"mirrors": ["-x.example.org"]}, "not a valid host name"),
        ({"origin": ["o1", "o2"]}, "exactly one origin"),
        ({"dns": [("ns1", {})]}, "needs dns_role"),
        ({"dns": [("ns1", {"dns_role": "master"})]}, "needs dns_role"),
        (
            {"dns": [("a", {"dns_role": "primary"}), ("b", {"dns_role": "primary"})]},
            "exactly one dns_role='primary'",
        ),
        (
            {"origin": [("o", {"x": 1})], "mirrors": [("o", {"x": 2})]},
            "different data in different groups",
        ),
        ({"mirrors": [("m1", {"mirror_upstream": "m9"})]}, "not another mirror"),
        ({"mirrors": [("m1", {"mirror_upstream": "m1"})]}, "not another mirror"),
        (
            {"mirrors": [("a", {"mirror_upstream": "b"}), ("b", {"mirror_upstream": "a"})]},
            "forms a loop",
        ),
        (
            {"dns": [("ns1", {"dns_role": "primary", "dns_address": "ns1.example.org"})]},
            "not an IPv4 address",
        ),
        ({"mirrors": [("m1", {"mirror_region": "EU West"})]}, "not a DNS label"),
    ],
)
def test_bad_groups_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        validate_groups({**GOOD, **change})


def test_bad_inventory_fails_before_any_connection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from mirrorfleet.control.inventory import module_groups, validate_groups\n"
        "mirrors = ['m1.example.invalid', 'm1.example.invalid']\n"
        "validate_groups(module_groups(globals()))\n"
    )
    proc = subprocess.run(
        [PYINFRA, "-y", str(bad), "exec", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "listed twice" in output
    assert "Connecting" not in output and "Connected" not in output
