"""The monitor: the fleet's only DNS writer. It holds the publisher's TSIG key (or
the Route 53 access), the list of mirrors to probe, and mirrorfleet itself.

`deploy/publish_dns.py` runs this role and then one probe-and-publish cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import Host, deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import apt, files

from mirrorfleet.keys import MONITOR_TSIG
from mirrorfleet_roles import dns, fleet, install

TEMPLATES = Path(__file__).parent / "templates"
DNS_CONFIG = "dns.toml"
FLEET_CONFIG = "fleet.toml"
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
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
        "label": mirror.data.get("mirror_label") or name.split(".", 1)[0],
        "target": name,
        "url": f"http://{name}/",
        "weight": int(mirror.data.get("mirror_weight", 100)),
        "region": mirror.data.get("mirror_region") or "",
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


@deploy("mirrorfleet monitor", data_defaults=DEFAULTS)
def apply() -> None:
    secrets = fleet.secrets()
    user, config_dir = host.data.service_user, host.data.config_dir
    settings = dns_settings(config_dir)
    install.apply()
    if settings["provider"] == "route53":
        apt.packages(name="Install boto3", packages=["python3-boto3"], no_recommends=True)
    else:
        files.put(
            name="Install the publisher's TSIG key (0600)",
            src=str(secrets.tsig(MONITOR_TSIG)),
            dest=settings["key_file"],
            user=user,
            group=user,
            mode="0600",
        )
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
