"""A mirror: the sync agent (daemon + fallback timer), serving the tree it keeps."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from mirrorfleet_roles import fleet, install, serve_tree

TEMPLATES = Path(__file__).parent / "templates"
UNITS = ("mirrorfleet-agent.service", "mirrorfleet-sync.service", "mirrorfleet-sync.timer")
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
    **fleet.TREE_DEFAULTS,
    # Inventory name of another mirror to sync from (tiers); unset: the origin.
    "mirror_upstream": None,
    # Fallback sync period when no ping comes (seconds).
    "sync_interval": 300,
    # rsync --bwlimit in KiB/s; 0: unlimited.
    "sync_bwlimit_kbps": 0,
}


@deploy("mirrorfleet mirror", data_defaults=DEFAULTS)
def apply() -> None:
    secrets = fleet.secrets()
    upstream = fleet.public_name(fleet.upstream_of(host))
    install.apply()
    serve_tree.apply()
    user, config_dir = host.data.service_user, host.data.config_dir

    secret = fleet.put_secret(secrets.ping_secret, "ping.secret")
    config = files.template(
        name="Configure the sync agent",
        src=str(TEMPLATES / "agent.toml.j2"),
        dest=f"{config_dir}/agent.toml",
        user="root",
        group=user,
        mode="0640",
        mirror_name=fleet.public_name(host),
        upstream=upstream,
        public_key=secrets.public_key.read_text().strip(),
        rsync_module=host.data.rsync_module,
        # the next tier learns of a new serial from us, as we learn of it from upstream;
        # the monitor probes us at once
        notify=[fleet.ping_url(m) for m in fleet.downstream_of(host)] + fleet.monitor_ping_urls(),
        port=fleet.AGENT_PORT,
    )
    files.directory(
        name="Create the agent's state directory",
        path=host.data.service_home,
        user=user,
        group=user,
        mode="0750",
    )
    units = {
        unit: files.template(
            name=f"Install {unit}",
            src=str(TEMPLATES / f"{unit}.j2"),
            dest=f"/etc/systemd/system/{unit}",
            mode="0644",
            sandbox=fleet.sandbox(f"{host.data.tree} {host.data.service_home}"),
        )
        for unit in UNITS
    }
    systemd.daemon_reload(name="Reload systemd units", _if=any_changed(*units.values()))
    systemd.service(
        name="Run the sync agent",
        service="mirrorfleet-agent.service",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Restart the sync agent on new code or config",
        service="mirrorfleet-agent.service",
        restarted=True,
        _if=any_changed(config, secret, *units.values(), install.INSTALLED[host.name]),
    )
    systemd.service(
        name="Run the fallback sync timer",
        service="mirrorfleet-sync.timer",
        running=True,
        enabled=True,
    )
    systemd.service(
        name="Restart the timer on a new schedule",
        service="mirrorfleet-sync.timer",
        restarted=True,
        _if=units["mirrorfleet-sync.timer"].did_change,
    )
