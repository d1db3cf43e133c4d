"""The client against real parts on loopback: a BIND primary holding the records the
monitor wrote for a fleet of served trees, read back with dnspython exactly as
`mirrorfleet pick | list | check` read them on a user's machine."""

from __future__ import annotations

import configparser
import json
import os
import random
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.query
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.client.choose import MaxLag, NoFreshMirror, choose
from mirrorfleet.client.discovery import Lookup, LookupFailed, discover, read_more
from mirrorfleet.client.dnssec import TrustAnchor
from mirrorfleet.client.memory import FILE, STATE_ENV, Memory
from mirrorfleet.monitor.daemon import Monitor
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.loopback_fleet import LoopbackFleet, loopback_monitor
from mirrorfleet.tree.changes import changes_path
from mirrorfleet.tree.keys import MONITOR_TSIG, SecretsDir, init_secrets, public_key_text
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
ZONE = "mirrors.test."
MIRRORS = ("m1", "m2", "m3")


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: loopback BIND needs no lab."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[LoopbackFleet, LoopbackBind, Monitor]]:
    root = tmp_path_factory.mktemp("client")
    init_secrets(root / "secrets")
    fleet = LoopbackFleet(root, SecretsDir(root / "secrets"), MIRRORS)
    try:
        with LoopbackBind(root / "bind", ZONE, dnssec=True) as bind:
            monitor = loopback_monitor(fleet, bind, root / "status", lag_grace=0)
            monitor.round(set(MIRRORS), refresh_head=True)
            yield fleet, bind, monitor
    finally:
        fleet.close()


def lookup(world, **changes) -> Lookup:
    fleet, bind, _ = world
    settings = {
        "zone": ZONE,
        "keys": fleet.config().keys,
        "nameservers": ["127.0.0.1"],
        "port": bind.primary.port,
        "timeout": 1.0,
        "lifetime": 3.0,
    }
    return Lookup(**{**settings, **changes})


def key_text(world) -> str:
    return world[0].secrets.public_key.read_text().strip()


