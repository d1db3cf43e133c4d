"""One schema from inventory to daemon: each role renders its host config from the
config.py dataclass for a sample inventory, and the daemon's own loader reads it
back to the same config. Also the TOML writer itself (config.dumps)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from mirrorfleet.config import (
    AGENT_PORT,
    KEEP_RECORDS,
    MONITOR_PORT,
    AgentConfig,
    DnsConfig,
    MonitorConfig,
    OriginConfig,
    build,
    dumps,
    load_agent_config,
    load_dns_config,
    load_monitor_config,
    load_origin_config,
    toml_string,
)
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec, load_fleet_config
from mirrorfleet.tree.keyfiles import Anchors
from mirrorfleet.tree.keys import init_secrets
from mirrorfleet_roles import common, configs, dns, mirror, monitor, origin, tls

KEY = "Dvej1LGrusScI/8kmGloiYHiyBYweJYU6ASQ1PHw2/g="
PINNED = Anchors((KEY,), 1, None)  # a fleet without an offline root: its own key


def sample_inventory(origin_data: dict[str, Any] | None = None, **monitor_data: Any) -> Inventory:
    """origin, a tier-1 and a tier-2 mirror, two BIND servers and the monitor."""
    hosts = {
        "origin.example.org": origin_data or {},
        "mirror-fra1.example.org": {"mirror_region": "eu", "mirror_weight": 50},
        "mirror-nyc1.example.org": {"mirror_upstream": "mirror-fra1.example.org"},
        "ns1.example.org": {"dns_role": "primary", "dns_address": "192.0.2.53"},
        "ns2.example.org": {"dns_role": "secondary", "dns_address": "198.51.100.53"},
        "monitor.example.org": monitor_data,
    }
    return Inventory(
        (list(hosts.items()), {"mirror_zone": "mirrors.example.org"}),
        origin=(["origin.example.org"], {}),
        mirrors=(
            ["mirror-fra1.example.org", "mirror-nyc1.example.org"],
            {"sync_bwlimit_kbps": 1024},
        ),
        dns=(["ns1.example.org", "ns2.example.org"], {}),
        monitor=(["monitor.example.org"], {}),
    )


@contextmanager
def on(inventory: Inventory, name: str, defaults: dict[str, Any]) -> Iterator[None]:
    """Run role code as pyinfra would for host `name`, inside a deploy with `defaults`."""
    state = State(inventory, Config())
    target = inventory.get_host(name)
    with (
        ctx_state.use(state),
        ctx_inventory.use(inventory),
        ctx_host.use(target),
        target.deploy("test", None, defaults),
    ):
        yield


def round_trip(config: Any, load: Callable[[Path], Any], tmp_path: Path) -> str:
    text = configs.render(config, "Managed by a test.", load)
    assert configs.render(config, "Managed by a test.", load) == text  # byte-stable
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert load(path) == config
    return text


def test_origin_config(tmp_path: Path) -> None:
    with on(sample_inventory(), "origin.example.org", origin.DEFAULTS):
        config = origin.config(PINNED)
        text = round_trip(config, load_origin_config, tmp_path)
    assert isinstance(config, OriginConfig)
    assert config.ping == (
        f"http://mirror-fra1.example.org:{AGENT_PORT}/ping",
        f"http://monitor.example.org:{MONITOR_PORT}/ping",
    )
    assert config.signing_key == Path("/etc/mirrorfleet/origin-signing.key")
    assert text.startswith("# Managed by a test.\nname = ")
    # publish's state and the records kept reach the file, defaults included
    assert 'state_dir = "/var/lib/mirrorfleet/origin"' in text.splitlines()
    assert f"keep_records = {KEEP_RECORDS}" in text.splitlines()


def test_origin_state_and_records_come_from_host_data(tmp_path: Path) -> None:
    inventory = sample_inventory({"origin_state_dir": "/srv/st", "origin_keep_records": 500})
    with on(inventory, "origin.example.org", origin.DEFAULTS):
        config = origin.config(PINNED)
        text = round_trip(config, load_origin_config, tmp_path)
    assert (config.state_dir, config.keep_records) == (Path("/srv/st"), 500)
    assert "keep_records = 500" in text.splitlines()


def test_with_an_offline_root_every_verifier_pins_the_roots_and_the_origin_serves_keys(
    tmp_path: Path,
) -> None:
    roots = Anchors(("A" * 43 + "=", "B" * 43 + "=", "C" * 43 + "="), 2, Path("keys.json"))
    with on(sample_inventory(), "origin.example.org", origin.DEFAULTS):
        served = round_trip(origin.config(roots), load_origin_config, tmp_path)
    assert 'keys_document = "/etc/mirrorfleet/keys.json"' in served.splitlines()
    with on(sample_inventory(), "mirror-fra1.example.org", mirror.DEFAULTS):
        agent = mirror.config(roots)
    with on(sample_inventory(), "monitor.example.org", monitor.DEFAULTS):
        probe = monitor.fleet_config(roots)
    for pinned in (agent, probe):
        assert (pinned.public_keys, pinned.root_threshold) == (roots.keys, 2)


def test_a_bad_keep_records_stops_the_deploy() -> None:
    bad = OriginConfig("o", Path("/t"), Path("/k"), Path("/p"), keep_records=0)
    with (
        on(sample_inventory(), "origin.example.org", origin.DEFAULTS),
        pytest.raises(DeployError, match="keep_records must be at least 1"),
    ):
        configs.render(bad, "", load_origin_config)


@pytest.mark.parametrize(
    ("name", "upstream", "notify"),
    [
        ("mirror-fra1.example.org", "origin.example.org", ["mirror-nyc1.example.org:8873"]),
        ("mirror-nyc1.example.org", "mirror-fra1.example.org", []),
    ],
)
def test_agent_config(tmp_path: Path, name: str, upstream: str, notify: list[str]) -> None:
    with on(sample_inventory(), name, mirror.DEFAULTS):
        config = mirror.config(PINNED)
        text = round_trip(config, load_agent_config, tmp_path)
    assert isinstance(config, AgentConfig)
    assert config.upstream_rsync == f"rsync://{upstream}/mirror/"
    assert config.upstream_http == f"https://{upstream}/"  # tls "acme" by default
    assert config.notify == tuple(
        f"http://{n}/ping" for n in [*notify, f"monitor.example.org:{MONITOR_PORT}"]
    )
    assert config.listen_address == ("0.0.0.0", AGENT_PORT)
    assert config.bwlimit_kbps == 1024  # group data reaches the file
    assert f'public_keys = ["{KEY}"]' in text.splitlines()


def test_monitor_configs(tmp_path: Path) -> None:
    with on(sample_inventory(monitor_interval=15), "monitor.example.org", monitor.DEFAULTS):
        daemon, publish = monitor.monitor_config(), monitor.dns_config()
        probe = monitor.fleet_config(PINNED)
        round_trip(daemon, load_monitor_config, tmp_path)
        round_trip(publish, load_dns_config, tmp_path)
        text = round_trip(probe, load_fleet_config, tmp_path)
    assert isinstance(daemon, MonitorConfig) and daemon.interval == 15
    assert daemon.listen_address == ("0.0.0.0", MONITOR_PORT)
    assert daemon.fleet == Path("/etc/mirrorfleet/fleet.toml")
    assert isinstance(publish, DnsConfig)
    assert (publish.zone, publish.server) == ("mirrors.example.org.", "192.0.2.53")
    assert publish.key_file == Path("/etc/mirrorfleet/tsig-monitor.key")
    assert isinstance(probe, FleetConfig)
    fra1, nyc1 = probe.mirrors
    assert (fra1.region, fra1.weight, fra1.tier) == ("eu", 50, 1)
    assert (nyc1.region, nyc1.tier, nyc1.upstream) == ("", 2, "mirror-fra1.example.org")
    assert text.count("[[mirrors]]") == 2


def test_urls_follow_each_hosts_tls() -> None:
    """HTTPS (port 443) by default; plain HTTP where a host's data keeps it, read for
    that host even from another host's deploy; a bad value stops the deploy."""
    inventory = sample_inventory({"tls": "off"})
    inventory.get_host("mirror-nyc1.example.org").host_data["tls"] = "own"
    with on(inventory, "monitor.example.org", monitor.DEFAULTS):
        probe = monitor.fleet_config(PINNED)
    assert probe.origin_url == "http://origin.example.org/"
    assert [(m.url, m.port) for m in probe.mirrors] == [
        ("https://mirror-fra1.example.org/", 443),
        ("https://mirror-nyc1.example.org/", 443),
    ]
    with on(inventory, "mirror-fra1.example.org", mirror.DEFAULTS):
        assert mirror.config(PINNED).upstream_http == "http://origin.example.org/"
    inventory.get_host("origin.example.org").host_data["tls"] = "yes"
    with (
        on(inventory, "mirror-fra1.example.org", mirror.DEFAULTS),
        pytest.raises(DeployError, match="tls must be one of acme, own, off, not 'yes'"),
    ):
        mirror.config(PINNED)


