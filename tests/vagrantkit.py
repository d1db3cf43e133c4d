"""The Vagrant route on real VMs (issue 21): libvirt started when the machine has no
systemd to start it, the box `mirrorfleet lab box` builds, `vagrant` run the way a
user runs it from the repository root (its state kept out of the checkout), and a
check that `vagrant destroy` left no domain, network, volume or QEMU behind.

Every VM gets a name prefix of this run's own, so leftovers are found by name and a
user's other VMs are never touched.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mirrorfleet.testing.loopback import stop_process

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VIRSH = ["virsh", "-c", "qemu:///system"]
# Each run's Vagrant state, logs and times.json: outside pytest's temporary folders,
# which a second pytest session prunes (it once deleted a running route's state).
RUNS = Path(os.environ.get("MIRRORFLEET_VAGRANT_RUNS", "/var/tmp/mirrorfleet-vagrant"))
KEEP_RUNS = 3  # of each kind
UP_TIMEOUT = 1800  # TCG boots at ~1/20 of native speed; 2 cores for every VM


def virsh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*VIRSH, *args], capture_output=True, text=True, timeout=timeout)


def libvirt_networks() -> list[str]:
    listed = virsh("net-list", "--all", "--name")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


@contextmanager
def kvm_device_as_udev_sets_it() -> Iterator[None]:
    """/dev/kvm as root:kvm 0660 (udev's rule, and libvirt-qemu is in group kvm) while
    the VMs run, restored after. Where no udev made it so (0600 root), libvirt probes
    QEMU as root with KVM but checks the cache as libvirt-qemu without it, so it finds
    its capabilities cache stale on every call and probes again: 4 s a call, 50 s to
    define one domain. The VMs still run under TCG where KVM cannot boot them."""
    device = Path("/dev/kvm")
    if not device.exists():
        yield
        return
    before = device.stat()
    kvm_gid = grp.getgrnam("kvm").gr_gid
    if before.st_gid == kvm_gid and before.st_mode & 0o060 == 0o060:
        yield  # udev's already
        return
    try:
        os.chown(device, before.st_uid, kvm_gid)
        device.chmod(0o660)
        yield
    finally:
        os.chown(device, before.st_uid, before.st_gid)
        device.chmod(stat.S_IMODE(before.st_mode))


@contextmanager
def libvirt_running(log_dir: Path) -> Iterator[None]:
    """libvirtd and virtlogd, started here (and stopped by PID after) when nothing
    answers on qemu:///system: a machine without systemd starts neither."""
    if virsh("version").returncode == 0:
        yield
        return
    started = []
    try:
        for daemon in ("virtlogd", "libvirtd"):
            with (log_dir / f"{daemon}.log").open("w") as out:
                started.append(subprocess.Popen([daemon], stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while virsh("version").returncode != 0:
            assert time.monotonic() < deadline, (log_dir / "libvirtd.log").read_text()
            time.sleep(0.2)
        yield
    finally:
        for proc in reversed(started):
            stop_process(proc)


class Vagrant:
    """`vagrant` and `pyinfra inventories/vagrant.py` for one set of VMs."""

    def __init__(self, work: Path, hosts: list[str], mirrors: int = 1) -> None:
        self.work = work
        self.prefix = f"mft{os.getpid()}_"
        self.secrets = work / "secrets"
        self.env = {
            **os.environ,
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_DOTFILE_PATH": str(work / ".vagrant"),  # the checkout stays clean
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "MIRRORFLEET_VAGRANT_HOSTS": ",".join(hosts),
            "MIRRORFLEET_VAGRANT_PREFIX": self.prefix,
            "MIRRORFLEET_MIRRORS": str(mirrors),
            "MIRRORFLEET_SECRETS_DIR": str(self.secrets),
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        self.times: dict[str, float] = {}
        self.networks_before = libvirt_networks()

    def run(self, *argv: str, timeout: float = UP_TIMEOUT, step: str | None = None) -> str:
        """A command from the repository root: its output. The log of its own has each
        line stamped with the seconds since the start: where `up` spends its minutes
        is read there."""
        log = self.work / f"{step or argv[0]}.log"
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # a hung command fails, bounded: its whole group, which holds the pipe too
        timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        timer.start()
        raw: list[str] = []
        try:
            with log.open("w") as out:
                assert proc.stdout is not None
                for line in proc.stdout:
                    raw.append(line.decode(errors="replace"))
                    out.write(f"[{time.monotonic() - started:7.1f}s] {raw[-1]}")
            proc.wait()
        finally:
            timer.cancel()
        if step:
            self.times[step] = time.monotonic() - started
        text = "".join(raw)
        assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{text[-4000:]}"
        return text

    def vagrant(self, *args: str, step: str | None = None) -> str:
        return self.run("vagrant", *args, step=step)

    def ssh(self, host: str, command: str) -> str:
        done = subprocess.run(
            ["vagrant", "ssh", host, "-c", command],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{host}: {command}: {done.stdout}{done.stderr}"
        return done.stdout

    def system_state(self, host: str) -> str:
        """`running`; else `degraded` and the units that failed. Every unit of a VM
        must start, the box's own and the deploy's."""
        return self.ssh(
            host, "systemctl is-system-running --wait || systemctl --failed --no-legend"
        ).strip()

    def pyinfra(self, step: str) -> dict:
        """deploy.py on the VMs: pyinfra's JSON result (what each operation changed)."""
        started = time.monotonic()
        log = self.work / f"{step}.log"
        with log.open("w") as err:
            proc = subprocess.run(
                [str(BIN / "pyinfra"), "-y", "--json", "inventories/vagrant.py", "deploy.py"],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=UP_TIMEOUT,
            )
        self.times[step] = time.monotonic() - started
        assert proc.returncode == 0, f"pyinfra {step} failed:\n{log.read_text()[-4000:]}"
        return json.loads(proc.stdout)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this run libvirt still holds: domains, volumes, networks it did not
        have before `up` (vagrant-libvirt names a private network after the checkout's
        folder), and QEMU processes running a domain of this run."""
        domains = [
            d for d in virsh("list", "--all", "--name").stdout.split() if d.startswith(self.prefix)
        ]
        volumes = [
            line.split()[0]
            for line in virsh("vol-list", "default").stdout.splitlines()[2:]
            if line.strip() and line.split()[0].startswith(self.prefix)
        ]
        qemu = subprocess.run(
            ["pgrep", "-af", f"guest={self.prefix}"], capture_output=True, text=True
        )
        networks = sorted(set(libvirt_networks()) - set(self.networks_before))
        return {
            "domains": domains,
            "volumes": volumes,
            "networks": networks,
            "qemu": qemu.stdout.splitlines(),
        }


def box_ready(log_dir: Path) -> float:
    """`mirrorfleet lab box`: built once per template, added to Vagrant; seconds taken."""
    started = time.monotonic()
    with (log_dir / "box.log").open("w") as out:
        proc = subprocess.run(
            [str(BIN / "mirrorfleet"), "lab", "box"],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
        )
    assert proc.returncode == 0, (log_dir / "box.log").read_text()
    return time.monotonic() - started


def require_tools() -> None:
    missing = [
        t for t in ("vagrant", "virsh", "libvirtd", "qemu-system-x86_64") if not shutil.which(t)
    ]
    assert not missing, f"missing {missing}: bash scripts/setup.sh installs them"


def run_dir(kind: str) -> Path:
    """A new folder for one run under RUNS; only the newest KEEP_RUNS of a kind stay."""
    RUNS.mkdir(parents=True, exist_ok=True)
    for old in sorted(RUNS.glob(f"{kind}-*"))[: -(KEEP_RUNS - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    work = RUNS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    work.mkdir(mode=0o700)
    return work


@contextmanager
def vms_up(kind: str, hosts: list[str], label: str) -> Iterator[Vagrant]:
    """The box, libvirt, `vagrant up` of `hosts` (in a run_dir of `kind`); then
    `vagrant destroy -f`, the time of each step printed and kept in times.json, and a
    check that nothing of the run is left."""
    from mirrorfleet.tree.keys import init_secrets

    work = run_dir(kind)
    box_seconds = box_ready(work)
    with kvm_device_as_udev_sets_it(), libvirt_running(work):
        vagrant = Vagrant(work, hosts)
        vagrant.times["box"] = box_seconds
        init_secrets(vagrant.secrets)
        try:
            vagrant.vagrant("up", step="up")
            yield vagrant
        finally:
            vagrant.vagrant("destroy", "-f", step="destroy")
            left = vagrant.leftovers()
            times = {k: round(v, 1) for k, v in vagrant.times.items()}
            (work / "times.json").write_text(json.dumps(times, indent=1) + "\n")
            print(f"{label}: {json.dumps(times)} (also in {work / 'times.json'})")
            assert left == {"domains": [], "volumes": [], "networks": [], "qemu": []}, left