def cli(world, *argv: str) -> subprocess.CompletedProcess:
    _, bind, _ = world
    common = ["--zone", ZONE, "--server", "127.0.0.1", "--port", str(bind.primary.port)]
    return subprocess.run(
        [MIRRORFLEET, *argv, *common, "--key", key_text(world), "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_discovery_reads_what_the_monitor_published(world) -> None:
    found = discover(lookup(world))
    assert found.head.serial == 1
    assert {m.target: (m.state, m.serial, m.priority) for m in found.mirrors} == {
        f"{m}.example.net": ("fresh", 1, 10) for m in MIRRORS
    }
    assert found.warnings == ()


def test_pick_proves_freshness_with_the_mirrors_stamp(world) -> None:
    fleet, _, _ = world
    found = discover(lookup(world))
    choice = choose(found, fleet.config().keys, rng=random.Random(1))
    assert choice.stamp.serial == found.head.serial
    assert choice.mirror.url == f"{fleet.base}/{choice.mirror.target.split('.')[0]}/"
    assert len(choice.fallbacks) == 2


def test_a_lagging_mirror_is_never_picked_by_default(world) -> None:
    fleet, _, monitor = world
    serial = fleet.release("2.0")
    fleet.sync("m1")
    fleet.sync("m2")
    monitor.round(set(MIRRORS), refresh_head=True)
    found = discover(lookup(world))
    states = {m.target: m.state for m in found.mirrors}
    assert states["m3.example.net"] == "lagging" and found.head.serial == serial
    picks = {
        choose(found, fleet.config().keys, rng=random.Random(seed)).mirror.target
        for seed in range(30)
    }
    assert picks == {"m1.example.net", "m2.example.net"}


def test_max_lag_admits_a_mirror_one_serial_behind_after_the_fresh_ones(world) -> None:
    fleet, _, _ = world
    found = discover(lookup(world))
    strict = choose(found, fleet.config().keys, rng=random.Random(0))
    assert "m3.example.net" not in [m.target for m in strict.fallbacks]
    relaxed = choose(found, fleet.config().keys, MaxLag(serials=1), random.Random(0))
    assert [m.target for m in relaxed.fallbacks][-1] == "m3.example.net"  # priority 20 last


def unchanged_project(fleet: LoopbackFleet) -> str:
    """A project the releases in these tests never touch."""
    names = sorted(p.name for p in (fleet.origin.tree / "simple").iterdir() if p.is_dir())
    return next(n for n in names if n != "demo-0000")


@pytest.mark.parametrize(("changed", "accepted"), [(False, True), (True, False)])
def test_per_project_a_mirror_behind_is_fine_unless_the_project_changed(
    world, changed: bool, accepted: bool
) -> None:
    fleet, _, _ = world
    project = "demo-0000" if changed else unchanged_project(fleet)
    found = discover(lookup(world))
    m3 = next(m for m in found.mirrors if m.target == "m3.example.net")
    assert m3.serial == found.head.serial - 1
    choice = choose(found, fleet.config().keys, rng=random.Random(0), projects=[project])
    considered = [choice.mirror.target, *(m.target for m in choice.fallbacks)]
    assert ("m3.example.net" in considered) == accepted
    skipped = dict(choice.skipped)
    if not accepted:
        assert skipped["m3.example.net"] == "demo-0000 changed since serial 1"
    proc = cli(world, "check", "--mirror", f"{fleet.base}/m3/", "--for", project)
    assert proc.returncode == (0 if accepted else 1), proc.stdout + proc.stderr


def test_a_forged_change_record_is_refused(world) -> None:
    """A record for another serial, or signed by another key, never says "unchanged"."""
    fleet, _, _ = world
    found = discover(lookup(world))
    head = found.head.serial
    record = fleet.tree("m1") / changes_path(head)
    original = record.read_bytes()
    sources = ("m1", "m2")
    try:
        for label in sources:
            older = fleet.tree(label) / changes_path(head - 1)
            (fleet.tree(label) / changes_path(head)).write_bytes(older.read_bytes())
        choice = choose(
            found, fleet.config().keys, rng=random.Random(0), projects=[unchanged_project(fleet)]
        )
        assert "change records unavailable" in dict(choice.skipped)["m3.example.net"]
    finally:
        for label in sources:
            (fleet.tree(label) / changes_path(head)).write_bytes(original)


def test_a_mirror_whose_stamp_is_older_than_dns_says_is_skipped(world) -> None:
    """DNS may say fresh; the stamp the mirror serves decides."""
    fleet, _, _ = world
    found = discover(lookup(world))
    forged = Stamp.new(found.head.serial, "origin").sign(Ed25519PrivateKey.generate())
    (fleet.tree("m1") / STAMP_PATH).write_bytes(forged)
    try:
        for seed in range(10):
            choice = choose(found, fleet.config().keys, rng=random.Random(seed))
            assert choice.mirror.target == "m2.example.net"
    finally:
        fleet.sync("m1")


def test_no_fresh_mirror_is_one_clear_error(world) -> None:
    found = discover(lookup(world))
    with pytest.raises(NoFreshMirror, match="no fresh mirror"):
        choose(found, [Ed25519PrivateKey.generate().public_key()], rng=random.Random(0))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"zone": "nothing.test."}, "no server could answer|does not exist|REFUSED"),
        ({"region": "mars"}, "does not exist"),
        ({"port": 1}, "no answer|no server could answer"),
    ],
    ids=["other-zone", "unknown-region", "dead-server"],
)
def test_lookup_failures_are_one_line(world, changes: dict, message: str) -> None:
    with pytest.raises(LookupFailed, match=message):
        discover(lookup(world, **changes))


def test_a_head_signed_by_another_key_is_refused(world) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(LookupFailed, match="does not verify"):
        discover(lookup(world, keys=[other]))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"txtvers=2" "st=fresh" "serial=x" "ts=1" "chk=1" "url=http://a/"', "malformed"),
        ('"txtvers=2" "st=gone" "serial=1" "ts=1" "chk=1" "url=http://a/"', "unknown state"),
        ('"txtvers=2" "st=fresh" "serial=1" "ts=1" "chk=1" "url=ftp://a/"', "not an http"),
        ('"txtvers=2" "st=fresh" "serial=1" "ts=1" "chk=1" "url=http://\\195/"', "malformed"),
        ('"junk"', "malformed"),
    ],
    ids=["bad-number", "bad-state", "bad-scheme", "non-ascii", "not-key-value"],
)
def test_a_bad_meta_record_costs_only_that_mirror(world, value: str, problem: str) -> None:
    fleet, bind, monitor = world
    update = dns.update.UpdateMessage(
        ZONE,
        keyring=dns.tsigkeyring.from_text({MONITOR_TSIG: bind.keys[MONITOR_TSIG]}),
        keyname=MONITOR_TSIG,
    )
    update.replace("m2._meta._pkgmirror", 60, "TXT", value)
    assert dns.query.tcp(update, "127.0.0.1", port=bind.primary.port, timeout=5).rcode() == 0
    try:
        found = discover(lookup(world))
        m2 = next(m for m in found.mirrors if m.target == "m2.example.net")
        assert m2.problem and problem in m2.problem
        assert any("m2.example.net" in w for w in found.warnings)
        picks = {
            choose(found, fleet.config().keys, MaxLag(serials=1), random.Random(s)).mirror.target
            for s in range(20)
        }
        assert "m2.example.net" not in picks
    finally:
        monitor.update_zone()  # the monitor rewrites its record
    assert not next(
        m for m in discover(lookup(world)).mirrors if m.target == "m2.example.net"
    ).problem


