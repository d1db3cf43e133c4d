"""Checks on a pyinfra inventory that run when the inventory file loads.

pyinfra connects to hosts only after the inventory is built, so an error raised
here stops a bad run before any SSH connection is made.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.records import LABEL_RE

if TYPE_CHECKING:
    from pyinfra.api import Inventory

DNS_ROLES = ("primary", "secondary")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)

HostEntry = str | tuple[str, Mapping[str, Any]]


def _entries(hosts: Sequence[HostEntry]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(h, {}) if isinstance(h, str) else (h[0], h[1]) for h in hosts]


def validate_groups(groups: Mapping[str, Sequence[HostEntry]]) -> None:
    """Raise one MirrorfleetError listing every problem found."""
    problems: list[str] = []
    data_by_host: dict[str, Mapping[str, Any]] = {}
    for group, hosts in groups.items():
        seen: set[str] = set()
        for name, data in _entries(hosts):
            # pyinfra connector hosts ("@vagrant/dns1") are checked by their host part
            if not HOSTNAME_RE.match(name.split("/", 1)[-1] if name.startswith("@") else name):
                problems.append(f"{group}: {name!r} is not a valid host name")
            if name in seen:
                problems.append(f"{group}: host {name!r} is listed twice")
            seen.add(name)
            if name in data_by_host and data and data_by_host[name] and data != data_by_host[name]:
                problems.append(f"host {name!r} has different data in different groups")
            data_by_host.setdefault(name, data)
    if len(groups.get("origin", ())) > 1:
        problems.append("origin: exactly one origin host is supported")
    dns_hosts = _entries(groups.get("dns", ()))
    for name, data in dns_hosts:
        role = data.get("dns_role")
        if role not in DNS_ROLES:
            problems.append(f"dns: host {name!r} needs dns_role = 'primary' or 'secondary'")
        address = data.get("dns_address")
        if address is not None and not _is_ipv4(address):
            problems.append(f"dns: host {name!r} has dns_address {address!r}, not an IPv4 address")
    primaries = [name for name, data in dns_hosts if data.get("dns_role") == "primary"]
    if dns_hosts and len(primaries) != 1:
        problems.append(
            f"dns: exactly one dns_role='primary' host is needed, found {len(primaries)}"
        )
    mirrors = _entries(groups.get("mirrors", ()))
    problems += _tier_problems(mirrors)
    problems += [
        f"mirrors: {name!r} has mirror_region {data['mirror_region']!r}, not a DNS label"
        for name, data in mirrors
        if data.get("mirror_region") is not None
        and not LABEL_RE.fullmatch(str(data["mirror_region"]))
    ]
    if problems:
        raise MirrorfleetError("bad inventory: " + "; ".join(problems))


def _is_ipv4(text: object) -> bool:
    try:
        ipaddress.IPv4Address(str(text))
    except ValueError:
        return False
    return True


def _tier_problems(mirrors: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """mirror_upstream must name another mirror, and the tiers must end at the origin."""
    upstream = {name: data.get("mirror_upstream") for name, data in mirrors}
    problems = [
        f"mirrors: {name!r} has mirror_upstream {up!r}, which is not another mirror"
        for name, up in upstream.items()
        if up is not None and (up not in upstream or up == name)
    ]
    for start in upstream:
        seen, current = {start}, upstream[start]
        while current in upstream and upstream[current] is not None:
            current = upstream[current]
            if current in seen:
                problems.append(f"mirrors: mirror_upstream forms a loop through {start!r}")
                break
            seen.add(current)
    return problems


def module_groups(namespace: Mapping[str, Any]) -> dict[str, Sequence[HostEntry]]:
    """The groups pyinfra will see in an inventory module: public lists and tuples."""
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and isinstance(value, list | tuple)
    }


def load_inventory(path: str | Path) -> Inventory:
    """Load an inventory file exactly as the pyinfra CLI does (group_data included)."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.exceptions import UnexpectedExternalError
    from pyinfra_cli.inventory import make_inventory

    path = Path(path).resolve()
    # pyinfra's file loader records the file it runs on the current State.
    with ctx_state.use(State()):
        try:
            return make_inventory(str(path), cwd=str(path.parent))
        except UnexpectedExternalError as exc:
            if isinstance(exc.exception, MirrorfleetError):
                raise exc.exception from None
            raise


def ssh_config_for(inventory: Inventory) -> str:
    """An OpenSSH client config reaching each host the way pyinfra does."""
    blocks = []
    for host in inventory:
        data = host.data
        lines = [f"Host {host.name}", f"    HostName {data.get('ssh_hostname') or host.name}"]
        options = {
            "User": data.get("ssh_user"),
            "Port": data.get("ssh_port"),
            "IdentityFile": data.get("ssh_key"),
            "UserKnownHostsFile": data.get("ssh_known_hosts_file"),
            "StrictHostKeyChecking": data.get("ssh_strict_host_key_checking"),
        }
        lines += [f"    {key} {value}" for key, value in options.items() if value]
        if data.get("ssh_key"):
            lines.append("    IdentitiesOnly yes")
        lines += ["    BatchMode yes", "    ConnectTimeout 10"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
