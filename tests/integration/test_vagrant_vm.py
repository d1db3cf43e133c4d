"""Issue 21, the part of the Vagrant route CI can afford: the box built from the lab
template (`mirrorfleet lab box`), one VM booted from the repository's Vagrantfile
with libvirt (TCG where KVM cannot run it), `pyinfra inventories/vagrant.py
deploy.py` on it over SSH as Vagrant gives it, the origin publishing, and `vagrant
destroy` leaving nothing behind. The whole route (origin, dns, mirror, pip, verify)
is tests/vagrant/test_vagrant_route.py, run by its own command (docs in README).
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from vagrantkit import Vagrant, require_tools, vms_up

from mirrorfleet.tree.keys import parse_public_key
from mirrorfleet.tree.stamp import STAMP_PATH, parse_stamp

ORIGIN = "192.168.56.10"  # the Vagrantfile's first host


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: this needs libvirt and vagrant instead."""
    require_tools()


@pytest.fixture(scope="module")
def vm() -> Iterator[Vagrant]:
    with vms_up("one-vm", ["origin"], "vagrant route, one VM") as vagrant:
        yield vagrant


def test_one_vm_boots_from_the_box_and_takes_the_deploy(vm: Vagrant) -> None:
    result = vm.pyinfra("deploy")
    changed = [op for op in result["results"]["operations"] if op["success"]]
    assert len(changed) > 20, changed  # a fresh VM: the origin role did its work
    assert not [op for op in result["results"]["operations"] if op["error"]]
    assert vm.ssh("origin", "systemctl is-active nginx mirrorfleet-heartbeat.timer").split() == [
        "active",
        "active",
    ]
    assert vm.system_state("origin") == "running"
    publish = "sudo runuser -u mirrorfleet -- mirrorfleet"
    vm.ssh("origin", f"{publish} demo-content /srv/mirror --projects 3")
    vm.ssh("origin", f"{publish} origin publish")
    with urllib.request.urlopen(f"http://{ORIGIN}/{STAMP_PATH}", timeout=30) as answer:
        key = parse_public_key((vm.secrets / "origin-signing.pub").read_text())
        stamp = parse_stamp(answer.read(), [key])
    assert stamp.serial == 1 and stamp.expires > time.time()
    assert "box" in vm.times and Path(vm.work / "up.log").exists()
