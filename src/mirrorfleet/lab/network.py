"""The lab's wiring: one bridge, and per host a network namespace joined to it by veth.

Every object carries the lab's kernel prefix, so `down` can find and remove them
even when the state file is gone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.lab.state import MAX_IFNAME
from mirrorfleet.lab.system import run

NETNS_DIR = Path("/run/netns")


def bridge_name(prefix: str) -> str:
    return f"{prefix}-br"


def netns_name(prefix: str, host: str) -> str:
    return f"{prefix}-{host}"


def veth_name(prefix: str, host: str) -> str:
    name = f"{prefix}-{host}"
    if len(name) > MAX_IFNAME:
        name = (
            f"{prefix}-{hashlib.sha256(host.encode()).hexdigest()[: MAX_IFNAME - len(prefix) - 1]}"
        )
    return name


def _links() -> list[dict]:
    return json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]")


def link_exists(name: str) -> bool:
    return any(link.get("ifname") == name for link in _links())


def subnet_clashes(subnet: ipaddress.IPv4Network, own_bridge: str) -> list[str]:
    """Routes on this machine that overlap the lab subnet, other than the lab's own."""
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    return find_clashes(subnet, routes, own_bridge)


def find_clashes(subnet: ipaddress.IPv4Network, routes: list[dict], own_bridge: str) -> list[str]:
    clashes = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == own_bridge:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet):
            clashes.append(f"{dst} on {route.get('dev', '?')}")
    return clashes


def ensure_bridge(name: str, gateway: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show", "dev", name]).stdout or "[]")
    have = {a["local"] for entry in addrs for a in entry.get("addr_info", [])}
    if str(gateway) not in have:
        run(["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def ensure_host_network(
    netns: str,
    veth: str,
    bridge: str,
    address: ipaddress.IPv4Address,
    subnet: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
) -> None:
    if not (NETNS_DIR / netns).exists():
        run(["ip", "netns", "add", netns])
    if not link_exists(veth):
        # a half-made pair (crash between the two steps) would block the add
        run(["ip", "-n", netns, "link", "del", "eth0"], check=False)
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    inside = json.loads(run(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", "eth0"]).stdout)
    have = {a["local"] for entry in inside for a in entry.get("addr_info", [])}
    if str(address) not in have:
        run(["ip", "-n", netns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", netns, "route", "replace", "default", "via", str(gateway)])


def lab_netns(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))


def lab_links(prefix: str) -> list[str]:
    return sorted(
        link["ifname"] for link in _links() if link.get("ifname", "").startswith(f"{prefix}-")
    )


def delete_netns(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)


def delete_link(name: str) -> None:
    run(["ip", "link", "del", name], check=False)


def check_free(subnet: ipaddress.IPv4Network, bridge: str) -> None:
    clashes = subnet_clashes(subnet, bridge)
    if clashes:
        raise UserError(
            f"lab subnet {subnet} overlaps {', '.join(clashes)}; pick another with --subnet"
        )