def test_cli_pick_prints_a_url_and_json_says_why(world) -> None:
    fleet, _, _ = world
    plain = cli(world, "pick", "--seed", "3")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().startswith(fleet.base)
    data = json.loads(cli(world, "pick", "--seed", "3", "--json").stdout)
    assert data["url"] == plain.stdout.strip() and data["serial"] == data["head"]["serial"]
    assert "priority 10" in data["why"]


def test_cli_remembers_what_it_verified_and_refuses_a_rollback(world, tmp_path: Path) -> None:
    """issue 19: the serial a pick verified is kept in the user's state directory; a
    fleet whose head is older than it (a replay, or a frozen fleet) is refused, by
    pick and pip-config alike, until `--forget`."""
    state = Path(os.environ[STATE_ENV])  # this test's own (tests/conftest.py)
    picked = json.loads(cli(world, "pick", "--json").stdout)
    memory = Memory(state / FILE)
    assert memory.serial(ZONE) == picked["serial"]
    memory.remember(ZONE, picked["serial"] + 1)  # as if a newer serial had been seen
    for command in ("pick", "pip-config"):
        refused = cli(world, command)
        assert refused.returncode == 1, refused.stdout
        assert f"older than serial {picked['serial'] + 1} this machine" in refused.stderr
    again = cli(world, "pick", "--forget")
    assert again.returncode == 0, again.stderr
    assert memory.serial(ZONE) == picked["serial"]


def test_cli_list_shows_every_mirror(world) -> None:
    data = json.loads(cli(world, "list", "--json").stdout)
    assert sorted(m["target"] for m in data["mirrors"]) == [f"{m}.example.net" for m in MIRRORS]
    assert {m["lag"] for m in data["mirrors"]} >= {0, 1}


@pytest.mark.parametrize(("label", "fresh"), [("m1", True), ("m3", False)])
def test_cli_check_exits_by_freshness(world, label: str, fresh: bool) -> None:
    fleet, _, _ = world
    url = f"{fleet.base}/{label}/"
    proc = cli(world, "check", "--mirror", url)
    assert proc.returncode == (0 if fresh else 1), proc.stdout + proc.stderr


