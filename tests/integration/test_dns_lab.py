"""DNS and the monitor on real hosts: the dns role's BIND primary and secondary, the
monitor daemon demoting, withdrawing and holding mirrors as real faults hit them,
its status page in headless Chromium, and the servers refusing every writer but the
monitor.

Steps run in file order on one lab of 6 hosts; each step leaves the fleet healthy.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import dns.xfr
import dns.zone
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from labkit import (
    AS_SERVICE,
    ZONE,
    changed_operations,
    dns_answer,
    listed,
    meta,
    monitor_states,
    monitor_status,
    publish,
    soa_serial,
    syncs_held,
)

from mirrorfleet.lab.inventory import public_name
from mirrorfleet.testing.headless import render_dom
from mirrorfleet.tree.keys import MONITOR_TSIG, TRANSFER_TSIG, SecretsDir
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone.plan import CHK_REFRESH

pytestmark = pytest.mark.lab

LAB, SUBNET = "dn", "10.237.0.0/24"
SRV_NAME = f"_pkgmirror._tcp.{ZONE}"
INTERVAL = 5.0  # monitor_interval in dns_topology.toml
SETTLE = 30.0  # a change reaching DNS (sync, two good probes, update)
SECONDARY_TIMEOUT = 5.0
ROUND = 2 * INTERVAL + 10  # a round that starts after now has ended, on a loaded machine


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(LAB, SUBNET)
    lab.up("--topology", str(Path(__file__).with_name("dns_topology.toml")))
    lab.pyinfra("deploy.py")
    return lab


@pytest.fixture(scope="module")
def secrets(lab) -> SecretsDir:
    return SecretsDir(Path(lab.state["ssh_config"]).with_name("secrets"))


def test_primary_and_secondary_serve_the_signed_zone(lab) -> None:
    assert soa_serial(lab, "dns1") == soa_serial(lab, "dns2")
    for server in ("dns1", "dns2"):
        assert dns_answer(lab, server, ZONE, "DNSKEY"), f"{server} serves no DNSKEY"
    conf = lab.check("dns1", "named-checkconf", "-z", "/etc/bind/named.conf")
    assert "mirrors.lab.test" in conf


def head_serial(lab, server: str = "dns1") -> int | None:
    values = dns_answer(lab, server, f"_head._pkgmirror.{ZONE}", "TXT")
    match = re.search(r'"serial=(\d+)"', " ".join(values))
    return int(match.group(1)) if match else None


def page_rows(lab) -> dict[str, str]:
    """The status page as Chromium renders it: mirror -> data-state of its row."""
    rows: dict[str, str] = {}

    class Rows(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            if tag == "tr" and found.get("data-mirror"):
                rows[str(found["data-mirror"])] = str(found.get("data-state"))

    Rows().feed(render_dom(f"http://{lab.address('monitor')}/"))
    return rows


def test_fleet_names_resolve_through_the_fleets_dns(lab) -> None:
    """issue 17: every host's public name has its A record (the dns role writes them
    from the inventory), served by both servers, and a lab host resolves it there:
    not through /etc/hosts, which holds only the bare names."""
    for host in ("origin", "mirror1", "mirror2", "monitor", "dns1", "dns2"):
        name = public_name(host)
        for server in ("dns1", "dns2"):
            assert dns_answer(lab, server, name, "A") == [lab.address(host)], (server, name)
        assert lab.check("monitor", "getent", "hosts", name).split()[0] == lab.address(host)
    assert ZONE.rstrip(".") not in lab.check("monitor", "cat", "/etc/hosts")
    assert dns_answer(lab, "dns2", public_name("nowhere"), "A") == []


def test_the_monitor_publishes_every_mirror_on_both_servers(lab) -> None:
    lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "5")
    serial = publish(lab)
    expected = {"mirror1": 10, "mirror2": 10}
    lab.wait_for(lambda: listed(lab) == expected and head_serial(lab) == serial, SETTLE)
    lab.wait_for(lambda: listed(lab, "dns2") == expected, SECONDARY_TIMEOUT)
    assert f'"serial={serial}"' in meta(lab, "mirror1", "dns2")
    assert '"st=fresh"' in meta(lab, "mirror2", "dns2")


def test_pip_installs_from_the_mirror_that_pick_prints(lab, secrets) -> None:
    """A client on a lab host: `mirrorfleet pick` against the secondary, validating
    DNSSEC with the zone's key as the trust anchor, then pip."""
    key = secrets.public_key.read_text().strip()
    anchor = lab.check("dns1", "sh", "-c", "cat /var/lib/bind/keys/K*.key")
    lab.check("monitor", "sh", "-c", "cat > /tmp/anchor.key", input_text=anchor)
    pick = ("mirrorfleet", "pick", "--zone", ZONE, "--server", lab.address("dns2"), "--key", key)
    url = lab.check("monitor", *pick, "--dnssec", "/tmp/anchor.key").strip()
    assert url in (f"http://{public_name('mirror1')}/", f"http://{public_name('mirror2')}/")
    host = url.split("/")[2]
    lab.check("monitor", "python3", "-m", "venv", "/tmp/picked")
    pip = ("/tmp/picked/bin/pip", "install", "--isolated", "--no-cache-dir", "-q")
    lab.check("monitor", *pip, "--index-url", f"{url}simple/", "--trusted-host", host, "demo-00001")
    version = lab.check("monitor", "/tmp/picked/bin/python", "-c", "import demo_00001; print(1)")
    assert version.strip() == "1"


