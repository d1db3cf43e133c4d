"""The hosts' address records and ACME DNS-01 keys (issue 17) on a real BIND from the
dns role's template: the role's nsupdate script sets exactly the A records the
inventory names, its fact reads them back (so a rerun writes nothing), and the
update-policy lets the hosts key write those names' A records and nothing else, the
monitor's key none; a host's ACME key writes its own `_acme-challenge` TXT, and
nothing else, and no other key may write there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.tree.keys import HOSTS_TSIG, MONITOR_TSIG, acme_tsig_name
from mirrorfleet_roles.dns import ZoneAddresses, address_update, render_keys

ZONE = "mirrors.test"
NAMES = {f"mirror1.{ZONE}.": "10.1.0.11", f"origin.{ZONE}.": "10.1.0.10"}
ORIGIN_ACME = acme_tsig_name(f"origin.{ZONE}")  # the origin is validated by DNS-01
MIRROR_ACME = acme_tsig_name(f"mirror1.{ZONE}")


@pytest.fixture(scope="module")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackBind]:
    with LoopbackBind(
        tmp_path_factory.mktemp("bind"),
        f"{ZONE}.",
        host_names=tuple(NAMES),
        acme_names=(f"origin.{ZONE}.", f"mirror1.{ZONE}."),
        dnssec=True,
    ) as server:
        yield server


def nsupdate(
    bind: LoopbackBind, key: str, script: str, tmp_path: Path
) -> subprocess.CompletedProcess:
    keyfile = tmp_path / f"{key}.key"
    keyfile.write_text(render_keys({key: bind.keys[key]}))
    keyfile.chmod(0o600)
    return subprocess.run(
        ["nsupdate", "-k", str(keyfile)], input=script, capture_output=True, text=True, timeout=30
    )


def served(bind: LoopbackBind, names: list[str]) -> dict[str, list[str]]:
    """The role's fact, run as pyinfra would run it on the primary."""
    fact = ZoneAddresses()
    command = fact.command(tuple(names), port=bind.primary.port)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    return fact.process(out.stdout.splitlines())


def test_the_hosts_key_sets_exactly_the_inventorys_addresses(
    bind: LoopbackBind, tmp_path: Path
) -> None:
    assert served(bind, list(NAMES)) == {n: [] for n in NAMES}
    proc = nsupdate(bind, HOSTS_TSIG, address_update(ZONE, NAMES, bind.primary.port), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert served(bind, list(NAMES)) == {n: [a] for n, a in NAMES.items()}
    moved = {f"mirror1.{ZONE}.": "10.1.0.99"}  # a host renumbered: its one record moves
    proc = nsupdate(bind, HOSTS_TSIG, address_update(ZONE, moved, bind.primary.port), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert served(bind, [f"mirror1.{ZONE}."]) == {f"mirror1.{ZONE}.": ["10.1.0.99"]}


@pytest.mark.parametrize(
    ("key", "name", "rdtype"),
    [
        (HOSTS_TSIG, f"mirror2.{ZONE}.", "A"),  # a name the inventory does not hold
        (HOSTS_TSIG, f"mirror1.{ZONE}.", "TXT"),  # another type on a granted name
        (MONITOR_TSIG, f"mirror1.{ZONE}.", "A"),  # the monitor never writes addresses
        # an ACME key: not another host's challenge, not its own name, not another type
        (ORIGIN_ACME, f"_acme-challenge.mirror1.{ZONE}.", "TXT"),
        (ORIGIN_ACME, f"origin.{ZONE}.", "TXT"),
        (ORIGIN_ACME, f"_acme-challenge.origin.{ZONE}.", "A"),
        (ORIGIN_ACME, f"_pkgmirror._tcp.{ZONE}.", "TXT"),
        # and no other key writes a challenge
        (MONITOR_TSIG, f"_acme-challenge.origin.{ZONE}.", "TXT"),
        (HOSTS_TSIG, f"_acme-challenge.origin.{ZONE}.", "TXT"),
        (MIRROR_ACME, f"_acme-challenge.origin.{ZONE}.", "TXT"),
    ],
)
def test_the_policy_refuses_everything_else(
    bind: LoopbackBind, key: str, name: str, rdtype: str
) -> None:
    update = dns.update.UpdateMessage(
        f"{ZONE}.",
        keyring=dns.tsigkeyring.from_text({key: bind.keys[key]}),
        keyalgorithm="hmac-sha256",
    )
    update.replace(name, 300, rdtype, "10.1.0.66" if rdtype == "A" else '"x"')
    response = dns.query.tcp(update, "127.0.0.1", port=bind.primary.port, timeout=5)
    assert response.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("key", [ORIGIN_ACME, MIRROR_ACME])
def test_a_hosts_acme_key_writes_its_own_challenge(bind: LoopbackBind, key: str) -> None:
    """What certbot's RFC 2136 plugin does: add the token's TXT, then delete it."""
    name = f"_acme-challenge.{key.removeprefix('mirrorfleet-acme.')}."
    keyring = dns.tsigkeyring.from_text({key: bind.keys[key]})
    for change, served_after in (
        ((60, "TXT", '"token-digest"'), 1),
        (("TXT", '"token-digest"'), 0),
    ):
        update = dns.update.UpdateMessage(f"{ZONE}.", keyring=keyring, keyalgorithm="hmac-sha256")
        (update.add if len(change) == 3 else update.delete)(name, *change)
        response = dns.query.tcp(update, "127.0.0.1", port=bind.primary.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, change
        query = dns.message.make_query(name, "TXT")
        answer = dns.query.tcp(query, "127.0.0.1", port=bind.primary.port, timeout=5).answer
        assert sum(len(rrset) for rrset in answer if rrset.rdtype == dns.rdatatype.TXT) == (
            served_after
        )
