"""One lab host: an overlay over the template, made unique, booted by systemd-nspawn."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.lab.network import NETNS_DIR
from mirrorfleet.lab.system import run

STOP_TIMEOUT = 15.0


def mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in _mountinfo())


def _mountinfo() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def mounts_under(directory: Path) -> list[Path]:
    """Mount points inside a lab's directory, deepest first so they unmount cleanly."""
    prefix = f"{directory}/"
    points = [Path(line.split()[4]) for line in _mountinfo() if line.split()[4].startswith(prefix)]
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def ensure_overlay(template: Path, host_dir: Path) -> Path:
    root = host_dir / "root"
    if not mounted(root):
        for sub in ("upper", "work", "root"):
            (host_dir / sub).mkdir(parents=True, exist_ok=True)
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={template},upperdir={host_dir / 'upper'},workdir={host_dir / 'work'}",
                str(root),
            ]
        )
    return root


def personalize(
    root: Path, hostname: str, hosts_file: str, authorized_key: str, resolv_conf: str | None = None
) -> None:
    """Give the host what must never be shared: host keys, machine-id, its name; and
    how it resolves names (resolv_conf; None: the template's)."""
    if not (root / "etc/ssh/ssh_host_ed25519_key").exists():
        run(["ssh-keygen", "-A", "-f", str(root)])
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text().strip():
        machine_id.write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/hosts").write_text(hosts_file)
    if resolv_conf is not None:
        (root / "etc/resolv.conf").unlink(missing_ok=True)  # the template's may be a link
        (root / "etc/resolv.conf").write_text(resolv_conf)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    ssh_dir.chmod(0o700)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key)
    keys.chmod(0o600)


def host_public_key(root: Path) -> str:
    return (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]


def nspawn_command(root: Path, machine: str, netns: str, hostname: str) -> list[str]:
    return [
        "systemd-nspawn",
        "--quiet",
        "-D",
        str(root),
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path={NETNS_DIR / netns}",
        f"--machine={machine}",
        f"--hostname={hostname}",
        "--console=passive",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]


CGROUP_FS = Path("/sys/fs/cgroup")


def cgroup_hierarchies() -> list[Path]:
    """The cgroup trees a container's systemd writes to (hybrid v1 + v2, or pure v2)."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [CGROUP_FS / name for name in ("systemd", "unified") if (CGROUP_FS / name).is_dir()]


def cgroup_dirs(prefix: str, machine: str | None = None) -> list[Path]:
    base = [h / "mirrorfleet" / prefix for h in cgroup_hierarchies()]
    return [b / machine for b in base] if machine else base


def start(root: Path, machine: str, netns: str, hostname: str, log: Path, prefix: str) -> int:
    """Boot the container detached from us, so it outlives this command.

    Without a host systemd, `--keep-unit` would leave every container in our own
    cgroup, where their systemds trip over each other (units fail with 219/CGROUP);
    so each container first moves into a cgroup of its own.
    """
    cgroups = cgroup_dirs(prefix, machine)
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)
    enter = "; ".join(f'echo $$ > "{c}/cgroup.procs"' for c in cgroups)
    argv = [
        "sh",
        "-c",
        f'{enter}; exec "$@"',
        "sh",
        *nspawn_command(root, machine, netns, hostname),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def is_ours(pid: int | None, root: Path) -> bool:
    """True when pid is still the nspawn we started for root (PIDs get reused)."""
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _is_nspawn(argv) and str(root).encode() in argv


def _is_nspawn(argv: list[bytes]) -> bool:
    """nspawn itself, or the shell that is about to exec it (see start())."""
    return any(arg.endswith(b"systemd-nspawn") for arg in argv[:5])


def nspawn_pids_under(directory: Path) -> list[int]:
    """Every nspawn process whose root lies inside directory: the crash-recovery path."""
    prefix = f"{directory}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if _is_nspawn(argv) and any(a.startswith(prefix) for a in argv):
            found.append(int(entry.name))
    return found


def stop(pids: list[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM asks nspawn for a clean container shutdown; SIGKILL only after timeout."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if _alive(pid)]
        time.sleep(0.1)
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    for pid in pending:
        _wait_gone(pid, 5.0)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # reap it if it is our child (a test that started and stops in one process)
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for_port(address: str, port: int, timeout: float, pid: int, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):  # not is_ours(): right after fork the cmdline is still ours
            raise UserError(f"container for {root.parent.name} exited while booting")
        try:
            with socket.create_connection((address, port), timeout=1.0) as conn:
                if conn.recv(4).startswith(b"SSH"):
                    return
        except OSError:
            time.sleep(0.2)
    raise UserError(f"{address}:{port} did not answer within {timeout:.0f}s")


def remove_cgroups(prefix: str) -> list[Path]:
    """Remove the lab's (by now empty) cgroups, deepest first; return any that stay."""
    stuck = []
    for base in cgroup_dirs(prefix):
        if not base.is_dir():
            continue
        for path in sorted(
            (p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            _rmdir(path, stuck)
        _rmdir(base, stuck)
        with contextlib.suppress(OSError):  # shared by every lab: only when empty
            base.parent.rmdir()
    return stuck


def _rmdir(path: Path, stuck: list[Path]) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        stuck.append(path)
