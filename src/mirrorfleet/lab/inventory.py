"""The running lab as pyinfra inventory groups (used by inventories/lab.py)."""

from __future__ import annotations

from typing import Any

from mirrorfleet.lab.state import LabState, require_state

# What every lab host's data says beyond its topology data.
LAB_HOST_DATA: dict[str, Any] = {
    "ssh_user": "root",
    "ssh_strict_host_key_checking": "yes",
    # Lab hosts have no internet; the template already holds every package.
    "common_apt_update": False,
    "lab": True,
    # The lab's own zone, served by its dns hosts, signed as production may be.
    "mirror_zone": "mirrors.lab.test",
    "dns_dnssec": True,
}

HostEntry = tuple[str, dict[str, Any]]


def public_name(host_name: str) -> str:
    """A lab host's public name: inside the lab's zone, as production names are real
    DNS names (where the lab has DNS hosts, they resolve through them)."""
    return f"{host_name}.{LAB_HOST_DATA['mirror_zone']}"


def lab_groups(state: LabState | None = None) -> dict[str, list[HostEntry]]:
    """Group name -> [(host name, host data)], straight from the lab's state file."""
    state = state or require_state()
    groups: dict[str, list[HostEntry]] = {}
    for host in state.hosts:
        data = {
            **LAB_HOST_DATA,
            "ssh_hostname": host.address,
            "ssh_key": str(state.key),
            "ssh_known_hosts_file": str(state.known_hosts),
            "secrets_dir": str(state.secrets_dir),
            "public_name": public_name(host.name),
            **host.data,
        }
        for group in host.groups:
            groups.setdefault(group, []).append((host.name, data))
    return groups