def test_cli_without_a_fresh_mirror_fails_or_falls_back(world) -> None:
    _, bind, _ = world
    other = public_key_text(Ed25519PrivateKey.generate())
    where = ["--zone", ZONE, "--server", "127.0.0.1", "--timeout", "0.5"]
    failed = subprocess.run(
        [MIRRORFLEET, "pick", *where, "--port", str(bind.primary.port), "--key", other],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1 and "does not verify" in failed.stderr
    assert "Traceback" not in failed.stderr
    fallback = "https://fallback.example/simple/"
    dead = subprocess.run(
        [
            MIRRORFLEET,
            "pick",
            *where,
            "--port",
            str(free_port()),
            "--key",
            key_text(world),
            "--fallback",
            fallback,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.returncode == 0 and dead.stdout.strip() == fallback, dead.stderr
    assert "using --fallback" in dead.stderr


def test_cli_refuses_a_bad_server_before_asking(world) -> None:
    proc = subprocess.run(
        [MIRRORFLEET, "list", "--zone", ZONE, "--server", "ns1", "--key", key_text(world)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not an IP address" in proc.stderr


def test_pip_config_points_pip_at_the_pick_and_keeps_other_settings(world, tmp_path) -> None:
    fleet, bind, _ = world
    config = tmp_path / "pip.conf"
    config.write_text("[global]\ntimeout = 30\n")
    argv = [MIRRORFLEET, "pip-config", "--zone", ZONE, "--server", "127.0.0.1"]
    argv += ["--port", str(bind.primary.port), "--key", key_text(world), "--seed", "1"]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    pip_conf = configparser.ConfigParser()
    pip_conf.read_string(shown.stdout)  # as pip reads it: the [global] line kept
    assert pip_conf["global"]["index-url"].startswith(f"{fleet.base}/m")
    assert pip_conf["global"]["trusted-host"] == "127.0.0.1"
    written = subprocess.run(
        [*argv, "--write"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PIP_CONFIG_FILE": str(config)},
    )
    assert written.returncode == 0, written.stderr
    text = config.read_text()
    assert "timeout = 30" in text and f"index-url = {fleet.base}/m" in text
    env = subprocess.run([*argv, "--format", "env"], capture_output=True, text=True, timeout=60)
    assert "export PIP_INDEX_URL=" in env.stdout and "export UV_DEFAULT_INDEX=" in env.stdout
    assert "export UV_INSECURE_HOST=127.0.0.1" in env.stdout  # the mirrors are plain HTTP
    uv = subprocess.run([*argv, "--format", "uv"], capture_output=True, text=True, timeout=60)
    uv_toml = tomllib.loads(uv.stdout)
    assert uv_toml["allow-insecure-host"] == ["127.0.0.1"]
    assert [i["url"].startswith(f"{fleet.base}/m") and i["default"] for i in uv_toml["index"]] == [
        True
    ]


def anchor_file(world) -> Path:
    """The zone's key-signing key as BIND wrote it: the trust anchor users pin."""
    _, bind, _ = world
    return next((bind.primary.workdir / "keys").glob("K*.key"))


def test_dnssec_validates_every_answer_with_the_pinned_anchor(world) -> None:
    found = discover(lookup(world, anchor=TrustAnchor.from_file(anchor_file(world))))
    assert len(found.mirrors) == len(MIRRORS) and found.warnings == ()
    proc = cli(world, "list", "--json", "--dnssec", str(anchor_file(world)))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["mirrors"]) == len(MIRRORS)


def test_dnssec_with_another_zones_key_fails_the_lookup(world, tmp_path: Path) -> None:
    other = dns.dnssec.make_dnskey(ec.generate_private_key(ec.SECP256R1()).public_key(), 13)
    other = other.replace(flags=257)
    wrong = tmp_path / "anchor.key"
    wrong.write_text(f"{ZONE} IN DNSKEY {other.to_text()}\n")
    with pytest.raises(LookupFailed, match="DNSSEC"):
        discover(lookup(world, anchor=TrustAnchor.from_file(wrong)))
    proc = cli(world, "pick", "--dnssec", str(wrong))
    assert proc.returncode == 1 and "DNSSEC" in proc.stderr and "Traceback" not in proc.stderr


def test_a_pick_reads_more_meta_records_only_when_the_first_ones_fail(world) -> None:
    fleet, _, _ = world
    where = lookup(world)
    rng = random.Random(0)
    found = discover(where, rng, batch=1)
    assert len(found.mirrors) == 1 and len(found.pending) == len(MIRRORS) - 1
    originals = {m: (fleet.tree(m) / STAMP_PATH).read_bytes() for m in ("m1", "m2")}
    forged = Stamp.new(found.head.serial, "origin").sign(Ed25519PrivateKey.generate())
    try:
        for label in originals:
            (fleet.tree(label) / STAMP_PATH).write_bytes(forged)
        reads = []

        def more(current):
            reads.append(len(current.pending))
            return read_more(where, current, 1)

        choice = choose(found, fleet.config().keys, MaxLag(serials=1), rng, more=more)
        assert choice.mirror.target == "m3.example.net"
        assert reads == [2, 1]  # two more reads of one record each
    finally:
        for label, raw in originals.items():
            (fleet.tree(label) / STAMP_PATH).write_bytes(raw)


def test_a_down_mirror_is_neither_listed_nor_picked(world) -> None:
    fleet, _, monitor = world
    off = fleet.tree("m2").with_name("m2.off")
    fleet.tree("m2").rename(off)
    try:
        monitor.round(set(MIRRORS), refresh_head=True)  # a missing stamp: down at once
        found = discover(lookup(world))
        assert "m2.example.net" not in {m.target for m in found.mirrors}
        picks = {
            choose(found, fleet.config().keys, MaxLag(serials=1), random.Random(s)).mirror.target
            for s in range(10)
        }
        assert "m2.example.net" not in picks
        proc = cli(world, "check", "--mirror", f"{fleet.base}/m2/")
        assert proc.returncode == 1 and "not listed" in proc.stdout
    finally:
        off.rename(fleet.tree("m2"))


def test_client_toml_spares_every_option(world, tmp_path: Path) -> None:
    """issue 20: zone, key, server and port written once; `list` and `pick` need no flag."""
    _, bind, _ = world
    config = tmp_path / "client.toml"
    config.write_text(
        f'zone = "{ZONE}"\nkeys = ["{key_text(world)}"]\nservers = ["127.0.0.1"]\n'
        f"port = {bind.primary.port}\ntimeout = 1\n"
    )
    env = {**os.environ, "MIRRORFLEET_CLIENT_CONFIG": str(config)}
    env.pop("MIRRORFLEET_KEY", None)
    listed = subprocess.run(
        [MIRRORFLEET, "list", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert listed.returncode == 0, listed.stderr
    by_flags = json.loads(cli(world, "list", "--json").stdout)["mirrors"]
    by_file = json.loads(listed.stdout)["mirrors"]
    assert by_file and [m["target"] for m in by_file] == [m["target"] for m in by_flags]
    picked = subprocess.run(
        [MIRRORFLEET, "pick"], capture_output=True, text=True, timeout=60, env=env
    )
    assert picked.returncode == 0 and picked.stdout.startswith("http"), picked.stderr