def test_the_infra_suite_passes_on_every_role(lab) -> None:
    """mirrorfleet.checks against this lab: common, origin, mirror, dns and monitor."""
    proc = lab.infra_suite("-rA")
    assert proc.returncode == 0, proc.stdout[-3000:]
    modules = ("test_common", "test_origin", "test_mirror", "test_serve_tree", "test_dns")
    for module in (*modules, "test_monitor"):
        assert f"PASSED src/mirrorfleet/checks/{module}.py::" in proc.stdout, module
    assert "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-1500:]


def test_mirrorfleet_verify_reports_in_junit(lab, tmp_path: Path) -> None:
    """The operator's command: the same suite, readable output, and JUnit XML for CI."""
    junit = tmp_path / "verify.xml"
    mirrorfleet = str(Path(sys.executable).with_name("mirrorfleet"))
    proc = lab.run(
        mirrorfleet, "verify", "inventories/lab.py", "--junit", str(junit), "-k", "dns", timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", 0)) >= 20 and suite.get("failures") == "0", suite.attrib
    cases = {case.get("classname", "") for case in suite.iter("testcase")}
    assert "mirrorfleet.checks.test_dns" in cases, cases


def test_the_infra_suite_catches_a_readable_tsig_key(lab) -> None:
    """A test of the tests: the secondary's key file opened to everyone must fail."""
    lab.check("dns2", "chmod", "0644", "/etc/bind/mirrorfleet-keys.conf")
    try:
        proc = lab.infra_suite("-k", "private")
        assert proc.returncode == 1, proc.stdout[-2000:]
        failed = [line.split(" - ")[0] for line in proc.stdout.splitlines() if "FAILED" in line]
        assert failed == [
            "FAILED src/mirrorfleet/checks/test_dns.py::test_keys_are_private_to_bind[ssh://dns2]"
        ], failed
        assert "('bind', 420) == ('bind', 384)" in proc.stdout  # 0644, not 0600
    finally:
        lab.check("dns2", "chmod", "0600", "/etc/bind/mirrorfleet-keys.conf")


def next_round(lab) -> None:
    """Wait until a monitor round that began after now is over: every mirror probed
    since, and so (status.json is written last in a round) that round's DNS update
    made."""
    since = math.ceil(time.time())
    lab.wait_for(
        lambda: all((m["last_probe"] or 0) >= since for m in monitor_status(lab)["mirrors"]),
        ROUND,
    )


def chk_times(lab) -> dict[str, int]:
    """mirror -> the chk= time its meta record in DNS carries."""
    found = {}
    for mirror in ("mirror1", "mirror2"):
        match = re.search(r'"chk=(\d+)"', meta(lab, mirror))
        assert match, f"{mirror} has no meta record"
        found[mirror] = int(match.group(1))
    return found


def test_an_idle_fleet_sends_no_updates(lab) -> None:
    """Three rounds with nothing new send no update: the SOA serial stays.

    An idle monitor sends one update on purpose: a meta record whose chk= is
    CHK_REFRESH seconds old is rewritten at its next probe. The watch starts where no
    such refresh falls due within it (after waiting out one that would), so the SOA
    changes only if the monitor sent something it should not have.
    """
    watch = 5 * INTERVAL + 10  # three rounds, the wait for the first, a loaded machine
    for _ in range(3):  # one refresh per mirror at most, then a clear window
        checks = chk_times(lab)
        due = min(checks.values()) + CHK_REFRESH
        if due > time.time() + watch:
            break
        lab.wait_for(
            lambda checks=checks: min(chk_times(lab).values()) > min(checks.values()),
            max(0.0, due - time.time()) + ROUND,
        )
    else:
        pytest.fail(f"no window of {watch}s free of chk= refreshes: {chk_times(lab)}")
    before, checks = soa_serial(lab, "dns1"), chk_times(lab)
    for _ in range(3):
        next_round(lab)
    assert chk_times(lab) == checks, "a chk= refresh fell in the window after all"
    assert soa_serial(lab, "dns1") == before


def test_the_status_page_shows_every_mirror(lab) -> None:
    assert page_rows(lab) == {"mirror1": "fresh", "mirror2": "fresh"}
    data = monitor_status(lab)
    assert data["head"]["serial"] == head_serial(lab)
    assert {m["tier"] for m in data["mirrors"]} == {1}


@pytest.mark.parametrize(
    ("host", "port", "metric"),
    [
        ("monitor", 8874, 'mirrorfleet_monitor_mirror_lag_serials{mirror="mirror1"} 0.0'),
        ("monitor", 8874, "mirrorfleet_monitor_head_serial"),
        ("mirror1", 8873, "mirrorfleet_agent_serial"),
    ],
)
def test_metrics_answer_over_http(lab, host: str, port: int, metric: str) -> None:
    with urllib.request.urlopen(f"http://{lab.address(host)}:{port}/metrics", timeout=5) as r:
        assert metric in r.read().decode()


def test_a_mirror_whose_agent_stops_lags_within_two_intervals(lab) -> None:
    with syncs_held(lab, "mirror2"):
        serial = publish(lab, "--force")
        took = lab.wait_for(
            lambda: (
                listed(lab) == {"mirror1": 10, "mirror2": 20}
                and '"st=lagging"' in meta(lab, "mirror2")
            ),
            2 * INTERVAL,
        )
        print(f"mirror2 lagging in DNS {took:.1f}s after publish")
        assert f'"serial={serial}"' in meta(lab, "mirror1")
        assert page_rows(lab)["mirror2"] == "lagging"
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


def test_a_mirror_whose_nginx_stops_is_withdrawn(lab) -> None:
    lab.check("mirror2", "systemctl", "stop", "nginx.service")
    try:
        lab.wait_for(lambda: listed(lab) == {"mirror1": 10}, 3 * INTERVAL)
        assert '"st=down"' in meta(lab, "mirror2")
    finally:
        lab.check("mirror2", "systemctl", "start", "nginx.service")
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


def test_every_mirror_stopped_keeps_the_last_set(lab) -> None:
    before = listed(lab)
    for mirror in ("mirror1", "mirror2"):
        lab.check(mirror, "systemctl", "stop", "nginx.service")
    try:
        lab.wait_for(lambda: set(monitor_states(lab).values()) == {"down"}, 3 * INTERVAL)
        next_round(lab)  # a round that finds every mirror down again, and holds them
        assert listed(lab) == before
        assert {m["published"] for m in monitor_status(lab)["mirrors"]} == {"held"}
        assert page_rows(lab) == {"mirror1": "down", "mirror2": "down"}
    finally:
        for mirror in ("mirror1", "mirror2"):
            lab.check(mirror, "systemctl", "start", "nginx.service")
    lab.wait_for(lambda: set(monitor_states(lab).values()) == {"fresh"}, SETTLE)


def never_fresh_after(lab, label: str, since: float) -> None:
    """Once the monitor has probed `label` after `since`, it stays down for two rounds."""

    def probed_down() -> bool:
        mirror = next(m for m in monitor_status(lab)["mirrors"] if m["label"] == label)
        return (mirror["last_probe"] or 0) > since and mirror["state"] == "down"

    lab.wait_for(probed_down, 2 * INTERVAL)
    deadline = time.monotonic() + 2 * INTERVAL
    while time.monotonic() < deadline:
        assert monitor_states(lab)[label] == "down"
        assert label not in listed(lab)
        time.sleep(0.5)


def test_a_forged_stamp_is_never_fresh(lab) -> None:
    with syncs_held(lab, "mirror1"):
        forged = Stamp.new(head_serial(lab) or 1, "origin").sign(Ed25519PrivateKey.generate())
        since = time.time()
        lab.check(
            "mirror1",
            "sh",
            "-c",
            "cat > /srv/mirror/.mirror/stamp.json",
            input_text=forged.decode(),
        )
        never_fresh_after(lab, "mirror1", since)
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


# Files removed from mirror1's tree behind its agent's back, and what the monitor
# then says (None: any reason): the content itself, or only the `.metadata` files the
# pages advertise, on which pip stops with a 404.
REMOVALS = {
    "the content": ("rm -rf /srv/mirror/packages/*", None),
    "the advertised .metadata": (
        "rm /srv/mirror/packages/*/*.metadata",
        ".metadata answers HTTP 404",
    ),
}


@pytest.mark.parametrize("removed", REMOVALS)
def test_a_tree_with_missing_files_is_never_fresh(lab, removed: str) -> None:
    command, reason = REMOVALS[removed]
    with syncs_held(lab, "mirror1"):
        since = time.time()
        lab.check("mirror1", "sh", "-c", command)
        never_fresh_after(lab, "mirror1", since)
        if reason is not None:
            assert reason in mirror_row(lab, "mirror1")["error"]
    # a sync by the records copies only what changed upstream: the repair is the
    # audit's walk (the daily timer's service, started here)
    lab.check("mirror1", "systemctl", "start", "mirrorfleet-audit.service")
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


SITE = "/etc/nginx/sites-available/mirrorfleet.conf"
# nginx misconfigured the ways that fail pip and uv while stamp and pages stay right
SITE_FAULTS = {
    # at server level: an `if` in location /simple/ does not reach its nested locations
    "403 on JSON": (
        "server_tokens off;",
        'server_tokens off;\n    if ($http_accept ~* "json") { return 403; }',
    ),
    "a wrong type": (
        "default_type application/vnd.pypi.simple.v1+json;",
        "default_type application/octet-stream;",
    ),
}


@pytest.mark.parametrize("fault", SITE_FAULTS)
def test_a_mirror_that_would_fail_pip_and_uv_is_never_fresh(lab, fault: str) -> None:
    old, new = SITE_FAULTS[fault]
    lab.check("mirror1", "cp", "-p", SITE, "/root/site.conf")
    try:
        site = lab.check("mirror1", "cat", SITE)
        assert old in site
        lab.check("mirror1", "sh", "-c", f"cat > {SITE}", input_text=site.replace(old, new))
        lab.check("mirror1", "sh", "-c", "nginx -t -q && systemctl reload nginx.service")
        since = time.time()
        never_fresh_after(lab, "mirror1", since)
        assert "pip gets" in mirror_row(lab, "mirror1")["error"]
        metrics = urllib.request.urlopen(
            f"http://{lab.address('monitor')}:8874/metrics", timeout=5
        ).read()
        # prometheus-client writes the labels sorted by name
        assert b'bad_answers_total{check="clients",mirror="mirror1"}' in metrics
    finally:
        lab.check("mirror1", "cp", "-p", "/root/site.conf", SITE)
        lab.check("mirror1", "systemctl", "reload", "nginx.service")
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


def mirror_row(lab, label: str) -> dict:
    return next(m for m in monitor_status(lab)["mirrors"] if m["label"] == label)


def test_restarting_the_monitor_loses_nothing(lab) -> None:
    """Only memory explains what this checks after the restart. mirror2 is down with
    its nginx stopped, so no probe can tell the serial it last served: the monitor
    rebuilds it from the zone. And history.json keeps the samples from before. A
    monitor that started blank shows (and publishes) serial 0 and a new history."""
    lab.check("mirror2", "systemctl", "stop", "nginx.service")
    try:
        lab.wait_for(
            lambda: listed(lab) == {"mirror1": 10} and '"st=down"' in meta(lab, "mirror2"),
            3 * INTERVAL,
        )
        remembered = mirror_row(lab, "mirror2")["serial"]
        assert remembered > 0 and f'"serial={remembered}"' in meta(lab, "mirror2")
        samples = history(lab)
        assert samples, "no history to keep"
        before = published(lab)
        lab.check("monitor", "systemctl", "restart", "mirrorfleet-monitor.service")
        for _ in range(2):  # the first round after the restart, and the next
            next_round(lab)
            row = mirror_row(lab, "mirror2")
            assert (row["state"], row["serial"]) == ("down", remembered), row
            assert published(lab) == before, "the restart changed what DNS says"
        assert monitor_states(lab) == {"mirror1": "fresh", "mirror2": "down"}
        kept = history(lab)
        assert samples[-1] in kept and len(kept) >= len(samples), "history was lost"
    finally:
        lab.check("mirror2", "systemctl", "start", "nginx.service")
    lab.wait_for(lambda: listed(lab) == {"mirror1": 10, "mirror2": 10}, SETTLE)


def published(lab) -> list[str]:
    """Everything the monitor publishes but the check times, which move on their own."""
    names = [SRV_NAME, f"_head._pkgmirror.{ZONE}"]
    names += [f"{m}._meta._pkgmirror.{ZONE}" for m in ("mirror1", "mirror2")]
    values = [
        v
        for name in names
        for v in dns_answer(lab, "dns1", name, "SRV" if name == SRV_NAME else "TXT")
    ]
    return [re.sub(r'"chk=\d+" ', "", v) for v in values]


def history(lab) -> list:
    with urllib.request.urlopen(f"http://{lab.address('monitor')}/history.json", timeout=5) as r:
        return json.loads(r.read())["samples"]


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
        (None, "_head._pkgmirror", "TXT", '"txtvers=2"'),
        (TRANSFER_TSIG, "_head._pkgmirror", "TXT", '"txtvers=2"'),
        (MONITOR_TSIG, "www", "A", "192.0.2.66"),
        (MONITOR_TSIG, "_head._pkgmirror", "A", "192.0.2.66"),
    ],
    ids=["unsigned", "transfer-key", "monitor-key-www", "monitor-key-wrong-type"],
)
def test_the_primary_refuses_writes_outside_the_policy(
    lab, secrets, key, name, rdtype, value
) -> None:
    update = _update(secrets, key, name, rdtype, value)
    response = dns.query.tcp(update, lab.address("dns1"), timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    # the write itself is absent (an SOA watch would also see the monitor's updates)
    assert value not in dns_answer(lab, "dns1", f"{name}.{ZONE}", rdtype)


@pytest.mark.parametrize(
    ("server", "key", "refusal"),
    [("dns1", None, "REFUSED"), ("dns2", None, "REFUSED"), ("dns2", MONITOR_TSIG, "BADKEY")],
    ids=["primary-unsigned", "secondary-unsigned", "secondary-monitor-key"],
)
def test_zone_transfers_need_the_right_key(
    lab, secrets, server: str, key: str | None, refusal: str
) -> None:
    """The server must answer, and answer no: a timeout or any other error is not a
    refusal. BIND refuses an unsigned AXFR (REFUSED), and signs its answer to a key
    it does not know with the TSIG error BADKEY (dnspython's PeerBadKey)."""
    keyring = (
        dns.tsigkeyring.from_text({key: ("hmac-sha256", secrets.tsig_secret(key))}) if key else None
    )
    try:
        dns.zone.from_xfr(
            dns.query.xfr(lab.address(server), ZONE, keyring=keyring, keyname=key, lifetime=10)
        )
    except dns.xfr.TransferError as exc:
        answer = dns.rcode.to_text(exc.rcode)
    except dns.tsig.PeerBadKey:
        answer = "BADKEY"
    else:
        pytest.fail(f"{server} gave the zone away to {key or 'an unsigned request'}")
    assert answer == refusal


def test_a_deploy_rerun_changes_nothing(lab) -> None:
    assert changed_operations(lab.pyinfra("deploy.py")) == []
