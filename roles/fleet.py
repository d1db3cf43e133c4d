"""What a role needs to know about the rest of the fleet: names, tiers, ports,
secrets. Layout only: systemd hardening is in hardening.py, the files a role puts
on a host in configs.py; this module imports neither."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import Host
from pyinfra.api.exceptions import DeployError

from mirrorfleet.config import (
    ACME_CHALLENGES,
    AGENT_PORT,
    MONITOR_PORT,
    TLS_DEFAULT,
    TLS_MODES,
    AgentConfig,
)
from mirrorfleet.control.inventory import public_name as inventory_public_name
from mirrorfleet.errors import UserError
from mirrorfleet.tree.keyfiles import Anchors, fleet_anchors
from mirrorfleet.tree.keys import SecretsDir
from mirrorfleet.zone.records import meta_label

# Host data several roles read. data_defaults are scoped to one deploy, so each
# role that needs these merges them into its own DEFAULTS.
SERVICE_DEFAULTS = {
    # The unprivileged user every mirrorfleet service runs as.
    "service_user": "mirrorfleet",
    "service_home": str(AgentConfig.state_dir),
    # Where roles put their configuration; secrets inside are 0600.
    "config_dir": "/etc/mirrorfleet",
}
TREE_DEFAULTS = {
    "tree": "/srv/mirror",
    # Which top-level paths are content (synced first): "pypi" or "debian".
    "preset": AgentConfig.preset,
    # The read-only rsync module serving the tree to downstream mirrors.
    "rsync_module": "mirror",
}


def tls_mode(target: Host) -> str:
    """Host data `tls` (mirrorfleet.config.TLS_MODES), read for other hosts too (their
    URLs), where role defaults do not apply."""
    mode = target.data.get("tls") or TLS_DEFAULT
    if mode not in TLS_MODES:
        raise DeployError(f"{target.name}: tls must be one of {', '.join(TLS_MODES)}, not {mode!r}")
    return mode


def acme_challenge(target: Host) -> str | None:
    """The challenge target's certificate is validated by (None: no ACME)."""
    if tls_mode(target) != "acme":
        return None
    challenge = target.data.get("acme_challenge") or ACME_CHALLENGES[0]
    if challenge not in ACME_CHALLENGES:
        raise DeployError(
            f"{target.name}: acme_challenge must be one of {', '.join(ACME_CHALLENGES)}, "
            f"not {challenge!r}"
        )
    return challenge


def web_port(target: Host) -> int:
    return 80 if tls_mode(target) == "off" else 443


def web_url(target: Host) -> str:
    """Where clients and the fleet's daemons read target's tree."""
    scheme = "http" if tls_mode(target) == "off" else "https"
    return f"{scheme}://{public_name(target)}/"


def public_name(target: Host) -> str:
    """How other hosts reach target: `public_name` data, else its inventory name."""
    return inventory_public_name(target.name, target.data)


def label(target: Host) -> str:
    """The host's name in the fleet's own records (the stamp's origin, traces, pings,
    the meta TXT): the first label of its public name, as DNS schema v1 wants."""
    return meta_label(public_name(target))


def secrets() -> SecretsDir:
    """The control node's secrets folder; checked before any operation runs."""
    folder = SecretsDir(Path(host.data.get("secrets_dir") or "secrets").expanduser())
    try:
        folder.require()
    except UserError as exc:
        raise DeployError(str(exc)) from None
    return folder


def anchors() -> Anchors:
    """What every verifier pins: the roots once `mirrorfleet keys certify` ran, else
    the origin's own key (tree/keyfiles.py); a rotation changes neither."""
    try:
        return fleet_anchors(secrets())
    except UserError as exc:
        raise DeployError(str(exc)) from None


def origin_host() -> Host:
    origins = list(inventory.get_group("origin", []))
    if len(origins) != 1:
        raise DeployError(
            f"the inventory needs exactly one host in group 'origin', has {len(origins)}"
        )
    return origins[0]


def upstream_of(mirror: Host) -> Host:
    """A mirror's upstream: `mirror_upstream` (another mirror's name), else the origin."""
    name = mirror.data.get("mirror_upstream")
    if not name:
        return origin_host()
    upstream = inventory.get_host(name, None)
    if upstream is None or upstream.name == mirror.name:
        raise DeployError(f"{mirror.name}: mirror_upstream {name!r} is not another inventory host")
    return upstream


def tier_of(mirror: Host) -> int:
    """1 for a mirror syncing from the origin, 2 for one syncing from a tier 1, ..."""
    seen = {mirror.name}
    tier, upstream = 1, upstream_of(mirror)
    while "origin" not in upstream.groups:
        if upstream.name in seen:
            raise DeployError(
                f"{mirror.name}: mirror_upstream forms a loop through {upstream.name}"
            )
        seen.add(upstream.name)
        tier, upstream = tier + 1, upstream_of(upstream)
    return tier


def downstream_of(upstream: Host) -> list[Host]:
    """The mirrors that sync from upstream, and so get its pings."""
    return [m for m in inventory.get_group("mirrors", []) if upstream_of(m).name == upstream.name]


def ping_url(target: Host) -> str:
    return f"http://{public_name(target)}:{AGENT_PORT}/ping"


def monitor_ping_urls() -> list[str]:
    """Where agents and the origin notify the monitor, so it probes at once."""
    return [
        f"http://{public_name(m)}:{m.data.get('monitor_port') or MONITOR_PORT}/ping"
        for m in inventory.get_group("monitor", [])
    ]
