"""Running host commands with errors that say what failed and what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from mirrorfleet.errors import UserError

# command -> Debian package that provides it
REQUIRED_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "vagrant": "vagrant",
}


def require_root(what: str = "the lab") -> None:
    if os.geteuid() != 0:
        raise UserError(
            f"{what} needs root (it makes network namespaces, mounts and containers); "
            "run it with sudo"
        )


def require_tools(tools: Sequence[str] = tuple(REQUIRED_TOOLS)) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = sorted({REQUIRED_TOOLS.get(tool, tool) for tool in missing})
        raise UserError(f"missing {', '.join(missing)}: run `apt-get install {' '.join(packages)}`")


def run(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, input=input
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(cmd)}` took longer than {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(
            f"`{' '.join(cmd)}` failed ({proc.returncode}): {detail[-1] if detail else 'no output'}"
        )
    return proc
