"""The monitor against real parts on loopback: mirror trees served over HTTP, content
signed by the real origin code, and a real BIND primary taking its updates.

Steps run in file order on one fleet of three mirrors; each step changes the
mirrors' trees the way a real fault would and checks what DNS and status.json say.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dns.resolver
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.config import DnsConfig, MonitorConfig
from mirrorfleet.monitor.daemon import Monitor, serve
from mirrorfleet.notify.ping import HEADER, WINDOW, auth_header, send_ping
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.loopback_fleet import LoopbackFleet, loopback_monitor
from mirrorfleet.testing.loopback_route53 import dummy_aws_env, moto_route53
from mirrorfleet.tree.keys import SecretsDir, init_secrets, read_secret
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
ZONE = "mirrors.test."
SRV = f"_pkgmirror._tcp.{ZONE}"
MIRRORS = ("m1", "m2", "m3")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[LoopbackFleet, LoopbackBind, Path]]:
    root = tmp_path_factory.mktemp("monitor")
    init_secrets(root / "secrets")
    fleet = LoopbackFleet(root, SecretsDir(root / "secrets"), MIRRORS)
    try:
        with LoopbackBind(root / "bind", ZONE) as bind:
            yield fleet, bind, root
    finally:
        fleet.close()


def make_monitor(world, **overrides) -> Monitor:
    fleet, bind, root = world
    settings = {"lag_grace": 0, "interval": 3600, "listen": f"127.0.0.1:{free_port()}"}
    return loopback_monitor(fleet, bind, root / "status", **{**settings, **overrides})


@pytest.fixture(scope="module")
def monitor(world) -> Monitor:
    monitor = make_monitor(world)
    monitor.restore()
    return monitor


def full_round(monitor: Monitor) -> None:
    monitor.round(set(MIRRORS), refresh_head=True)


def answer(bind: LoopbackBind, name: str, rdtype: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], bind.primary.port, 5
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def srv(bind: LoopbackBind) -> dict[str, int]:
    """SRV target label -> priority."""
    return {v.split()[3].split(".")[0]: int(v.split()[0]) for v in answer(bind, SRV, "SRV")}


def meta(bind: LoopbackBind, label: str) -> str:
    return " ".join(answer(bind, f"{label}._meta._pkgmirror.{ZONE}", "TXT"))


def states(root: Path) -> dict[str, tuple[str, str]]:
    data = json.loads((root / "status" / "status.json").read_text())
    return {m["label"]: (m["state"], m["published"]) for m in data["mirrors"]}


def test_first_round_lists_every_mirror_fresh(world, monitor: Monitor) -> None:
    _, bind, root = world
    full_round(monitor)
    assert srv(bind) == {"m1": 10, "m2": 10, "m3": 10}
    assert '"serial=1"' in " ".join(answer(bind, f"_head._pkgmirror.{ZONE}", "TXT"))
    assert states(root) == {m: ("fresh", "fresh") for m in MIRRORS}


def test_a_mirror_that_misses_a_publish_lags(world, monitor: Monitor) -> None:
    fleet, bind, root = world
    assert fleet.release("2.0") == 2
    fleet.sync("m1")
    fleet.sync("m2")
    full_round(monitor)
    assert srv(bind) == {"m1": 10, "m2": 10, "m3": 20}
    assert '"st=lagging"' in meta(bind, "m3") and '"serial=1"' in meta(bind, "m3")
    status = json.loads((root / "status" / "status.json").read_text())
    m3 = next(m for m in status["mirrors"] if m["label"] == "m3")
    assert (m3["lag_serials"], m3["state"]) == (1, "lagging")


def test_it_is_fresh_again_once_it_syncs(world, monitor: Monitor) -> None:
    fleet, bind, _ = world
    fleet.sync("m3")
    full_round(monitor)
    assert srv(bind) == {"m1": 10, "m2": 10, "m3": 10}


def test_a_forged_stamp_is_withdrawn_at_once(world, monitor: Monitor) -> None:
    fleet, bind, _ = world
    forged = Stamp.new(2, "origin").sign(Ed25519PrivateKey.generate())
    (fleet.tree("m2") / STAMP_PATH).write_bytes(forged)
    full_round(monitor)
    assert srv(bind) == {"m1": 10, "m3": 10}
    assert '"st=down"' in meta(bind, "m2")
    assert "rejected" in (monitor.health["m2"].last.error or "")


def test_a_forged_stamp_never_comes_back_fresh(world, monitor: Monitor) -> None:
    _, bind, _ = world
    full_round(monitor)
    full_round(monitor)
    assert "m2" not in srv(bind)


@pytest.mark.parametrize("missing", ["packages", "simple"])
def test_a_tree_with_missing_files_is_withdrawn(world, monitor: Monitor, missing: str) -> None:
    fleet, bind, _ = world
    fleet.sync("m2")
    full_round(monitor)
    full_round(monitor)  # two good probes bring m2 back
    assert srv(bind) == {"m1": 10, "m2": 10, "m3": 10}
    shutil.rmtree(fleet.tree("m1") / missing)
    full_round(monitor)
    assert "m1" not in srv(bind), monitor.health["m1"].last
    assert "spot check" in (monitor.health["m1"].last.error or "")
    fleet.sync("m1")


def test_every_mirror_down_keeps_the_last_published_set(world, monitor: Monitor) -> None:
    fleet, bind, root = world
    full_round(monitor)
    full_round(monitor)
    before = srv(bind)
    assert before == {"m1": 10, "m2": 10, "m3": 10}
    for label in MIRRORS:
        fleet.tree(label).rename(fleet.tree(label).with_name(f"{label}.off"))
    try:
        full_round(monitor)
        assert srv(bind) == before
        assert states(root) == {m: ("down", "held") for m in MIRRORS}
    finally:
        for label in MIRRORS:
            fleet.tree(label).with_name(f"{label}.off").rename(fleet.tree(label))


def test_a_restart_rebuilds_state_from_dns(world, monitor: Monitor) -> None:
    fleet, bind, root = world
    (fleet.tree("m3") / STAMP_PATH).write_bytes(
        Stamp.new(2, "origin").sign(Ed25519PrivateKey.generate())
    )
    full_round(monitor)
    full_round(monitor)
    assert srv(bind) == {"m1": 10, "m2": 10}
    samples = len(json.loads((root / "status" / "history.json").read_text())["samples"])
    fleet.sync("m3")  # it is good again, but a new monitor must not trust it on sight
    soa_before = bind.primary.soa_serial(ZONE)
    reborn = make_monitor(world)
    reborn.restore()
    assert reborn.head is not None and reborn.head.stamp.serial == 2
    assert {k: h.state for k, h in reborn.health.items()} == {
        "m1": "fresh",
        "m2": "fresh",
        "m3": "down",
    }
    full_round(reborn)
    assert srv(bind) == {"m1": 10, "m2": 10}  # one good probe is not enough to return
    assert bind.primary.soa_serial(ZONE) == soa_before
    assert len(reborn.history.samples) >= samples
    full_round(reborn)
    assert srv(bind) == {"m1": 10, "m2": 10, "m3": 10}


def test_notifications_are_authenticated_and_trigger_a_probe(world) -> None:
    fleet, bind, _ = world
    monitor = make_monitor(world)
    server, loop = serve(monitor)
    url = f"http://{monitor.config.listen}/ping"
    try:
        wait_for(lambda: monitor.snapshot.get("mirrors"), 10)
        assert fleet.release("3.0") == 3
        stranger = send_ping(url, b"not the secret", {"event": "publish", "from": "origin"})
        assert stranger == 401
        assert send_ping(url, read_secret(fleet.secrets.ping_secret), {"event": "publish"}) == 202
        wait_for(
            lambda: '"serial=3"' in " ".join(answer(bind, f"_head._pkgmirror.{ZONE}", "TXT")), 10
        )
        fleet.sync("m1")
        ping = {"event": "synced", "serial": 3, "from": "m1.example.net"}
        assert send_ping(url, read_secret(fleet.secrets.ping_secret), ping) == 202
        wait_for(lambda: '"serial=3"' in meta(bind, "m1"), 10)
        with urllib.request.urlopen(f"http://{monitor.config.listen}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        state = 'mirrorfleet_monitor_mirror_state{mirror="m1",mirrorfleet_monitor_mirror_state'
        assert f'{state}="fresh"}} 1.0' in metrics
        assert 'mirrorfleet_monitor_pings_total{verdict="rejected"} 1.0' in metrics
        shown = cli("monitor", "status", "--url", f"http://{monitor.config.listen}/status.json")
        assert shown.returncode == 0 and "m1" in shown.stdout and "fresh" in shown.stdout
        as_json = cli(
            "monitor", "status", "--json", "--url", f"http://{monitor.config.listen}/status.json"
        )
        assert [m["label"] for m in json.loads(as_json.stdout)["mirrors"]] == list(MIRRORS)
    finally:
        monitor.stop()
        loop.join(10)
        server.shutdown()
        server.server_close()
    for label in ("m2", "m3"):
        fleet.sync(label)


def post_ping(url: str, body: bytes, header: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={HEADER: header})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_replayed_stale_or_altered_notification_is_refused(world) -> None:
    """An attacker on the path who saw one good ping can neither replay it, nor send
    it late, nor change what it says."""
    fleet, _, _ = world
    monitor = make_monitor(world)
    server, loop = serve(monitor)
    url = f"http://{monitor.config.listen}/ping"
    secret = read_secret(fleet.secrets.ping_secret)
    body = json.dumps({"event": "publish", "from": "origin"}).encode()
    try:
        header = auth_header(secret, body)
        assert post_ping(url, body, header) == 202
        assert post_ping(url, body, header) == 401  # the same nonce again
        stale = auth_header(secret, body, now=time.time() - 2 * WINDOW)
        assert post_ping(url, body, stale) == 401
        fresh = auth_header(secret, body)
        assert post_ping(url, body.replace(b"origin", b"m1.example.net"), fresh) == 401
        assert post_ping(url, body, fresh) == 202  # the untouched one still goes through
        with urllib.request.urlopen(f"http://{monitor.config.listen}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'mirrorfleet_monitor_pings_total{verdict="rejected"} 3.0' in metrics
        assert 'mirrorfleet_monitor_pings_total{verdict="accepted"} 2.0' in metrics
    finally:
        monitor.stop()
        loop.join(10)
        server.shutdown()
        server.server_close()


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([MIRRORFLEET, *argv], capture_output=True, text=True, timeout=60)


def test_monitor_status_without_a_monitor_is_one_clear_line() -> None:
    proc = cli("monitor", "status", "--url", f"http://127.0.0.1:{free_port()}/status.json")
    assert proc.returncode == 1
    assert "no monitor status at" in proc.stderr and "Traceback" not in proc.stderr


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.05)


def test_the_same_monitor_publishes_to_route53(world, tmp_path: Path) -> None:
    """The daemon is backend-agnostic: a moto server (real HTTP) in Route 53's place."""
    fleet, _, root = world
    with dummy_aws_env(), moto_route53(tmp_path / "moto.log") as url:
        client = boto3.client("route53", endpoint_url=url, region_name="us-east-1")
        created = client.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)
        zone_id = created["HostedZone"]["Id"].split("/")[-1]
        dns_config = DnsConfig(
            zone=ZONE, provider="route53", hosted_zone_id=zone_id, endpoint_url=url
        )
        config = MonitorConfig(
            fleet=root / "unused-fleet.toml",
            ping_secret=fleet.secrets.ping_secret,
            status_dir=tmp_path / "status",
            lag_grace=0,
        )
        monitor = Monitor(config, fleet.config(), dns_config)
        monitor.restore()
        full_round(monitor)
        sets = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        srv_set = next(s for s in sets if s["Type"] == "SRV" and s["Name"] == SRV)
        targets = sorted(r["Value"].split()[3] for r in srv_set["ResourceRecords"])
        assert targets == [f"{m}.example.net." for m in MIRRORS]
        assert monitor.dns_status["error"] is None
