"""Authoritative DNS for the mirror zone: a BIND primary that takes TSIG-signed
updates from the monitor's key only, and secondaries fed by NOTIFY + IXFR.

Address records: every fleet host whose public name lies inside the zone gets an A
record, written by this role on the primary from the inventory (the addresses are
the inventory's facts, not the monitor's judgement) with a key of its own that may
write exactly those names' A records. The monitor's key never can.

ACME DNS-01: a host whose certificate is validated by DNS (`acme_challenge`
"dns-01", roles/tls) gets a TSIG key of its own that may write exactly one name's
TXT records, `_acme-challenge.<its name>`. No other key may write there, and that
key may write nothing else.

The named.conf is rendered once, checked with `named-checkconf -z` beside the live
one and only then put in place and reloaded, so a bad config never reaches named.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import FactBase, Host, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.util import get_template
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from mirrorfleet.tree.keys import HOSTS_TSIG, MONITOR_TSIG, TRANSFER_TSIG, acme_tsig_name
from mirrorfleet.zone.providers.rfc2136 import update_policy
from mirrorfleet_roles import fleet, hardening

TEMPLATES = Path(__file__).parent / "templates"
NAMED_CONF = TEMPLATES / "named.conf.j2"
SANDBOX = TEMPLATES / "named-sandbox.conf.j2"
KEYS_CONF = TEMPLATES / "keys.conf.j2"
ZONE_SEED = TEMPLATES / "zone.db.j2"
JINJA = {"trim_blocks": True, "lstrip_blocks": True}
LIVE_CONF = "/etc/bind/named.conf"
NEXT_CONF = "/etc/bind/named.conf.mirrorfleet"  # rendered and checked before it goes live
KEYS_FILE = "/etc/bind/mirrorfleet-keys.conf"
HOSTS_KEY_FILE = "/etc/bind/mirrorfleet-hosts.key"  # nsupdate's copy of the hosts key
FLEET_GROUPS = ("origin", "mirrors", "monitor", "dns")  # hosts that may get A records
ZONE_DIR = "/var/lib/bind"  # bind-writable: dynamic zones keep their journal beside them
DEFAULTS = {
    # The zone the fleet is published in, e.g. "mirrors.example.org" (required).
    "mirror_zone": None,
    # "primary" or "secondary"; exactly one primary (checked as the inventory loads).
    "dns_role": None,
    # The IPv4 address other DNS hosts reach this one at; default: ssh_hostname if
    # that is an address. BIND's primaries/also-notify take addresses, not names.
    "dns_address": None,
    # SOA MINIMUM: how long resolvers cache "no such name" (60-300 s).
    "dns_soa_minimum": 60,
    # TTL of the seed records (SOA, NS, glue).
    "dns_ttl": 300,
    # Sign the zone with dnssec-policy (keys made and rolled by BIND itself).
    "dns_dnssec": False,
}
ADDRESS_TTL = 300
ACME_LABEL = "_acme-challenge"  # RFC 8555 section 8.4


@dataclass(frozen=True)
class NamedConf:
    """Everything named.conf.j2 needs; the role and the loopback BIND share it."""

    zone: str
    role: str
    primary: str
    secondaries: tuple[str, ...]
    update_policy: tuple[str, ...]
    dnssec: bool = False
    port: int = 53
    peer_port: int = 0  # where the other servers listen; 0: the same port (real hosts)
    directory: str = "/var/cache/bind"
    zone_file: str = ""
    keys_file: str = KEYS_FILE
    key_directory: str = f"{ZONE_DIR}/keys"
    pid_file: str = ""
    listen_v4: str = "any"
    listen_v6: str = "any"
    transfer_key: str = TRANSFER_TSIG
    # keys that may transfer the zone: secondaries, and on the primary the publisher,
    # which reads live records by AXFR before it plans
    readers: tuple[str, ...] = (TRANSFER_TSIG,)

    def context(self) -> dict[str, Any]:
        zone = self.zone.rstrip(".")
        return {
            **self.__dict__,
            "zone": zone,
            "peer_port": self.peer_port or self.port,
            "zone_file": self.zone_file or f"{ZONE_DIR}/{zone}.db",
        }

    def render(self) -> str:
        return get_template(str(NAMED_CONF), dict(JINJA)).render(**self.context())


def named_conf(
    zone: str,
    role: str,
    primary: str,
    secondaries: Iterable[str],
    regions: Iterable[str] = (),
    host_names: Iterable[str] = (),
    acme_names: Iterable[str] = (),
    **settings: Any,
) -> NamedConf:
    """host_names: the in-zone names whose A records the hosts key may write.
    acme_names: the in-zone names validated by DNS-01, each of whose own key may write
    its `_acme-challenge` TXT records."""
    hosts = [f"grant {HOSTS_TSIG} name {n.rstrip('.')}. A;" for n in sorted(set(host_names))]
    acme = [
        f"grant {acme_tsig_name(n)} name {ACME_LABEL}.{n.rstrip('.')}. TXT;"
        for n in sorted(set(acme_names))
    ]
    return NamedConf(
        zone=zone,
        role=role,
        primary=primary,
        secondaries=tuple(secondaries),
        update_policy=(*update_policy(zone, MONITOR_TSIG, regions), *hosts, *acme),
        readers=(TRANSFER_TSIG, MONITOR_TSIG) if role == "primary" else (TRANSFER_TSIG,),
        **settings,
    )


def render_keys(keys: dict[str, str]) -> str:
    return get_template(str(KEYS_CONF), dict(JINJA)).render(keys=keys)


def render_seed(zone: str, nameservers: list[tuple[str, str]], minimum: int, ttl: int) -> str:
    """The zone's first content: SOA, NS and glue. Written once; updates do the rest."""
    return get_template(str(ZONE_SEED), dict(JINJA)).render(
        zone=f"{zone.rstrip('.')}.", nameservers=nameservers, soa_minimum=minimum, ttl=ttl
    )


