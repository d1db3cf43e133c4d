"""The origin: holds the canonical tree, signs each serial, pings the first tier and
the monitor."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from mirrorfleet_roles import fleet, install, serve_tree

TEMPLATES = Path(__file__).parent / "templates"
DEFAULTS = {**fleet.SERVICE_DEFAULTS, **fleet.TREE_DEFAULTS}


@deploy("mirrorfleet origin", data_defaults=DEFAULTS)
def apply() -> None:
    secrets = fleet.secrets()
    install.apply()
    serve_tree.apply()
    user, config_dir = host.data.service_user, host.data.config_dir
    fleet.put_secret(secrets.signing_key, "origin-signing.key")
    fleet.put_secret(secrets.ping_secret, "ping.secret")
    files.template(
        name="Configure origin publishing",
        src=str(TEMPLATES / "origin.toml.j2"),
        dest=f"{config_dir}/origin.toml",
        user="root",
        group=user,
        mode="0640",
        origin_name=fleet.public_name(host),
        pings=[fleet.ping_url(m) for m in fleet.downstream_of(host)] + fleet.monitor_ping_urls(),
    )
