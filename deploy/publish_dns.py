"""Publish the mirror list in DNS now: `pyinfra INVENTORY deploy/publish_dns.py`.

On the monitor (the only DNS writer) it converges the monitor role, then probes
every mirror as a client would and applies the resulting plan: one TSIG-signed,
conditional update for BIND, or the fewest change batches for Route 53. Run it
after deploy.py has set up the dns hosts; a rerun with nothing new sends nothing.
Set MIRRORFLEET_DNS_FORCE=1 to apply a plan that rewrites most records.
"""

import os

from pyinfra import host
from pyinfra.operations import server

from mirrorfleet_roles import fleet, monitor

if "monitor" in host.groups:
    monitor.apply()
    user = host.data.get("service_user") or fleet.SERVICE_DEFAULTS["service_user"]
    config_dir = host.data.get("config_dir") or fleet.SERVICE_DEFAULTS["config_dir"]
    force = " --force" if os.environ.get("MIRRORFLEET_DNS_FORCE") == "1" else ""
    server.shell(
        name="Probe the mirrors and publish them in DNS",
        commands=[
            f"runuser -u {user} -- mirrorfleet dns apply"
            f" --config {config_dir}/{monitor.DNS_CONFIG}"
            f" --fleet {config_dir}/{monitor.FLEET_CONFIG}{force}"
        ],
    )
