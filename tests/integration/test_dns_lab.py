"""DNS on real hosts: the dns role's BIND primary and secondary, the monitor's
probe-and-publish cycle, and the servers refusing every writer but the monitor.

Steps run in file order on one lab of 6 hosts.
"""

from __future__ import annotations

import json
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.zone
import pytest

from mirrorfleet.keys import MONITOR_TSIG, TRANSFER_TSIG, SecretsDir

pytestmark = pytest.mark.lab

LAB, SUBNET = "dn", "10.237.0.0/24"
ZONE = "mirrors.lab.test."
SRV_NAME = f"_pkgmirror._tcp.{ZONE}"
AS_SERVICE = ("runuser", "-u", "mirrorfleet", "--", "mirrorfleet")
APPLY = (
    *AS_SERVICE,
    "dns",
    "apply",
    "--config",
    "/etc/mirrorfleet/dns.toml",
    "--fleet",
    "/etc/mirrorfleet/fleet.toml",
    "--json",
)
SYNC_TIMEOUT = 15.0
SECONDARY_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(LAB, SUBNET)
    lab.up("--topology", str(Path(__file__).with_name("dns_topology.toml")))
    lab.pyinfra("deploy.py")
    return lab


@pytest.fixture(scope="module")
def secrets(lab) -> SecretsDir:
    return SecretsDir(Path(lab.state["ssh_config"]).with_name("secrets"))


def answer(lab, server: str, name: str, rdtype: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.address(server)]
    resolver.lifetime = 5
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def soa_serial(lab, server: str) -> int:
    return int(answer(lab, server, ZONE, "SOA")[0].split()[2])


def mirror_serial(lab, host: str) -> int:
    stamp = json.loads(lab.check(host, "cat", "/srv/mirror/.mirror/stamp.json"))
    return int(stamp["signed"]["serial"])


def test_primary_and_secondary_serve_the_signed_zone(lab) -> None:
    assert soa_serial(lab, "dns1") == soa_serial(lab, "dns2")
    for server in ("dns1", "dns2"):
        assert answer(lab, server, ZONE, "DNSKEY"), f"{server} serves no DNSKEY"
    conf = lab.check("dns1", "named-checkconf", "-z", "/etc/bind/named.conf")
    assert "mirrors.lab.test" in conf


def test_publish_dns_lists_every_mirror_on_both_servers(lab) -> None:
    lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "5")
    lab.check("origin", *AS_SERVICE, "origin", "publish")
    lab.wait_for(lambda: {mirror_serial(lab, m) for m in ("mirror1", "mirror2")} == {1}, 30)
    lab.pyinfra("deploy/publish_dns.py")
    expected = ["10 100 80 mirror1.", "10 100 80 mirror2."]
    assert answer(lab, "dns1", SRV_NAME, "SRV") == expected
    lab.wait_for(lambda: answer(lab, "dns2", SRV_NAME, "SRV") == expected, SECONDARY_TIMEOUT)
    head = lab.check("dns2", "dig", "+short", "@127.0.0.1", f"_head._pkgmirror.{ZONE}", "TXT")
    assert '"serial=1"' in head and '"sig=' in head


def test_a_second_cycle_sends_nothing(lab) -> None:
    result = json.loads(lab.check("monitor", *APPLY))
    assert result["messages"] == 0, result


def test_a_mirror_that_falls_behind_is_demoted_on_both_servers(lab) -> None:
    lab.check("mirror2", "systemctl", "stop", "mirrorfleet-agent.service")
    try:
        lab.check("origin", *AS_SERVICE, "origin", "publish", "--force")
        lab.wait_for(lambda: mirror_serial(lab, "mirror1") == 2, SYNC_TIMEOUT)
        result = json.loads(lab.check("monitor", *APPLY))
        assert result["messages"] == 1
        expected = ["10 100 80 mirror1.", "20 100 80 mirror2."]
        lab.wait_for(lambda: answer(lab, "dns2", SRV_NAME, "SRV") == expected, SECONDARY_TIMEOUT)
        meta = answer(lab, "dns2", f"mirror2._meta._pkgmirror.{ZONE}", "TXT")[0]
        assert '"st=lagging"' in meta and '"serial=1"' in meta
    finally:
        lab.check("mirror2", "systemctl", "start", "mirrorfleet-agent.service")


@pytest.mark.parametrize("host", ["origin", "mirror1", "mirror2", "dns2"])
def test_no_publisher_key_outside_the_monitor_and_primary(lab, secrets, host: str) -> None:
    secret = secrets.tsig_secret(MONITOR_TSIG)
    found = lab.exec(host, "grep", "-rlF", secret, "/etc", "/var/lib", "/opt", "/srv")
    assert found.returncode == 1 and found.stdout == "", found.stdout


def test_the_monitor_key_is_private(lab) -> None:
    mode = lab.check("monitor", "stat", "-c", "%a %U", "/etc/mirrorfleet/tsig-monitor.key")
    assert mode.split() == ["600", "mirrorfleet"]
    keys = lab.check("dns1", "stat", "-c", "%a %U", "/etc/bind/mirrorfleet-keys.conf")
    assert keys.split() == ["600", "bind"]


def _update(secrets: SecretsDir, key: str | None, name: str, rdtype: str, value: str):
    keyring = (
        dns.tsigkeyring.from_text({key: ("hmac-sha256", secrets.tsig_secret(key))}) if key else None
    )
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=key)
    update.replace(name, 60, rdtype, value)
    return update


@pytest.mark.parametrize(
    ("key", "name", "rdtype", "value"),
    [
        (None, "_head._pkgmirror", "TXT", '"txtvers=1"'),
        (TRANSFER_TSIG, "_head._pkgmirror", "TXT", '"txtvers=1"'),
        (MONITOR_TSIG, "www", "A", "192.0.2.66"),
        (MONITOR_TSIG, "_head._pkgmirror", "A", "192.0.2.66"),
    ],
    ids=["unsigned", "transfer-key", "monitor-key-www", "monitor-key-wrong-type"],
)
def test_the_primary_refuses_writes_outside_the_policy(
    lab, secrets, key, name, rdtype, value
) -> None:
    before = soa_serial(lab, "dns1")
    update = _update(secrets, key, name, rdtype, value)
    response = dns.query.tcp(update, lab.address("dns1"), timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    assert soa_serial(lab, "dns1") == before


@pytest.mark.parametrize(
    ("server", "key"),
    [("dns1", None), ("dns2", None), ("dns2", MONITOR_TSIG)],
    ids=["primary-unsigned", "secondary-unsigned", "secondary-monitor-key"],
)
def test_zone_transfers_need_the_right_key(lab, secrets, server: str, key: str | None) -> None:
    keyring = (
        dns.tsigkeyring.from_text({key: ("hmac-sha256", secrets.tsig_secret(key))}) if key else None
    )
    with pytest.raises(dns.exception.DNSException):
        dns.zone.from_xfr(
            dns.query.xfr(lab.address(server), ZONE, keyring=keyring, keyname=key, lifetime=5)
        )


def test_a_deploy_rerun_changes_nothing(lab) -> None:
    ops = lab.pyinfra("deploy.py")["results"]["operations"]
    assert [op["name"] for op in ops if not op["no_change"]] == []