def test_monitor_route53_config(tmp_path: Path) -> None:
    data = {"dns_provider": "route53", "route53_hosted_zone_id": "Z123"}
    with on(sample_inventory(**data), "monitor.example.org", monitor.DEFAULTS):
        publish = monitor.dns_config()
        text = round_trip(publish, load_dns_config, tmp_path)
    assert (publish.provider, publish.hosted_zone_id) == ("route53", "Z123")
    assert "key_file" not in text and "server" not in text  # empty optional fields


def test_role_defaults_are_the_daemons_defaults() -> None:
    assert mirror.DEFAULTS["sync_bwlimit_kbps"] == AgentConfig.bwlimit_kbps
    assert mirror.DEFAULTS["preset"] == AgentConfig.preset
    assert mirror.DEFAULTS["service_home"] == str(AgentConfig.state_dir)
    assert monitor.DEFAULTS["monitor_interval"] == MonitorConfig.interval
    assert monitor.DEFAULTS["monitor_port"] == MonitorConfig("f", "p").listen_address[1]
    assert monitor.DEFAULTS["dns_record_ttl"] == DnsConfig.ttl
    assert origin.DEFAULTS["origin_state_dir"] == str(OriginConfig.state_dir)
    assert origin.DEFAULTS["origin_keep_records"] == OriginConfig.keep_records == KEEP_RECORDS


