"""Publishing to a real BIND on 127.0.0.1: plan/apply over AXFR + RFC 2136 with
TSIG, and the server's update-policy refusing everything outside our names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.testing import demo_fleet
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.tree.keys import MONITOR_TSIG, TRANSFER_TSIG, tsig_secret
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import records
from mirrorfleet.zone.plan import check_safe, plan
from mirrorfleet.zone.providers import rfc2136
from mirrorfleet.zone.records import MirrorRecord

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
ZONE = "mirrors.test."
KEY, OTHER_KEY = MONITOR_TSIG, "someone-else"
FOREIGN = "www IN A 192.0.2.10\n"
PROPAGATION = 1.0  # primary -> secondary, by NOTIFY + IXFR (issue 5's target)


@pytest.fixture(scope="module")
def bind(tmp_path_factory) -> Iterator[LoopbackBind]:
    """A primary and a secondary from the dns role's template, signed with DNSSEC."""
    if shutil.which("named") is None:
        pytest.fail("named is not installed: apt-get install bind9")
    workdir = tmp_path_factory.mktemp("bind")
    with LoopbackBind(
        workdir, ZONE, seed=FOREIGN, secondary=True, regions=("eu",), dnssec=True
    ) as server:
        yield server


@pytest.fixture(scope="module")
def named(bind: LoopbackBind) -> dict:
    return {
        "port": bind.primary.port,
        "secondary": bind.servers[1].port,
        "secret": bind.keys[KEY],
        "transfer": bind.keys[TRANSFER_TSIG],
        "other": tsig_secret(),  # a well-formed key the server does not know
    }


@pytest.fixture
def target(bind: LoopbackBind) -> rfc2136.Rfc2136Provider:
    return bind.provider()


def fleet(states: dict[str, str]) -> list[MirrorRecord]:
    return [demo_fleet.mirror(label, state) for label, state in states.items()]


def desired(states: dict[str, str]) -> list[records.RecordSet]:
    stamp = Stamp(serial=5, ts=1_700_000_000, origin="origin", expires=2**32)
    head = records.head_rrset(stamp, b"\x01" * 64, "0123456789abcdef", ttl=60)
    return records.desired_records(ZONE, head, fleet(states), owner="fleet-test")


def cycle(target, states: dict[str, str], force: bool = False) -> tuple[object, int]:
    want = desired(states)
    live = target.read_live()
    owner = next(r for r in want if r.name == records.OWNER)
    result = plan(want, live)
    check_safe(result, force=force)
    owner_live = any(r.name == records.OWNER for r in live)
    return result, target.apply(result, owner, owner_live)


def query(port: int, name: str, rdtype: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], port
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except dns.resolver.NXDOMAIN:
        return []


def test_first_publish_is_one_message_and_visible(target, named) -> None:
    result, messages = cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    assert messages == 1 and len(result.creates) == 5
    assert query(named["port"], f"_pkgmirror._tcp.{ZONE}", "SRV") == [
        "10 100 80 mirror1.example.net.",
        "20 100 80 mirror2.example.net.",
    ]
    meta = query(named["port"], f"mirror2._meta._pkgmirror.{ZONE}", "TXT")[0]
    assert '"st=lagging"' in meta
    dig = subprocess.run(
        [
            "dig",
            "+short",
            "-p",
            str(named["port"]),
            "@127.0.0.1",
            f"_head._pkgmirror.{ZONE}",
            "TXT",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert '"serial=5"' in dig.stdout


def test_second_apply_is_an_empty_plan_that_sends_nothing(target) -> None:
    result, messages = cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    assert result.empty and messages == 0


def test_demotion_updates_in_place_and_foreign_records_survive(target, named) -> None:
    _, messages = cycle(target, {"mirror1": "fresh", "mirror2": "down"})
    assert messages == 1
    assert query(named["port"], f"_pkgmirror._tcp.{ZONE}", "SRV") == [
        "10 100 80 mirror1.example.net."
    ]
    assert query(named["port"], f"www.{ZONE}", "A") == ["192.0.2.10"]


def _send(named: dict, update: dns.update.UpdateMessage) -> int:
    return dns.query.tcp(update, "127.0.0.1", port=named["port"], timeout=5).rcode()


def test_unsigned_update_is_refused(named) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.replace("_head._pkgmirror", 60, "TXT", '"txtvers=2"')
    assert _send(named, update) == dns.rcode.REFUSED


def test_a_key_without_a_grant_is_refused(named) -> None:
    """The secondaries' transfer key is known to the server but may not write."""
    keyring = dns.tsigkeyring.from_text({TRANSFER_TSIG: ("hmac-sha256", named["transfer"])})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=TRANSFER_TSIG)
    update.replace("_head._pkgmirror", 60, "TXT", '"txtvers=2"')
    assert _send(named, update) == dns.rcode.REFUSED


def test_an_unknown_key_is_refused(named) -> None:
    keyring = dns.tsigkeyring.from_text({OTHER_KEY: ("hmac-sha256", named["other"])})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=OTHER_KEY)
    update.replace("_head._pkgmirror", 60, "TXT", '"txtvers=2"')
    with pytest.raises(dns.tsig.PeerBadKey):
        _send(named, update)


