"""The monitor: the fleet's only DNS writer. It holds the publisher's TSIG key (or
the Route 53 access) and runs `mirrorfleet monitor run`, which probes every mirror
as a client would, publishes the list, and writes the status page nginx serves.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files

from mirrorfleet.config import DnsConfig, MonitorConfig, load_dns_config, load_monitor_config
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec, load_fleet_config
from mirrorfleet.tree.keyfiles import Anchors
from mirrorfleet.tree.keys import MONITOR_TSIG
from mirrorfleet_roles import configs, dns, fleet, hardening, nginx

TEMPLATES = Path(__file__).parent / "templates"
STATUS_PAGE = Path(__file__).parent / "files" / "status" / "index.html"
HEADER = "Managed by mirrorfleet (roles/monitor). Read by `mirrorfleet monitor run`."
DNS_CONFIG = "dns.toml"
FLEET_CONFIG = "fleet.toml"
UNIT = "mirrorfleet-monitor.service"
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
    # Seconds between full probes of every mirror (notifications probe at once).
    "monitor_interval": MonitorConfig.interval,
    # Seconds a mirror may be behind a new head before it is lagging.
    "monitor_lag_grace": MonitorConfig.lag_grace,
    # Unreachable probes in a row before a mirror is down; good ones before it returns.
    "monitor_down_after": MonitorConfig.down_after,
    "monitor_up_after": MonitorConfig.up_after,
    # Fail static: with fewer mirrors up than this, DNS keeps what it lists.
    "monitor_min_listed": MonitorConfig.min_listed,
    # Projects spot-checked per probe (index page and one file each); 0: stamps only.
    "monitor_spot_checks": MonitorConfig.spot_checks,
    # The daemon's port (pings, /metrics, /status.json) and the status page's.
    "monitor_port": fleet.MONITOR_PORT,
    "monitor_status_port": 80,
    # With tls on (roles/tls), the status page is HTTPS here; port 80 redirects to it.
    "monitor_status_tls_port": 443,
    "monitor_status_dir": "/var/www/mirrorfleet-status",
    # "rfc2136": the dns group's BIND primary; "route53": a Route 53 hosted zone.
    "dns_provider": DnsConfig.provider,
    # Ownership marker value: every write is conditional on it.
    "dns_owner": DnsConfig.owner,
    # TTL of the records the monitor writes (SRV, TXT), 30-86400 s.
    "dns_record_ttl": DnsConfig.ttl,
    # Route 53 only; credentials come from the host (instance role, ~/.aws).
    "route53_hosted_zone_id": DnsConfig.hosted_zone_id,
    "route53_region": DnsConfig.region,
}


def mirror_spec(mirror: Host) -> MirrorSpec:
    """A mirror as the monitor probes and publishes it."""
    name = fleet.public_name(mirror)
    return MirrorSpec(
        label=fleet.label(mirror),
        target=name,
        url=fleet.web_url(mirror),
        port=fleet.web_port(mirror),
        weight=int(mirror.data.get("mirror_weight", MirrorSpec.weight)),
        region=mirror.data.get("mirror_region") or "",
        tier=fleet.tier_of(mirror),
        upstream=fleet.public_name(fleet.upstream_of(mirror)),
    )


def fleet_config(anchors: Anchors) -> FleetConfig:
    """fleet.toml: the origin and the mirrors the monitor probes, and what it pins."""
    return FleetConfig(
        origin_url=fleet.web_url(fleet.origin_host()),
        public_keys=anchors.keys,
        mirrors=tuple(mirror_spec(m) for m in inventory.get_group("mirrors", [])),
        root_threshold=anchors.threshold,
    )


def dns_config() -> DnsConfig:
    """dns.toml: where the fleet's records are published."""
    provider = host.data.dns_provider
    settings = {
        "zone": f"{dns.zone_name()}.",
        "provider": provider,
        "owner": host.data.dns_owner,
        "ttl": int(host.data.dns_record_ttl),
    }
    if provider == "rfc2136":
        primaries = [
            h for h in inventory.get_group("dns", []) if h.data.get("dns_role") == "primary"
        ]
        if not primaries:
            raise DeployError("dns_provider rfc2136 needs a dns_role='primary' host in group dns")
        return DnsConfig(
            **settings,
            server=dns.dns_address(primaries[0]),
            key_name=MONITOR_TSIG,
            key_file=Path(host.data.config_dir) / "tsig-monitor.key",
        )
    if provider == "route53":
        if not host.data.route53_hosted_zone_id:
            raise DeployError("dns_provider route53 needs route53_hosted_zone_id")
        return DnsConfig(
            **settings,
            hosted_zone_id=host.data.route53_hosted_zone_id,
            region=host.data.route53_region,
        )
    raise DeployError(f"dns_provider must be rfc2136 or route53, not {provider!r}")


