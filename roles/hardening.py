"""systemd for the roles: the sandbox every daemon runs in, and the helpers that own
a unit's file mode, the daemon-reload and the restart named by its trigger.

Imports nothing else from the roles: fleet.py (layout) and configs.py (files) sit
beside it, and every role imports the three.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

# The drop-in that sandboxes a Debian daemon's stock unit (nginx, rsync, named).
SANDBOX_DROPIN = "mirrorfleet-sandbox.conf"
UNIT_DIR = "/etc/systemd/system"


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
    below 4.0 ("OK") in `systemd-analyze security`, as mirrorfleet.checks tests. What
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


def units(templates: Path, names: Iterable[str], writable: str) -> dict[str, OperationMeta]:
    """Our own units from `<templates>/<unit>.j2` (0644), each given the sandbox
    (writable: what the daemon may write), and one daemon-reload if any changed.

    Returns each unit's operation, for the restarts that hang off it (service()).
    """
    installed = {
        unit: files.template(
            name=f"Install {unit}",
            src=str(templates / f"{unit}.j2"),
            dest=f"{UNIT_DIR}/{unit}",
            mode="0644",
            sandbox=sandbox(writable),
        )
        for unit in names
    }
    systemd.daemon_reload(name="Reload systemd units", _if=any_changed(*installed.values()))
    return installed


def service(
    unit: str, run: str, restart: str, triggers: Iterable[OperationMeta], *, reload: bool = False
) -> None:
    """unit running and enabled (operation `run`), then restarted (or reloaded) when
    any of `triggers` changed (operation `restart`, named by what triggers it)."""
    systemd.service(name=run, service=unit, running=True, enabled=True)
    systemd.service(
        name=restart,
        service=unit,
        restarted=not reload,
        reloaded=reload,
        _if=any_changed(*triggers),
    )


def harden(unit: str, template: Path, writable: str, **options: Any) -> OperationMeta:
    """A sandbox drop-in for a stock (Debian) unit, and the unit restarted on a change.

    /etc/systemd/system/<unit>.d/mirrorfleet-sandbox.conf from `template` (beside the
    role: a header and `{{ sandbox | join("\\n") }}`), with sandbox(writable, **options);
    a restart, not a reload, since namespaces and capabilities are set at exec.
    """
    dropin = files.template(
        name=f"Sandbox {unit} (drop-in)",
        src=str(template),
        dest=f"{UNIT_DIR}/{unit}.d/{SANDBOX_DROPIN}",
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
