"""What a role needs to know about the rest of the fleet: names, tiers, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host, inventory
from pyinfra.api import Host
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, systemd

from mirrorfleet.errors import UserError
from mirrorfleet.tree.keys import SecretsDir

AGENT_PORT = 8873
MONITOR_PORT = 8874  # the monitor daemon: POST /ping, GET /metrics, /status.json

# Host data several roles read. data_defaults are scoped to one deploy, so each
# role that needs these merges them into its own DEFAULTS.
SERVICE_DEFAULTS = {
    # The unprivileged user every mirrorfleet service runs as.
    "service_user": "mirrorfleet",
    "service_home": "/var/lib/mirrorfleet",
    # Where roles put their configuration; secrets inside are 0600.
    "config_dir": "/etc/mirrorfleet",
}
TREE_DEFAULTS = {
    "tree": "/srv/mirror",
    # Which top-level paths are content (synced first): "pypi" or "debian".
    "preset": "pypi",
    # The read-only rsync module serving the tree to downstream mirrors.
    "rsync_module": "mirror",
}


def public_name(target: Host) -> str:
    """How other hosts reach target: `public_name` data, else its inventory name."""
    name = target.data.get("public_name") or target.name
    return name.split("/", 1)[-1] if name.startswith("@") else name


def secrets() -> SecretsDir:
    """The control node's secrets folder; checked before any operation runs."""
    folder = SecretsDir(Path(host.data.get("secrets_dir") or "secrets").expanduser())
    try:
        folder.require()
    except UserError as exc:
        raise DeployError(str(exc)) from None
    return folder


def put_secret(src: Path, name: str) -> OperationMeta:
    """A secret into config_dir, readable by the service user only (0600)."""
    user = host.data.service_user
    return files.put(
        name=f"Install {name} (0600)",
        src=str(src),
        dest=f"{host.data.config_dir}/{name}",
        user=user,
        group=user,
        mode="0600",
    )


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


# The drop-in that sandboxes a Debian daemon's stock unit (nginx, rsync, named).
SANDBOX_DROPIN = "mirrorfleet-sandbox.conf"


def sandbox(
    writable: str,
    *,
    capabilities: str = "",
    address_families: str = "AF_INET AF_INET6 AF_UNIX",
    syscalls: str = "@system-service",
    denied_syscalls: str = "@privileged @resources",
    private_users: bool = True,
    proc_subset: str = "pid",
) -> list[str]:
    """systemd hardening for mirrorfleet's daemons: they may write `writable` only.

    One list for every unit (the agent, the fallback sync, the monitor); each scores
    below 4.0 ("OK") in `systemd-analyze security`, which tests/infra checks. What
    stays open is what the daemons need: the network (AF_INET/AF_INET6 to listen and
    to fetch; AF_UNIX for rsync's socketpairs) with no fixed address list, since
    pings and upstreams come from anywhere in a fleet, and a 0022 umask: directories
    the agent makes in the tree (mkdir masks its mode) must stay readable by nginx.

    The Debian daemons the roles run (nginx, rsync, named; see harden()) get the same
    list with what a root daemon that drops to its own user needs loosened: the
    `capabilities` it keeps (bounding set), the syscalls it needs to change user or
    chroot (more `syscalls`, fewer `denied_syscalls`), and no PrivateUsers=, whose
    user namespace has neither the users they drop to nor the right to bind ports
    below 1024 on the host's network; `proc_subset` "all" for one that reads /proc/sys.
    """
    return [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        *([f"ReadWritePaths={writable}"] if writable else []),
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        # root and the service user map to themselves; every other owner is nobody
        *(["PrivateUsers=yes"] if private_users else []),
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        f"ProcSubset={proc_subset}",
        f"RestrictAddressFamilies={address_families}",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        # python, cryptography's cffi bindings, rsync, nginx (no pcre_jit) and named
        # need no writable code pages
        "MemoryDenyWriteExecute=yes",
        "RemoveIPC=yes",
        "SystemCallArchitectures=native",
        f"SystemCallFilter={syscalls}",
        *([f"SystemCallFilter=~{denied_syscalls}"] if denied_syscalls else []),
        "SystemCallErrorNumber=EPERM",
        f"CapabilityBoundingSet={capabilities}",
        "AmbientCapabilities=",
        "UMask=0022",
    ]


def harden(unit: str, template: Path, writable: str, **options: Any) -> OperationMeta:
    """A sandbox drop-in for a stock (Debian) unit, and the unit restarted on a change.

    /etc/systemd/system/<unit>.d/mirrorfleet-sandbox.conf from `template` (beside the
    role: a header and `{{ sandbox | join("\\n") }}`), with sandbox(writable, **options);
    a restart, not a reload, since namespaces and capabilities are set at exec.
    """
    dropin = files.template(
        name=f"Sandbox {unit} (drop-in)",
        src=str(template),
        dest=f"/etc/systemd/system/{unit}.d/{SANDBOX_DROPIN}",
        mode="0644",
        sandbox=sandbox(writable, **options),
    )
    systemd.daemon_reload(name=f"Reload systemd units ({unit} drop-in)", _if=dropin.did_change)
    systemd.service(
        name=f"Restart {unit} in its sandbox",
        service=unit,
        restarted=True,
        _if=dropin.did_change,
    )
    return dropin