def test_a_config_the_daemon_refuses_stops_the_deploy() -> None:
    bad = AgentConfig(
        name="m",
        tree=Path("/srv/mirror"),
        upstream_rsync="http://not-rsync/",
        upstream_http="http://origin/",
        public_keys=(KEY,),
        ping_secret=Path("/etc/mirrorfleet/ping.secret"),
    )
    with (
        on(sample_inventory(), "mirror-fra1.example.org", mirror.DEFAULTS),
        pytest.raises(DeployError, match="upstream_rsync must be an rsync:// URL"),
    ):
        configs.render(bad, "", load_agent_config)


# -- the writer -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    text: str
    number: int = 0
    names: tuple[str, ...] = ()
    path: Path = Path()


@given(
    text=st.text(st.characters(exclude_categories=("Cs",))),
    number=st.integers(-(2**63), 2**63 - 1),
    names=st.lists(st.text(st.characters(exclude_categories=("Cs",))), max_size=4),
)
def test_dumps_reads_back(text: str, number: int, names: list[str]) -> None:
    sample = Sample(text, number, tuple(names))
    assert build(tomllib.loads(dumps(sample, "a\nheader")), Sample) == sample


def test_dumps_leaves_out_empty_optional_fields_only() -> None:
    assert dumps(Sample("x")) == 'text = "x"\nnumber = 0\n'
    assert dumps(Sample("x", path=Path("/a b"))).endswith('path = "/a b"\n')


