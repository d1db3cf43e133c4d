"""Which hosts the lab runs, in which groups, at which addresses.

Everything here is pure and checked before the lab touches the machine, so a bad
topology file fails with one line and leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrorfleet.errors import UserError

DEFAULT_TOPOLOGY = Path(__file__).parent / "topology.toml"
MIRRORS_GROUP = "mirrors"
FIRST_HOST_OFFSET = 10  # .1 is the bridge; .2-.9 stay free for the operator
HOSTNAME_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
GROUP_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class LabHost:
    name: str
    groups: tuple[str, ...]
    address: ipaddress.IPv4Address
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    subnet: ipaddress.IPv4Network
    hosts: tuple[LabHost, ...]

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for host in self.hosts:
            for group in host.groups:
                groups.setdefault(group, []).append(host.name)
        return groups

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise UserError(f"unknown lab host {name!r}; the lab has: {known}")


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UserError(f"bad subnet {text!r}: {exc} (expected e.g. 10.231.0.0/24)") from None
    if not subnet.is_private:
        raise UserError(f"subnet {subnet} is not a private range; pick one like 10.231.0.0/24")
    return subnet


def build_topology(
    raw: Mapping[str, Any],
    *,
    mirrors: int | None = None,
    subnet: str | None = None,
) -> Topology:
    """Validate a parsed topology document and allocate addresses in listing order."""
    unknown = set(raw) - {"subnet", "groups", "hosts"}
    if unknown:
        raise UserError(f"unknown topology keys: {', '.join(sorted(unknown))}")
    net = parse_subnet(subnet or str(raw.get("subnet", "10.231.0.0/24")))
    groups = raw.get("groups")
    if not isinstance(groups, Mapping) or not groups:
        raise UserError("topology needs a [groups] table mapping group names to host lists")
    for group, members in groups.items():
        if not isinstance(members, Sequence) or isinstance(members, str):
            raise UserError(f"group {group!r} must be a list of host names")
    groups = {name: list(members) for name, members in groups.items()}
    if mirrors is not None:
        if mirrors < 1:
            raise UserError(f"--mirrors must be at least 1, got {mirrors}")
        groups[MIRRORS_GROUP] = [f"mirror{i}" for i in range(1, mirrors + 1)]

    order: list[str] = []
    membership: dict[str, list[str]] = {}
    for group, members in groups.items():
        if not GROUP_RE.match(group):
            raise UserError(f"bad group name {group!r}: use lowercase letters, digits and _")
        for name in members:
            _check_hostname(name)
            if name not in membership:
                order.append(name)
                membership[name] = []
            if group in membership[name]:
                raise UserError(f"host {name!r} is listed twice in group {group!r}")
            membership[name].append(group)

    host_data = raw.get("hosts", {})
    stray = set(host_data) - set(order)
    if stray:
        raise UserError(f"[hosts] names hosts in no group: {', '.join(sorted(stray))}")
    return Topology(subnet=net, hosts=_allocate(net, order, membership, host_data))


def _allocate(
    net: ipaddress.IPv4Network,
    order: Sequence[str],
    membership: Mapping[str, Sequence[str]],
    host_data: Mapping[str, Mapping[str, Any]],
) -> tuple[LabHost, ...]:
    usable = net.num_addresses - 1 - FIRST_HOST_OFFSET  # minus the broadcast address
    if len(order) > usable:
        raise UserError(
            f"subnet {net} holds {max(usable, 0)} lab hosts, the topology has {len(order)}; "
            "use a larger subnet"
        )
    return tuple(
        LabHost(
            name=name,
            groups=tuple(membership[name]),
            address=net.network_address + FIRST_HOST_OFFSET + index,
            data=dict(host_data.get(name, {})),
        )
        for index, name in enumerate(order)
    )


def _check_hostname(name: Any) -> None:
    if not isinstance(name, str) or not HOSTNAME_RE.match(name):
        raise UserError(
            f"bad host name {name!r}: use lowercase letters, digits and '-', "
            "start with a letter, at most 32 characters"
        )


def load_topology(
    path: Path | None = None, *, mirrors: int | None = None, subnet: str | None = None
) -> Topology:
    path = path or DEFAULT_TOPOLOGY
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"topology file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"topology file {path} is not valid TOML: {exc}") from None
    return build_topology(raw, mirrors=mirrors, subnet=subnet)
