"""SSH access to lab hosts: the lab's own key pair and pinned host keys.

The lab generates every host key itself, so clients check them strictly instead of
trusting on first use.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from mirrorfleet.lab.state import LabState
from mirrorfleet.lab.system import run


def ensure_keypair(key: Path) -> str:
    """Create the lab's client key (0600) unless it exists; return the public key line."""
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mirrorfleet-lab", "-f", str(key)]
        )
    key.chmod(0o600)
    return key.with_suffix(".pub").read_text()


def write_client_config(state: LabState, host_keys: dict[str, str]) -> None:
    """known_hosts and an ssh_config, usable by ssh, pyinfra and testinfra alike."""
    lines = [
        f"{h.name},{h.address} ssh-ed25519 {host_keys[h.name]}"
        for h in state.hosts
        if h.name in host_keys
    ]
    state.known_hosts.write_text("\n".join(lines) + "\n")
    blocks = [
        "\n".join(
            [
                f"Host {h.name}",
                f"    HostName {h.address}",
                "    User root",
                f"    IdentityFile {state.key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {state.known_hosts}",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "    ConnectTimeout 5",
                "    LogLevel ERROR",
            ]
        )
        for h in state.hosts
    ]
    state.ssh_config.write_text("\n\n".join(blocks) + "\n")


def ssh_argv(
    state: LabState, host: str, command: Sequence[str] = (), tty: bool = False
) -> list[str]:
    state.host(host)  # unknown names fail here, with the list of known ones
    return ["ssh", "-F", str(state.ssh_config), *(["-t"] if tty else []), host, *command]


def ssh_run(
    state: LabState, host: str, command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ssh_argv(state, host, [command]),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