@pytest.mark.parametrize(
    ("server", "key"),
    [("port", None), ("port", OTHER_KEY), ("secondary", None), ("secondary", KEY)],
    ids=["primary-unsigned", "primary-unknown-key", "secondary-unsigned", "secondary-monitor-key"],
)
def test_zone_transfers_need_the_right_key(named, server: str, key: str | None) -> None:
    secret = {KEY: named["secret"], OTHER_KEY: named["other"]}.get(key or "")
    keyring = dns.tsigkeyring.from_text({key: ("hmac-sha256", secret)}) if key else None
    with pytest.raises(dns.exception.DNSException):
        dns.zone.from_xfr(
            dns.query.xfr("127.0.0.1", ZONE, port=named[server], keyring=keyring, keyname=key)
        )


def test_secondary_serves_what_was_published(bind, named) -> None:
    """NOTIFY + IXFR: the secondary answers the same SOA serial and records."""
    primary, secondary = bind.servers
    serial = primary.soa_serial(ZONE)
    deadline = time.monotonic() + 10
    while secondary.soa_serial(ZONE) != serial and time.monotonic() < deadline:
        time.sleep(0.02)
    assert secondary.soa_serial(ZONE) == serial
    for name, rdtype in [(f"_pkgmirror._tcp.{ZONE}", "SRV"), (f"_head._pkgmirror.{ZONE}", "TXT")]:
        assert query(named["secondary"], name, rdtype) == query(named["port"], name, rdtype)
    assert query(named["secondary"], f"_pkgmirror._tcp.{ZONE}", "SRV")


def test_published_records_are_dnssec_signed(named) -> None:
    request = dns.message.make_query(f"_pkgmirror._tcp.{ZONE}", "SRV", want_dnssec=True)
    for port in (named["port"], named["secondary"]):
        answer = dns.query.tcp(request, "127.0.0.1", port=port, timeout=5).answer
        types = {dns.rdatatype.to_text(rrset.rdtype) for rrset in answer}
        assert types == {"SRV", "RRSIG"}


@pytest.mark.parametrize(
    ("name", "rdtype", "value"),
    [
        ("www", "A", "192.0.2.66"),
        ("_head._pkgmirror", "A", "192.0.2.66"),
        ("@", "TXT", '"v=spf1 -all"'),
        ("x._pkgmirror", "TXT", '"txtvers=2"'),
    ],
)
def test_our_key_outside_our_names_is_refused(named, name: str, rdtype: str, value: str) -> None:
    keyring = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", named["secret"])})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=KEY)
    update.replace(name, 60, rdtype, value)
    assert _send(named, update) == dns.rcode.REFUSED
    assert query(named["port"], f"www.{ZONE}", "A") == ["192.0.2.10"]


def test_another_owner_is_not_overwritten(target) -> None:
    want = [r for r in desired({"mirror1": "fresh"})]
    impostor = records.owner_rrset("another-fleet", ttl=60)
    result = plan(want, target.read_live())
    with pytest.raises(MirrorfleetError, match="ownership marker is not ours"):
        target.apply(result, impostor, owner_is_live=True)


def test_unreachable_server_is_a_clear_error(named) -> None:
    dead = rfc2136.Rfc2136Provider(
        ZONE, "127.0.0.1", KEY, named["secret"], port=free_port(), timeout=1
    )
    with pytest.raises(MirrorfleetError, match=r"zone transfer .* failed"):
        dead.read_live()


