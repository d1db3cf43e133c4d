"""A dns host: BIND authoritative for the mirror zone, its config and zone valid, its
keys private, and its answers the same as the primary's."""

from __future__ import annotations

import re
import time

import pytest

from mirrorfleet.control.inventory import public_name

INVENTORY_GROUP = "dns"
KEYS = "/etc/bind/mirrorfleet-keys.conf"
SETTLE = 10  # seconds a secondary may take to catch up with the primary


@pytest.fixture(scope="module")
def zone(inventory_host) -> str:
    return str(inventory_host.data.get("mirror_zone")).rstrip(".")


@pytest.fixture(scope="module")
def primary(inventory) -> str:
    """The primary's address, as the dns role gives it to BIND."""
    hosts = [h for h in inventory.get_group("dns") if h.data.get("dns_role") == "primary"]
    assert len(hosts) == 1, "the inventory needs exactly one dns_role='primary' host"
    found = hosts[0]
    return str(found.data.get("dns_address") or found.data.get("ssh_hostname"))


def dig(host, server: str, name: str, rdtype: str) -> list[str]:
    out = host.check_output(f"dig +short +time=2 +tries=2 @{server} {name} {rdtype}")
    return sorted(line for line in out.splitlines() if line.strip())


def test_named_running_and_enabled(host) -> None:
    assert host.service("named").is_running
    assert host.service("named").is_enabled


@pytest.mark.parametrize("socket", ["udp://127.0.0.1:53", "tcp://127.0.0.1:53"])
def test_listening(host, socket: str) -> None:
    assert host.socket(socket).is_listening


# Debian's named.service, sandboxed by a mirrorfleet drop-in (roles/dns, hardening.harden()):
# root to bind port 53 and read the bind-only keys, then -u bind.
def test_unit_exposure_is_ok(unit_exposure) -> None:
    exposure = unit_exposure("named.service")
    assert exposure.level <= exposure.limit, f"systemd-analyze security {exposure}"


def test_named_keeps_only_the_capabilities_it_needs(host) -> None:
    value = host.check_output("systemctl show -p CapabilityBoundingSet --value named.service")
    assert set(value.split()) == {
        "cap_chown",
        "cap_dac_read_search",
        "cap_setgid",
        "cap_setuid",
        "cap_net_bind_service",
        "cap_sys_resource",
    }


def test_config_is_valid(host) -> None:
    assert host.run("named-checkconf /etc/bind/named.conf").rc == 0


def test_served_zone_is_valid(host, zone: str, inventory_host) -> None:
    """The zone file with its journal, as named would load it: text on the primary
    (dynamic), BIND's raw format on a secondary (a transferred copy)."""
    raw = "-f raw " if inventory_host.data.get("dns_role") == "secondary" else ""
    check = host.run(f"named-checkzone {raw}-j {zone} /var/lib/bind/{zone}.db")
    assert check.rc == 0, check.stdout + check.stderr


def test_keys_are_private_to_bind(host) -> None:
    keys = host.file(KEYS)
    assert (keys.user, keys.mode) == ("bind", 0o600)


def test_only_the_primary_holds_the_publishers_key(host, inventory_host) -> None:
    has_key = "mirrorfleet-monitor" in host.check_output(f"cat {KEYS}")
    assert has_key == (inventory_host.data.get("dns_role") == "primary")


def test_answers_the_same_serial_as_the_primary(host, zone: str, primary: str) -> None:
    deadline = time.monotonic() + SETTLE
    while True:
        ours = dig(host, "127.0.0.1", zone, "SOA")
        theirs = dig(host, primary, zone, "SOA")
        if (ours and ours == theirs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ours and ours == theirs


@pytest.mark.parametrize("rdtype", ["SRV", "TXT"])
def test_answers_the_same_records_as_the_primary(host, zone: str, primary: str, rdtype) -> None:
    name = f"_pkgmirror._tcp.{zone}" if rdtype == "SRV" else f"_head._pkgmirror.{zone}"
    assert dig(host, "127.0.0.1", name, rdtype) == dig(host, primary, name, rdtype)


def in_zone_addresses(inventory, zone: str) -> dict[str, str]:
    """Every fleet host named inside the zone -> the address clients reach it at
    (roles/dns writes these; see host_addresses there)."""
    found = {}
    for group in ("origin", "mirrors", "monitor", "dns"):
        for target in inventory.get_group(group, []):
            name = public_name(target.name, target.data).rstrip(".")
            name = name if "." in name else f"{name}.{zone}"
            if name.endswith(f".{zone}"):
                data = target.data
                keys = ("public_address", "dns_address", "ssh_hostname")
                found[name] = str(next((data.get(k) for k in keys if data.get(k)), ""))
    return found


def test_every_fleet_name_in_the_zone_has_its_address(host, zone: str, inventory) -> None:
    wrong = {
        name: served
        for name, address in in_zone_addresses(inventory, zone).items()
        if (served := dig(host, "127.0.0.1", name, "A")) != [address]
    }
    assert not wrong, f"A records that are not the inventory's: {wrong}"


@pytest.fixture(scope="module")
def published(host, zone: str) -> None:
    """The mirror list exists once the origin has published and the monitor has run."""
    if not dig(host, "127.0.0.1", f"_head._pkgmirror.{zone}", "TXT"):
        pytest.skip("nothing published yet: no head record in the zone")


def labels(inventory) -> set[str]:
    return {
        public_name(m.name, m.data).rstrip(".").split(".")[0]
        for m in inventory.get_group("mirrors", [])
    }


def test_srv_lists_only_inventory_mirrors(host, zone: str, inventory, published) -> None:
    srv = dig(host, "127.0.0.1", f"_pkgmirror._tcp.{zone}", "SRV")
    targets = {line.split()[3].rstrip(".").split(".")[0] for line in srv}
    assert srv, "no mirror is listed"
    assert targets <= labels(inventory), f"not in the inventory: {targets - labels(inventory)}"


def test_every_inventory_mirror_has_a_meta_record(host, zone: str, inventory, published) -> None:
    missing = [
        label
        for label in sorted(labels(inventory))
        if not re.search(
            r'"st=(fresh|lagging|down)"',
            " ".join(dig(host, "127.0.0.1", f"{label}._meta._pkgmirror.{zone}", "TXT")),
        )
    ]
    assert missing == [], f"no meta record for {missing}"
