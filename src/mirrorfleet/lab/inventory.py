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
# The lab's ACME CA (mirrorfleet.lab.acme, which imports this module): its group, its
# directory's port, and the roots file it leaves in the lab's folder.
ACME_GROUP, ACME_PORT, ACME_ROOTS = "acme", 14000, "acme-roots.pem"


def public_name(host_name: str) -> str:
    """A lab host's public name: inside the lab's zone, as production names are real
    DNS names (where the lab has DNS hosts, they resolve through them)."""
    return f"{host_name}.{LAB_HOST_DATA['mirror_zone']}"


def acme_directory(host_name: str) -> str:
    """The lab's ACME CA's directory, by the CA host's public name."""
    return f"https://{public_name(host_name)}:{ACME_PORT}/dir"


def tls_data(state: LabState) -> dict[str, Any]:
    """HTTPS with certificates from the lab's ACME CA when the lab has one (an `acme`
    host: mirrorfleet.lab.acme), plain HTTP otherwise."""
    acme_hosts = [h for h in state.hosts if ACME_GROUP in h.groups]
    if not acme_hosts:
        return {"tls": "off"}
    return {
        "tls": "acme",
        "acme_directory": acme_directory(acme_hosts[0].name),
        "tls_trust": str(state.dir / ACME_ROOTS),
        # DNS-01: pebble asks the primary itself, which answers a new TXT at once
        "acme_dns_propagation_seconds": 2,
    }


def lab_groups(state: LabState | None = None) -> dict[str, list[HostEntry]]:
    """Group name -> [(host name, host data)], straight from the lab's state file.
    The acme host stands outside the fleet, as a public CA does: no role deploys it."""
    state = state or require_state()
    groups: dict[str, list[HostEntry]] = {}
    tls = tls_data(state)
    for host in state.hosts:
        if ACME_GROUP in host.groups:
            continue
        data = {
            **LAB_HOST_DATA,
            **tls,
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