@pytest.mark.parametrize("value", [True, 1.5, {"a": 1}, (1, 2)])
def test_dumps_refuses_what_the_schema_has_not(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps(Sample("x", number=value))


def test_toml_string_escapes() -> None:
    assert toml_string('a"b\\c\n\x7f\x00é') == '"a\\"b\\\\c\\n\\u007f\\u0000é"'
    assert tomllib.loads(f"v = {toml_string(chr(0x1F) + 'tab	')}")["v"] == "\x1ftab\t"


def test_mirror_spec_round_trips() -> None:
    fleet = FleetConfig("http://o/", (KEY,), (MirrorSpec("a", "a.example", "http://a/"),))
    assert "[[mirrors]]\nlabel = " in dumps(fleet)


def dns01_inventory(tmp_path: Path, public_name: str) -> Inventory:
    """The sample fleet with its origin validated by DNS-01, and a secrets folder."""
    init_secrets(tmp_path / "secrets")
    inventory = sample_inventory(
        {"acme_challenge": "dns-01", "public_name": public_name, "public_address": "192.0.2.10"}
    )
    for target in inventory:
        target.host_data["secrets_dir"] = str(tmp_path / "secrets")
    return inventory


def test_dns01_gives_the_host_a_key_for_its_own_challenge_only(tmp_path: Path) -> None:
    name = "origin.mirrors.example.org"
    inventory = dns01_inventory(tmp_path, name)
    with on(inventory, "origin.example.org", origin.DEFAULTS):
        credentials = tls.rfc2136_credentials()
        command = tls.certonly(name)
    key = f"mirrorfleet-acme.{name}"
    secret = (tmp_path / "secrets" / f"tsig-acme-{name}.key").read_text().strip()
    assert (tmp_path / "secrets" / f"tsig-acme-{name}.key").stat().st_mode & 0o777 == 0o600
    assert credentials.splitlines()[1:] == [
        "dns_rfc2136_server = 192.0.2.53",  # the primary, by address
        "dns_rfc2136_port = 53",
        f"dns_rfc2136_name = {key}",
        f"dns_rfc2136_secret = {secret}",
        "dns_rfc2136_algorithm = HMAC-SHA256",
    ]
    assert "--authenticator dns-rfc2136" in command and "--webroot" not in command
    with on(inventory, "ns1.example.org", dns.DEFAULTS):
        conf = dns.named_conf(
            "mirrors.example.org",
            "primary",
            "192.0.2.53",
            [],
            acme_names=dns.acme_names("mirrors.example.org"),
        )
    grants = [rule for rule in conf.update_policy if "acme" in rule]
    assert grants == [f"grant {key} name _acme-challenge.{name}. TXT;"]


def test_dns01_for_a_name_outside_the_zone_stops_the_deploy(tmp_path: Path) -> None:
    inventory = dns01_inventory(tmp_path, "origin.example.org")
    with (
        on(inventory, "ns1.example.org", dns.DEFAULTS),
        pytest.raises(DeployError, match=r"needs its public name inside mirrors\.example\.org"),
    ):
        dns.acme_names("mirrors.example.org")


HOME, NOLOGIN = "/var/lib/mirrorfleet", "/usr/sbin/nologin"


@pytest.mark.parametrize(
    ("entry", "as_wanted"),
    [
        (f"mirrorfleet:x:998:998::{HOME}:{NOLOGIN}", True),
        (f"mirrorfleet:x:998:998:mirrorfleet services:{HOME}:{NOLOGIN}\n", True),
        (None, False),  # no such account: getent printed nothing
        ("", False),
        (f"mirrorfleet:x:998:998::{HOME}:/bin/bash", False),  # a shell: server.user fixes it
        (f"mirrorfleet:x:998:998::/home/mirrorfleet:{NOLOGIN}", False),
        (f"mirrorfleet:x:998:998:{HOME}:{NOLOGIN}", False),  # not a passwd line
    ],
)
def test_the_service_user_is_left_to_server_user_unless_its_entry_is_as_wanted(
    entry: str | None, as_wanted: bool
) -> None:
    assert common.passwd_entry_is(entry, HOME, NOLOGIN) is as_wanted
