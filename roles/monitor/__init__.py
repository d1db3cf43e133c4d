"""The monitor: the fleet's only DNS writer. It holds the publisher's TSIG key (or
the Route 53 access) and runs `mirrorfleet monitor run`, which probes every mirror
as a client would, publishes the list, and writes the status page nginx serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from mirrorfleet.tree.keys import MONITOR_TSIG
from mirrorfleet.zone.records import meta_label
from mirrorfleet_roles import dns, fleet, install, nginx

TEMPLATES = Path(__file__).parent / "templates"
STATUS_PAGE = Path(__file__).parent / "files" / "status" / "index.html"
DNS_CONFIG = "dns.toml"
FLEET_CONFIG = "fleet.toml"
UNIT = "mirrorfleet-monitor.service"
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
    # Seconds between full probes of every mirror (notifications probe at once).
    "monitor_interval": 30,
    # Seconds a mirror may be behind a new head before it is lagging.
    "monitor_lag_grace": 10,
    # Unreachable probes in a row before a mirror is down; good ones before it returns.
    "monitor_down_after": 2,
    "monitor_up_after": 2,
    # Fail static: with fewer mirrors up than this, DNS keeps what it lists.
    "monitor_min_listed": 1,
    # Projects spot-checked per probe (index page and one file each); 0: stamps only.
    "monitor_spot_checks": 2,
    # The daemon's port (pings, /metrics, /status.json) and the status page's.
    "monitor_port": fleet.MONITOR_PORT,
    "monitor_status_port": 80,
    "monitor_status_dir": "/var/www/mirrorfleet-status",
    # "rfc2136": the dns group's BIND primary; "route53": a Route 53 hosted zone.
    "dns_provider": "rfc2136",
    # Ownership marker value: every write is conditional on it.
    "dns_owner": "mirrorfleet",
    # TTL of the records the monitor writes (SRV, TXT), 30-86400 s.
    "dns_record_ttl": 60,
    # Route 53 only; credentials come from the host (instance role, ~/.aws).
    "route53_hosted_zone_id": "",
    "route53_region": "us-east-1",
}


def mirror_spec(mirror: Host) -> dict[str, Any]:
    """A mirror as the monitor probes and publishes it."""
    name = fleet.public_name(mirror)
    return {
        "label": meta_label(name),
        "target": name,
        "url": f"http://{name}/",
        "weight": int(mirror.data.get("mirror_weight", 100)),
        "region": mirror.data.get("mirror_region") or "",
        "tier": fleet.tier_of(mirror),
        "upstream": fleet.public_name(fleet.upstream_of(mirror)),
    }


def dns_settings(config_dir: str) -> dict[str, Any]:
    provider = host.data.dns_provider
    settings = {
        "zone": dns.zone_name(),
        "provider": provider,
        "owner": host.data.dns_owner,
        "ttl": host.data.dns_record_ttl,
    }
    if provider == "rfc2136":
        primaries = [
            h for h in inventory.get_group("dns", []) if h.data.get("dns_role") == "primary"
        ]
        if not primaries:
            raise DeployError("dns_provider rfc2136 needs a dns_role='primary' host in group dns")
        return {
            **settings,
            "server": dns.dns_address(primaries[0]),
            "key_name": MONITOR_TSIG,
            "key_file": f"{config_dir}/tsig-monitor.key",
        }
    if provider == "route53":
        if not host.data.route53_hosted_zone_id:
            raise DeployError("dns_provider route53 needs route53_hosted_zone_id")
        return {
            **settings,
            "hosted_zone_id": host.data.route53_hosted_zone_id,
            "region": host.data.route53_region,
        }
    raise DeployError(f"dns_provider must be rfc2136 or route53, not {provider!r}")


def check_ports() -> None:
    """The status page takes port 80 unless this host already serves a tree there."""
    serves_tree = bool({"origin", "mirrors"} & set(host.groups))
    if serves_tree and int(host.data.monitor_status_port) == 80:
        raise DeployError(
            f"{host.name} serves a mirror tree on port 80: set monitor_status_port "
            "to another port for its status page"
        )


@deploy("mirrorfleet monitor", data_defaults=DEFAULTS)
def apply() -> None:
    secrets = fleet.secrets()
    user, config_dir = host.data.service_user, host.data.config_dir
    settings = dns_settings(config_dir)
    check_ports()
    install.apply()
    changed = [install.INSTALLED[host.name]]
    if settings["provider"] == "route53":
        apt.packages(name="Install boto3", packages=["python3-boto3"], no_recommends=True)
    else:  # a rotated key restarts the daemon like any other config change
        changed.append(
            fleet.put_secret(secrets.tsig(MONITOR_TSIG), Path(settings["key_file"]).name)
        )
    changed.append(fleet.put_secret(secrets.ping_secret, "ping.secret"))
    changed.append(
        files.template(
            name="Configure DNS publishing",
            src=str(TEMPLATES / "dns.toml.j2"),
            dest=f"{config_dir}/{DNS_CONFIG}",
            user="root",
            group=user,
            mode="0640",
            jinja_env_kwargs=dict(dns.JINJA),
            **settings,
        )
    )
    changed.append(
        files.template(
            name="Configure the mirrors to probe",
            src=str(TEMPLATES / "fleet.toml.j2"),
            dest=f"{config_dir}/{FLEET_CONFIG}",
            user="root",
            group=user,
            mode="0640",
            jinja_env_kwargs=dict(dns.JINJA),
            origin_url=f"http://{fleet.public_name(fleet.origin_host())}/",
            public_key=secrets.public_key.read_text().strip(),
            mirrors=[mirror_spec(m) for m in inventory.get_group("mirrors", [])],
        )
    )
    changed.append(
        files.template(
            name="Configure the monitor daemon",
            src=str(TEMPLATES / "monitor.toml.j2"),
            dest=f"{config_dir}/monitor.toml",
            user="root",
            group=user,
            mode="0640",
            port=host.data.monitor_port,
        )
    )
    status_page()
    unit = files.template(
        name=f"Install {UNIT}",
        src=str(TEMPLATES / f"{UNIT}.j2"),
        dest=f"/etc/systemd/system/{UNIT}",
        mode="0644",
        sandbox=fleet.sandbox(host.data.monitor_status_dir),
    )
    systemd.daemon_reload(name="Reload systemd units", _if=unit.did_change)
    systemd.service(name="Run the monitor", service=UNIT, running=True, enabled=True)
    systemd.service(
        name="Restart the monitor on new code or config",
        service=UNIT,
        restarted=True,
        _if=any_changed(unit, *changed),
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