def test_cli_plan_apply_show(named, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    stamp = json.loads(Stamp(serial=9, ts=1_700_000_900, origin="origin", expires=2**32).sign(key))
    mirrors = [asdict(m) for m in fleet({"mirror3": "fresh"})]
    (tmp_path / "state.json").write_text(json.dumps({"stamp": stamp, "mirrors": mirrors}))
    (tmp_path / "tsig.key").write_text(named["secret"] + "\n")
    (tmp_path / "dns.toml").write_text(
        f'zone = "{ZONE}"\nserver = "127.0.0.1"\nport = {named["port"]}\n'
        f'key_name = "{KEY}"\nkey_file = "{tmp_path / "tsig.key"}"\nowner = "fleet-test"\n'
    )
    args = ["--config", str(tmp_path / "dns.toml")]

    def cli(*argv: str) -> dict | list:
        proc = subprocess.run(
            [MIRRORFLEET, "dns", *argv, *args, "--json"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    state = ["--state", str(tmp_path / "state.json")]
    planned = cli("plan", *state)
    assert "mirror3._meta._pkgmirror TXT" in planned["create"]
    assert "_head._pkgmirror TXT" in planned["update"]
    # mirror1 and mirror2 leave the fleet at once, mirror3 joins: all of it withdrawn
    refused = subprocess.run(
        [MIRRORFLEET, "dns", "apply", *state, *args], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "withdraws 2 of 2 listed mirrors" in refused.stderr
    assert cli("apply", *state, "--force")["messages"] == 1
    assert cli("apply", *state)["messages"] == 0
    shown = {(r["name"], r["rdtype"]) for r in cli("show")}
    assert ("mirror3._meta._pkgmirror", "TXT") in shown and ("www", "A") not in shown
    head = query(named["port"], f"_head._pkgmirror.{ZONE}", "TXT")[0]
    fields = records.parse_txt(s.encode() for s in head.strip('"').split('" "'))
    parsed, signature, _kid = records.stamp_from_head(fields)
    key.public_key().verify(signature, records.signed_bytes(parsed))  # the origin's signature


def test_cli_bad_state_is_one_line(named, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"mirrors": []}')
    (tmp_path / "dns.toml").write_text(
        'zone = "x."\nserver = "127.0.0.1"\nkey_name = "k"\nkey_file = "/nonexistent"\n'
    )
    proc = subprocess.run(
        [
            MIRRORFLEET,
            "dns",
            "plan",
            "--config",
            str(tmp_path / "dns.toml"),
            "--state",
            str(tmp_path / "state.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "fleet state is malformed" in proc.stderr and "Traceback" not in proc.stderr


def test_a_thousand_mirror_fleet_publishes_and_settles(tmp_path: Path) -> None:
    """Too big for one DNS message: packed into several, each accepted; then idle."""
    regions = [f"r{i}" for i in range(10)]
    mirrors = demo_fleet.mirrors(1000, regions=10)
    stamp = Stamp(serial=5, ts=1_700_000_000, origin="origin", expires=2**32)
    head = records.head_rrset(stamp, b"\x01" * 64, "0123456789abcdef", ttl=60)
    want = records.desired_records(ZONE, head, mirrors, owner="fleet-test")
    with LoopbackBind(tmp_path, ZONE, regions=tuple(regions)) as server:
        target = server.provider(timeout=30)
        owner = next(r for r in want if r.name == records.OWNER)
        first = plan(want, target.read_live())
        messages = target.apply(first, owner, owner_is_live=False)
        assert messages > 1 and len(first.creates) == len(want)
        assert plan(want, target.read_live()).empty
        assert len(query(server.primary.port, f"_pkgmirror._tcp.r9.{ZONE}", "SRV")) == 100


def test_targets_inside_the_zone_compare_equal_after_a_read(tmp_path: Path) -> None:
    """A mirror named inside the published zone must not look changed every cycle."""
    inside = MirrorRecord(
        label="m1",
        target=f"m1.{ZONE.rstrip('.')}",
        state="fresh",
        serial=5,
        ts=1_700_000_000,
        chk=1_700_000_060,
        url="http://m1/",
    )
    stamp = Stamp(serial=5, ts=1_700_000_000, origin="origin", expires=2**32)
    head = records.head_rrset(stamp, b"\x01" * 64, "0123456789abcdef", ttl=60)
    want = records.desired_records(ZONE, head, [inside], owner="fleet-test")
    with LoopbackBind(tmp_path, ZONE) as server:
        target = server.provider()
        owner = next(r for r in want if r.name == records.OWNER)
        target.apply(plan(want, target.read_live()), owner, owner_is_live=False)
        assert plan(want, target.read_live()).empty
