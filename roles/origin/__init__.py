"""The origin: holds the canonical tree, signs each serial, pings the first tier and
the monitor, and signs its stamp again on a timer (the heartbeat) so an idle fleet
stays provably fresh."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from mirrorfleet.config import OriginConfig, load_origin_config
from mirrorfleet.tree.keyfiles import KEYS_FILE, Anchors
from mirrorfleet.tree.keys import SecretsDir
from mirrorfleet_roles import configs, fleet, hardening

TEMPLATES = Path(__file__).parent / "templates"
UNITS = ("mirrorfleet-heartbeat.service", "mirrorfleet-heartbeat.timer")
HEADER = "Managed by mirrorfleet (roles/origin). Used by `mirrorfleet origin publish`."
DEFAULTS = {
    **fleet.SERVICE_DEFAULTS,
    **fleet.TREE_DEFAULTS,
    # publish's own state (what the tree held at the last publish), outside the tree.
    "origin_state_dir": str(OriginConfig.state_dir),
    # change records kept in .mirror/changes/: how far behind a mirror can catch up
    # from the feed instead of syncing everything.
    "origin_keep_records": OriginConfig.keep_records,
    # seconds between heartbeats, and how long each stamp counts as fresh: a mirror
    # (or a DNS answer) the heartbeat stops reaching is stale after stamp_lifetime.
    "heartbeat_interval": OriginConfig.heartbeat,
    "stamp_lifetime": OriginConfig.stamp_lifetime,
}


def config(anchors: Anchors) -> OriginConfig:
    """origin.toml: what `mirrorfleet origin publish` signs and whom it pings."""
    config_dir = Path(host.data.config_dir)
    return OriginConfig(
        name=fleet.label(host),
        tree=Path(host.data.tree),
        preset=host.data.preset,
        signing_key=config_dir / "origin-signing.key",
        ping_secret=config_dir / "ping.secret",
        ping=tuple(fleet.ping_url(m) for m in fleet.downstream_of(host))
        + tuple(fleet.monitor_ping_urls()),
        state_dir=Path(host.data.origin_state_dir),
        keep_records=int(host.data.origin_keep_records),
        heartbeat=int(host.data.heartbeat_interval),
        stamp_lifetime=int(host.data.stamp_lifetime),
        keys_document=config_dir / KEYS_FILE if anchors.document else Path(),
    )


@deploy("mirrorfleet origin", data_defaults=DEFAULTS)
def apply() -> None:
    """Publishing and the heartbeat, on a host where `install.apply()` put mirrorfleet
    and `serve_tree.apply()` serves the tree (deploy.py applies both first)."""
    secrets: SecretsDir = fleet.secrets()
    anchors = fleet.anchors()
    configs.put_secret(secrets.signing_key, "origin-signing.key")
    configs.put_secret(secrets.ping_secret, "ping.secret")
    configs.put_state_dir("Create publish's state directory", host.data.origin_state_dir)
    configs.put_config(
        "Configure origin publishing",
        "origin.toml",
        configs.render(config(anchors), HEADER, load_origin_config),
    )
    # the roots' keys document, published with the next heartbeat: started at once
    # when it changed (a rotation, a revocation), so it reaches the fleet now
    keys = configs.put_public(anchors.document, KEYS_FILE) if anchors.document else None
    writable = f"{host.data.tree} {host.data.origin_state_dir}"
    units = hardening.units(TEMPLATES, UNITS, writable)
    hardening.service(
        "mirrorfleet-heartbeat.timer",
        "Run the heartbeat timer",
        "Restart the heartbeat timer on a new schedule",
        [units["mirrorfleet-heartbeat.timer"]],
    )
    if keys is not None:
        systemd.service(
            name="Publish the new keys document (a heartbeat now)",
            service="mirrorfleet-heartbeat.service",
            running=True,
            _if=any_changed(keys),
        )