def monitor_config() -> MonitorConfig:
    """monitor.toml: the daemon's own settings and where the other two files are."""
    config_dir = Path(host.data.config_dir)
    return MonitorConfig(
        fleet=config_dir / FLEET_CONFIG,
        dns=config_dir / DNS_CONFIG,
        ping_secret=config_dir / "ping.secret",
        status_dir=Path(host.data.monitor_status_dir),
        listen=f"0.0.0.0:{host.data.monitor_port}",
        interval=int(host.data.monitor_interval),
        lag_grace=int(host.data.monitor_lag_grace),
        down_after=int(host.data.monitor_down_after),
        up_after=int(host.data.monitor_up_after),
        min_listed=int(host.data.monitor_min_listed),
        spot_checks=int(host.data.monitor_spot_checks),
    )


def check_ports() -> None:
    """The status page takes port 80 (and 443 with tls) unless this host already
    serves a tree there."""
    serves_tree = bool({"origin", "mirrors"} & set(host.groups))
    if serves_tree and int(host.data.monitor_status_port) == 80:
        raise DeployError(
            f"{host.name} serves a mirror tree on port 80: set monitor_status_port "
            "to another port for its status page"
        )
    secure = fleet.tls_mode(host) != "off"
    if serves_tree and secure and int(host.data.monitor_status_tls_port) == 443:
        raise DeployError(
            f"{host.name} serves a mirror tree on port 443: set monitor_status_tls_port "
            "to another port for its status page"
        )


@deploy("mirrorfleet monitor", data_defaults=DEFAULTS)
def apply(installed: OperationMeta) -> None:
    """The monitor daemon and its status page, on a host where `install.apply()` put
    mirrorfleet (`installed`: its operation, which restarts the daemon on new code)."""
    secrets = fleet.secrets()
    publish, probe, daemon = dns_config(), fleet_config(fleet.anchors()), monitor_config()
    check_ports()
    changed = [installed]
    if publish.provider == "route53":
        apt.packages(name="Install boto3", packages=["python3-boto3"], no_recommends=True)
    else:  # a rotated key restarts the daemon like any other config change
        changed.append(configs.put_secret(secrets.tsig(MONITOR_TSIG), publish.key_file.name))
    changed.append(configs.put_secret(secrets.ping_secret, "ping.secret"))
    changed.append(
        configs.put_config(
            "Configure DNS publishing",
            DNS_CONFIG,
            configs.render(publish, HEADER, load_dns_config),
        )
    )
    changed.append(
        configs.put_config(
            "Configure the mirrors to probe",
            FLEET_CONFIG,
            configs.render(probe, HEADER, load_fleet_config),
        )
    )
    changed.append(
        configs.put_config(
            "Configure the monitor daemon",
            "monitor.toml",
            configs.render(daemon, HEADER, load_monitor_config),
        )
    )
    status_page()
    units = hardening.units(TEMPLATES, [UNIT], host.data.monitor_status_dir)
    hardening.service(
        UNIT,
        "Run the monitor",
        "Restart the monitor on new code or config",
        [*units.values(), *changed],
    )


def status_page() -> None:
    """nginx serving index.html, and the status.json/history.json the daemon writes."""
    status_dir = host.data.monitor_status_dir
    apt.packages(name="Install nginx", packages=["nginx"], no_recommends=True)
    files.directory(
        name="Create the status directory",
        path=status_dir,
        user=host.data.service_user,
        group=host.data.service_user,
        mode="0755",
    )
    files.put(
        name="Install the status page",
        src=str(STATUS_PAGE),
        dest=f"{status_dir}/index.html",
        user="root",
        group="root",
        mode="0644",
    )
    nginx.site("mirrorfleet-status.conf", TEMPLATES / "status-site.conf.j2", "status")