def dns_address(target: Host) -> str:
    address = target.data.get("dns_address") or target.data.get("ssh_hostname") or ""
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise DeployError(
            f"{target.name}: set dns_address to its IPv4 address "
            "(BIND's primaries and also-notify take addresses, not names)"
        ) from None


def zone_name_of(target: Host, zone: str) -> str:
    """The host's public name as an absolute name; a bare one is taken to live in the zone."""
    name = fleet.public_name(target).rstrip(".")
    return f"{name}.{zone}." if "." not in name else f"{name}."


def in_zone(name: str, zone: str) -> bool:
    name = name.rstrip(".")
    return name == zone or name.endswith(f".{zone}")


def nameserver(target: Host, zone: str) -> tuple[str, str]:
    """(NS name, glue address or "")."""
    name = zone_name_of(target, zone)
    return name, dns_address(target) if in_zone(name, zone) else ""


def fleet_names(zone: str) -> dict[str, Host]:
    """Absolute name -> host, for every fleet host named inside the zone (a host named
    elsewhere keeps its records where its name lives)."""
    found: dict[str, Host] = {}
    for group in FLEET_GROUPS:
        for target in inventory.get_group(group, []):
            name = zone_name_of(target, zone)
            if in_zone(name, zone) and name != f"{zone}.":
                found[name] = target
    return found


def host_addresses(zone: str) -> dict[str, str]:
    """Absolute name -> IPv4 address of every fleet host named inside the zone."""
    return {name: public_address(target) for name, target in fleet_names(zone).items()}


def acme_names(zone: str) -> list[str]:
    """The absolute names of the fleet hosts validated by DNS-01; each must lie in the
    zone, where this primary can publish its challenge."""
    inside = {target.name: name for name, target in fleet_names(zone).items()}
    found = []
    for group in FLEET_GROUPS:
        for target in inventory.get_group(group, []):
            if fleet.acme_challenge(target) != "dns-01":
                continue
            if target.name not in inside:
                raise DeployError(
                    f"{target.name}: acme_challenge dns-01 needs its public name inside "
                    f"{zone}, whose primary publishes the challenge"
                )
            found.append(inside[target.name])
    return sorted(set(found))


