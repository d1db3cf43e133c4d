"""A mirror: the sync agent (daemon, fallback timer, daily audit), serving the tree it keeps."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta

from mirrorfleet.config import AgentConfig, load_agent_config
from mirrorfleet.tree.keyfiles import Anchors
from mirrorfleet_roles import configs, fleet, hardening

TEMPLATES = Path(__file__).parent / "templates"
HEADER = "Managed by mirrorfleet (roles/mirror). Read by `mirrorfleet agent run|sync`."
UNITS = (
    "mirrorfleet-agent.service",
    "mirrorfleet-sync.service",
    "mirrorfleet-sync.timer",
    "mirrorfleet-audit.service",
    "mirrorfleet-audit.timer",
)
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
    **fleet.TREE_DEFAULTS,
    # Inventory name of another mirror to sync from (tiers); unset: the origin.
    "mirror_upstream": None,
    # Fallback sync period when no ping comes (seconds).
    "sync_interval": AgentConfig.interval,
    # When the full sync runs that repairs files damaged behind the agent's back
    # (systemd OnCalendar); syncs by change record never look at unchanged files.
    "audit_schedule": "daily",
    # rsync --bwlimit in KiB/s; 0: unlimited.
    "sync_bwlimit_kbps": AgentConfig.bwlimit_kbps,
}


def config(anchors: Anchors) -> AgentConfig:
    """agent.toml: where the agent syncs from, whom it notifies after a sync, and what
    it pins."""
    source = fleet.upstream_of(host)
    upstream = fleet.public_name(source)
    return AgentConfig(
        name=fleet.label(host),
        tree=Path(host.data.tree),
        preset=host.data.preset,
        upstream_rsync=f"rsync://{upstream}/{host.data.rsync_module}/",
        upstream_http=fleet.web_url(source),
        public_keys=anchors.keys,
        root_threshold=anchors.threshold,
        ping_secret=Path(host.data.config_dir) / "ping.secret",
        listen=f"0.0.0.0:{fleet.AGENT_PORT}",
        state_dir=Path(host.data.service_home),
        bwlimit_kbps=int(host.data.sync_bwlimit_kbps),
        # the next tier learns of a new serial from us, as we learn of it from upstream;
        # the monitor probes us at once
        notify=tuple(fleet.ping_url(m) for m in fleet.downstream_of(host))
        + tuple(fleet.monitor_ping_urls()),
    )


@deploy("mirrorfleet mirror", data_defaults=DEFAULTS)
def apply(installed: OperationMeta) -> None:
    """The agent and its timers, on a host where `install.apply()` put mirrorfleet
    (`installed`: its operation, which restarts the agent on new code) and
    `serve_tree.apply()` serves the tree."""
    secrets = fleet.secrets()
    agent = config(fleet.anchors())

    secret = configs.put_secret(secrets.ping_secret, "ping.secret")
    config_op = configs.put_config(
        "Configure the sync agent", "agent.toml", configs.render(agent, HEADER, load_agent_config)
    )
    configs.put_state_dir("Create the agent's state directory", host.data.service_home)
    units = hardening.units(TEMPLATES, UNITS, f"{host.data.tree} {host.data.service_home}")
    hardening.service(
        "mirrorfleet-agent.service",
        "Run the sync agent",
        "Restart the sync agent on new code or config",
        [config_op, secret, *units.values(), installed],
    )
    hardening.service(
        "mirrorfleet-sync.timer",
        "Run the fallback sync timer",
        "Restart the timer on a new schedule",
        [units["mirrorfleet-sync.timer"]],
    )
    hardening.service(
        "mirrorfleet-audit.timer",
        "Run the audit timer",
        "Restart the audit timer on a new schedule",
        [units["mirrorfleet-audit.timer"]],
    )
