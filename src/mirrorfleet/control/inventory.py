"""Checks on a pyinfra inventory that run when the inventory file loads.

pyinfra connects to hosts only after the inventory is built, so an error raised
here stops a bad run before any SSH connection is made.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorfleet.errors import UserError
from mirrorfleet.tree.keys import SecretsDir
from mirrorfleet.zone.records import LABEL_RE

if TYPE_CHECKING:
    from pyinfra.api import Inventory

DNS_ROLES = ("primary", "secondary")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)

HostEntry = str | tuple[str, Mapping[str, Any]]
GroupData = Mapping[str, Mapping[str, Any]]
MAX_WEIGHT = 65535  # an SRV weight is 16 bits (RFC 2782)
ZONE_GROUPS = ("dns", "monitor")  # they serve or write the zone, so need mirror_zone


def host_part(name: str) -> str:
    """A pyinfra connector host ("@vagrant/dns1") by its host part; others as they are."""
    return name.split("/", 1)[-1] if name.startswith("@") else name


def public_name(name: str, data: Mapping[str, Any]) -> str:
    """How clients and the other hosts reach a host: `public_name` data, else its
    inventory name (the roles and the checks read it alike)."""
    return host_part(data.get("public_name") or name)


def _entries(hosts: Sequence[HostEntry]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(h, {}) if isinstance(h, str) else (h[0], h[1]) for h in hosts]


def validate_groups(
    groups: Mapping[str, Sequence[HostEntry]],
    group_data: GroupData | None = None,
    *,
    check_secrets: bool | None = None,
) -> None:
    """Raise one UserError listing every problem found.

    group_data: group name -> data, as from group_data/*.py. None: load it the way
    pyinfra will when an inventory file is loading (nothing otherwise, and then the
    keys that usually live there, mirror_zone and secrets_dir, are not required).
    check_secrets: require secrets_dir to hold every key. None: only when the pyinfra
    command line runs a deploy file, which needs them (debug-inventory, exec and fact
    work without).
    """
    problems: list[str] = []
    data_by_host: dict[str, Mapping[str, Any]] = {}
    for group, hosts in groups.items():
        seen: set[str] = set()
        for name, data in _entries(hosts):
            # pyinfra connector hosts ("@vagrant/dns1") are checked by their host part
            if not HOSTNAME_RE.match(host_part(name)):
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
    problems += _data_problems(groups, group_data, check_secrets)
    if problems:
        raise UserError("bad inventory: " + "; ".join(problems))


def _data_problems(
    groups: Mapping[str, Sequence[HostEntry]],
    group_data: GroupData | None,
    check_secrets: bool | None,
) -> list[str]:
    """Values pyinfra merges from group_data and host data: checked per host, merged."""
    known = group_data is not None
    if group_data is None:
        group_data, known = _loading_group_data()
    if check_secrets is None:
        check_secrets = known and _cli_deploys()
    merged = _merged_data(groups, group_data)
    problems = []
    for name, (member_of, data) in merged.items():
        weight = data.get("mirror_weight")
        if "mirrors" in member_of and weight is not None and not _is_weight(weight):
            problems.append(
                f"mirrors: {name!r} has mirror_weight {weight!r}, "
                f"not a whole number from 0 to {MAX_WEIGHT}"
            )
        zone = data.get("mirror_zone")
        if known and member_of & set(ZONE_GROUPS) and not zone:
            problems.append(f"{name!r} needs mirror_zone (e.g. in group_data/all.py)")
        elif zone and not _is_zone(zone):
            problems.append(f"{name!r} has mirror_zone {zone!r}, not a DNS name")
    if check_secrets:
        folders = {str(data.get("secrets_dir") or "secrets") for _g, data in merged.values()}
        for folder in sorted(folders):
            path = Path(folder).expanduser()
            if not path.is_dir():
                problems.append(
                    f"secrets_dir {folder!r} is not a folder ({path.absolute()}): "
                    f"run `mirrorfleet keys init --dir {folder}`"
                )
                continue
            try:
                SecretsDir(path).require()
            except UserError as exc:
                problems.append(f"secrets_dir: {exc}")
    return problems


def _is_weight(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_WEIGHT


def _is_zone(value: object) -> bool:
    return isinstance(value, str) and bool(HOSTNAME_RE.match(value.rstrip(".")))


def _merged_data(
    groups: Mapping[str, Sequence[HostEntry]], group_data: GroupData
) -> dict[str, tuple[set[str], dict[str, Any]]]:
    """host -> (its groups, its data as pyinfra merges it: all, then groups, then host)."""
    hosts: dict[str, tuple[set[str], dict[str, Any]]] = {}
    for group, entries in groups.items():
        for name, data in _entries(entries):
            member_of, host_data = hosts.setdefault(name, (set(), {}))
            member_of.add(group)
            host_data.update(data)
    merged = {}
    for name, (member_of, host_data) in hosts.items():
        data = dict(group_data.get("all", {}))
        for group in sorted(member_of):
            data.update(group_data.get(group, {}))
        merged[name] = (member_of, {**data, **host_data})
    return merged


def _loading_group_data() -> tuple[GroupData, bool]:
    """The group data pyinfra adds to the inventory file it is loading; ({}, False) when
    no inventory file is loading. Same folders, same loader as pyinfra's."""
    if "pyinfra_cli" not in sys.modules:
        return {}, False
    from pyinfra.context import ctx_state, state

    filename = state.current_exec_filename if ctx_state.isset() else None
    if not filename:
        return {}, False
    from pyinfra_cli.inventory import _get_group_data

    folders = [Path(state.cwd) / "group_data"] if state.cwd else []
    folders.append(Path(filename).parent.resolve() / "group_data")
    data: dict[str, dict[str, Any]] = {}
    for folder in dict.fromkeys(folders):
        for group, values in _get_group_data(str(folder)).items():
            data.setdefault(group, {}).update(values)
    # hosts also get the data of the group named after the inventory file
    stem = Path(filename).stem
    if stem in data and stem != "all":
        data.setdefault("all", {}).update(data.pop(stem))
    return data, True


def _cli_deploys() -> bool:
    """The pyinfra command line names a deploy file besides the inventory."""
    from pyinfra.context import state

    program = Path(sys.argv[0])
    if program.name != "pyinfra" and program.parts[-2:] != ("pyinfra", "__main__.py"):
        return False
    inventory = Path(state.current_exec_filename or "").resolve()
    return any(
        arg.endswith(".py") and Path(arg).is_file() and Path(arg).resolve() != inventory
        for arg in sys.argv[1:]
    )


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
            if isinstance(exc.exception, UserError):
                raise exc.exception from None
            raise


def ssh_config_for(inventory: Inventory) -> str:
    """An OpenSSH client config reaching each host the way pyinfra does, under its
    host part (`host_part`): the name the checks give testinfra."""
    blocks = []
    for host in inventory:
        data = host.data
        alias = host_part(host.name)  # "@vagrant/dns1" is no name ssh or testinfra parse
        lines = [f"Host {alias}", f"    HostName {data.get('ssh_hostname') or alias}"]
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