def public_address(target: Host) -> str:
    """Where clients reach a host named inside the zone: public_address, else (a dns
    host) its dns_address, else its ssh_hostname when that is an address."""
    data = target.data
    address = data.get("public_address") or data.get("dns_address") or data.get("ssh_hostname")
    try:
        return str(ipaddress.IPv4Address(address or ""))
    except ValueError:
        raise DeployError(
            f"{target.name}: its public name is inside the mirror zone, so set "
            "public_address to the IPv4 address clients reach it at"
        ) from None


class ZoneAddresses(FactBase):
    """Name -> the A addresses the local primary serves for it now (sorted; [] when it
    serves none, or is not up yet: the first deploy writes them all)."""

    def command(self, names: tuple[str, ...], port: int = 53) -> str:
        dig = f"dig +short +norecurse +time=2 +tries=1 -p {port} @127.0.0.1"
        return "; ".join(f"echo {n} $({dig} {n} A 2>/dev/null)" for n in names)

    def process(self, output: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in output:
            name, *answers = line.split()
            found[name] = sorted(a for a in answers if _is_ipv4(a))
        return found


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def address_update(zone: str, changes: dict[str, str], port: int = 53) -> str:
    """nsupdate's script: each name's A record set to exactly its address."""
    lines = [f"server 127.0.0.1 {port}", f"zone {zone.rstrip('.')}."]
    for name, address in sorted(changes.items()):
        lines += [f"update delete {name} A", f"update add {name} {ADDRESS_TTL} A {address}"]
    return "\n".join([*lines, "send", ""])


def zone_name() -> str:
    zone = (host.data.get("mirror_zone") or "").rstrip(".")
    if not zone:
        raise DeployError("set mirror_zone (e.g. mirrors.example.org) in the inventory")
    return zone


def regions() -> list[str]:
    mirrors = inventory.get_group("mirrors", [])
    return sorted({m.data.get("mirror_region") for m in mirrors if m.data.get("mirror_region")})


@deploy("mirrorfleet dns", data_defaults=DEFAULTS)
def apply() -> None:
    secrets = fleet.secrets()
    zone, role = zone_name(), host.data.dns_role
    if role not in ("primary", "secondary"):
        raise DeployError(f"{host.name}: dns_role must be primary or secondary, not {role!r}")
    if not 60 <= int(host.data.dns_soa_minimum) <= 300:
        raise DeployError("dns_soa_minimum (negative caching) must be 60-300 seconds")
    dns_hosts = list(inventory.get_group("dns", []))
    primaries = [h for h in dns_hosts if h.data.get("dns_role") == "primary"]
    secondaries = [h for h in dns_hosts if h.data.get("dns_role") == "secondary"]
    addresses = host_addresses(zone)
    challenged = acme_names(zone)
    conf = named_conf(
        zone,
        role,
        primary=dns_address(primaries[0]),
        secondaries=[dns_address(h) for h in secondaries],
        regions=regions(),
        host_names=addresses,
        acme_names=challenged,
        dnssec=bool(host.data.dns_dnssec),
    )
    # Only the primary takes updates; secondaries hold the transfer key alone.
    fixed = [TRANSFER_TSIG, *([MONITOR_TSIG, HOSTS_TSIG] if role == "primary" else [])]
    acme_keys = [acme_tsig_name(n) for n in challenged] if role == "primary" else []
    secrets_by_key = {k: secrets.tsig_secret(k) for k in fixed}
    secrets_by_key |= {k: secrets.ensure_tsig(k) for k in acme_keys}

    apt.packages(name="Install BIND", packages=["bind9", "bind9-dnsutils"], no_recommends=True)
    keys = files.put(
        name="Install the TSIG keys (bind-only, 0600)",
        src=StringIO(render_keys(secrets_by_key)),
        dest=KEYS_FILE,
        user="bind",
        group="bind",
        mode="0600",
    )
    if role == "primary":
        files.directory(
            name="Create the DNSSEC key directory",
            path=conf.key_directory,
            user="bind",
            group="bind",
            mode="0750",
        )
    seed = None
    zone_file = conf.context()["zone_file"]
    if role == "primary" and host.get_fact(File, path=zone_file) is None:
        nameservers = [nameserver(h, zone) for h in primaries + secondaries]
        seed = files.put(
            name=f"Seed the zone {zone} (first deploy only; it is dynamic from then on)",
            src=StringIO(
                render_seed(zone, nameservers, host.data.dns_soa_minimum, host.data.dns_ttl)
            ),
            dest=zone_file,
            user="bind",
            group="bind",
            mode="0644",
        )
    rendered = files.put(
        name="Render named.conf",
        src=StringIO(conf.render()),
        dest=NEXT_CONF,
        user="root",
        group="bind",
        mode="0644",
    )
    triggers = [op for op in (keys, seed, rendered) if op is not None]
    changed = any_changed(*triggers)
    server.shell(
        name="Check named.conf and the zone, then put it live",
        commands=[
            f"named-checkconf -z {NEXT_CONF} || {{ rm -f {NEXT_CONF}; exit 1; }}",
            f"install -m 0644 -o root -g bind {NEXT_CONF} {LIVE_CONF}",
        ],
        _if=changed,
    )
    sandbox(conf)
    hardening.service("named.service", "Run named", "Reload named", triggers, reload=True)
    if role == "primary":
        put_addresses(zone, addresses, secrets.tsig_secret(HOSTS_TSIG))


def put_addresses(zone: str, addresses: dict[str, str], secret: str) -> None:
    """Set the A record of every in-zone fleet name the primary does not serve right;
    a rerun with nothing to set runs nothing."""
    files.put(
        name="Install the hosts key for nsupdate (root-only, 0600)",
        src=StringIO(render_keys({HOSTS_TSIG: secret})),
        dest=HOSTS_KEY_FILE,
        user="root",
        group="root",
        mode="0600",
    )
    if not addresses:
        return
    served = host.get_fact(ZoneAddresses, names=tuple(sorted(addresses)))
    changes = {n: a for n, a in addresses.items() if served.get(n) != [a]}
    if not changes:
        return
    script = address_update(zone, changes)
    server.shell(
        name=f"Set the address records of {', '.join(sorted(changes))}",
        # named may still be loading the zone it was just (re)started with
        commands=[
            "for try in $(seq 30); do "
            f"nsupdate -k {HOSTS_KEY_FILE} <<'EOF' && exit 0\n{script}EOF\n"
            "sleep 1; done; exit 1"
        ],
    )


def sandbox(conf: NamedConf) -> None:
    """named.service in a drop-in sandbox (hardening.harden()).

    named starts as root and keeps, like its own Linux privilege code asks for:
    CAP_NET_BIND_SERVICE (port 53, kept after it drops to bind), CAP_SETUID and
    CAP_SETGID (-u bind), CAP_DAC_READ_SEARCH (to read the bind-only TSIG keys and
    DNSSEC key directory while still root), CAP_CHOWN (its pid file and files it
    makes as root go to bind) and CAP_SYS_RESOURCE (it raises its open-file limit,
    the setrlimit that needs @resources). AF_NETLINK: it lists and watches the
    host's interfaces (listen-on any). It writes the zones, their journals and keys
    (ZONE_DIR), its working directory and /run/named (pid file, session key).
    """
    hardening.harden(
        "named.service",
        SANDBOX,
        f"{ZONE_DIR} {conf.directory} /run/named",
        capabilities="CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_DAC_READ_SEARCH "
        "CAP_CHOWN CAP_SYS_RESOURCE",
        address_families="AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        denied_syscalls="",
        private_users=False,
        # /proc/sys/net/ipv4/ip_local_port_range: without it named picks query and
        # notify source ports from 1024-65535, over other daemons' ports
        proc_subset="all",
    )
