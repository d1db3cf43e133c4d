"""A Vagrant box (libvirt) made from the lab's own template, so the Vagrant route runs
where no box can be downloaded, on exactly the packages the lab hosts have.

The box is the template's root filesystem plus what a VM needs and a container does
not: a kernel and its initramfs, ifupdown with DHCP on eth0 (Vagrant's Debian guest
support writes /etc/network/interfaces for private networks), host keys made at
first boot, and Vagrant's `vagrant` user with its well-known insecure key, which
`vagrant up` replaces with a key of the machine's own. The disk is one ext4 file
system (`mkfs.ext4 -d`: no partitions, no loop mounts, no bootloader); the box's own
Vagrantfile boots the kernel directly (`libvirt.kernel`).

Cached in $MIRRORFLEET_CACHE/vagrant, keyed by the template's key and this module's
BOX_VERSION: a new template or a change here builds a new box.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.lab.state import cache_root
from mirrorfleet.lab.system import run
from mirrorfleet.lab.template import ensure_template, template_dir

BOX_NAME = "mirrorfleet/bookworm"
BOX_VERSION = 5  # bump when what build() puts in the box changes
DISK_GB = 8
VM_PACKAGES = ("linux-image-amd64", "ifupdown", "isc-dhcp-client")
# Vagrant's public insecure key, as the Debian package ships it; `vagrant up` swaps it
# for a generated key on first boot (config.ssh.insert_key, the default)
INSECURE_KEY = Path("/usr/share/rubygems-integration/all/gems")
CMD_LINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0"

BOX_VAGRANTFILE = """# Made by `mirrorfleet lab box` (src/mirrorfleet/lab/vmbox.py).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    # no bootloader in the image: libvirt boots the box's kernel itself, from the
    # cache beside the box file (QEMU runs as libvirt-qemu, which cannot read a home)
    libvirt.kernel = "{kernel}"
    libvirt.initrd = "{initrd}"
    libvirt.cmd_line = "{cmd_line}"
    libvirt.disk_bus = "virtio"
  end
end
"""

FIRST_BOOT_UNIT = """[Unit]
Description=SSH host keys of this VM's own (the box has none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

# Vagrant sets the hostname before it writes the private network's stanza, and on a
# Debian guest without networkd that restarts every interface through ifup@: for
# eth1, not yet configured, the unit failed and the VM stayed `degraded`. An
# interface ifupdown has no stanza for is now skipped (ExecCondition), not failed.
IFUP_DROP_IN = """[Service]
ExecCondition=/sbin/ifquery %I
"""

INTERFACES = """# Made by `mirrorfleet lab box`: the management network (Vagrant's first NIC)
auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
"""

Progress = Callable[[str], None]


def box_key() -> str:
    return f"{template_dir().name}-box{BOX_VERSION}"


def box_file(key: str | None = None) -> Path:
    return cache_root() / "vagrant" / f"{key or box_key()}.box"


def kernel_dir(key: str) -> Path:
    return cache_root() / "vagrant" / key


def insecure_key() -> str:
    found = sorted(INSECURE_KEY.glob("vagrant-*/keys/vagrant.pub"))
    if not found:
        raise UserError("Vagrant's insecure public key is missing: run `apt-get install vagrant`")
    return found[-1].read_text().strip()


def ensure_box(progress: Progress = print) -> Path:
    """The box file, built when it is missing (a build takes a few minutes, once)."""
    final = box_file()
    if final.exists() and (kernel_dir(final.stem) / "initrd.img").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build waits instead of racing
        if not (final.exists() and (kernel_dir(final.stem) / "initrd.img").exists()):
            build(final, ensure_template(progress), progress)
    for other in final.parent.glob("*.box"):
        if other != final:
            other.unlink()  # an older template's box, and its kernel
            shutil.rmtree(kernel_dir(other.stem), ignore_errors=True)
    return final


def build(final: Path, template: Path, progress: Progress) -> None:
    started = time.monotonic()
    staging = final.with_suffix(".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        root = staging / "rootfs"
        progress(f"copying the lab template {template.parent.name}")
        run(["cp", "-a", "--reflink=auto", str(template), str(root)], timeout=600)
        progress(f"installing {', '.join(VM_PACKAGES)} into the box (apt, via systemd-nspawn)")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *VM_PACKAGES]
        nspawn(root, "apt-get", "update", "-q")
        nspawn(root, *install)
        nspawn(root, "apt-get", "clean")
        add_vm_pieces(root)
        boot = staging / "box"
        boot.mkdir()
        kernel = kernel_dir(final.stem)
        shutil.rmtree(kernel, ignore_errors=True)
        kernel.mkdir(parents=True)
        for folder in (kernel, *kernel.parents[:2]):
            folder.chmod(0o755)  # QEMU (libvirt-qemu) reads the kernel from here
        shutil.copyfile(latest(root / "boot", "vmlinuz-*"), kernel / "vmlinuz")
        shutil.copyfile(latest(root / "boot", "initrd.img-*"), kernel / "initrd.img")
        for item in kernel.iterdir():
            item.chmod(0o644)
        progress(f"making the {DISK_GB} GB disk (mkfs.ext4 -d, qemu-img)")
        raw = staging / "disk.raw"
        run(["truncate", "-s", f"{DISK_GB}G", str(raw)])
        run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw)], timeout=900)
        run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(boot / "box.img")], timeout=900)
        raw.unlink()
        metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GB}
        (boot / "metadata.json").write_text(json.dumps(metadata) + "\n")
        (boot / "Vagrantfile").write_text(
            BOX_VAGRANTFILE.format(
                kernel=kernel / "vmlinuz", initrd=kernel / "initrd.img", cmd_line=CMD_LINE
            )
        )
        (boot / "mirrorfleet-box.json").write_text(
            json.dumps({"key": final.stem, "template": template.parent.name}) + "\n"
        )
        partial = final.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:  # uncompressed: qcow2 is sparse already
            for item in sorted(boot.iterdir()):
                tar.add(item, arcname=item.name)
        partial.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"box {final.name} ready in {time.monotonic() - started:.0f}s")


def nspawn(root: Path, *command: str) -> None:
    """A command inside the box's root, with this machine's network (apt)."""
    argv = ["systemd-nspawn", "-q", "--pipe", "-D", str(root), "--register=no", "--keep-unit"]
    argv += ["--link-journal=no", "--resolv-conf=copy-host", "--timezone=off"]
    argv += ["-E", "DEBIAN_FRONTEND=noninteractive", *command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UserError(f"in the box: `{' '.join(command)}` failed: {' / '.join(tail)}")


def add_vm_pieces(root: Path) -> None:
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    (root / "etc/network/interfaces").write_text(INTERFACES)
    drop_in = root / "etc/systemd/system/ifup@.service.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    (drop_in / "mirrorfleet-unconfigured.conf").write_text(IFUP_DROP_IN)

    unit = root / "etc/systemd/system/mirrorfleet-host-keys.service"
    unit.write_text(FIRST_BOOT_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / unit.name
    link.unlink(missing_ok=True)
    link.symlink_to(f"/etc/systemd/system/{unit.name}")
    # vagrant: its insecure key, and sudo without a password (what every box has)
    passwd = (root / "etc/passwd").read_text()
    if "\nvagrant:" not in "\n" + passwd:
        nspawn(root, "useradd", "--create-home", "--shell", "/bin/bash", "vagrant")
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(insecure_key() + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    nspawn(root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")
    sudoers = root / "etc/sudoers.d/vagrant"
    sudoers.write_text("vagrant ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/machine-id").write_text("")  # each VM makes its own at first boot
    (root / "etc/hostname").write_text("bookworm\n")


def latest(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise UserError(f"no {pattern} in {folder}: the kernel did not install")
    return found[-1]


QEMU_TCG = """#!/bin/bash
# Made by `mirrorfleet lab box` (src/mirrorfleet/lab/vmbox.py): QEMU for libvirt's TCG
# VMs, with TCG's translation cache capped at MIRRORFLEET_TB_SIZE_MB (default 256);
# uncapped it takes up to 1 GiB per VM.
args=()
prev=
for arg in "$@"; do
  if [[ $prev == -accel && $arg == tcg* && $arg != *tb-size* ]]; then
    arg="$arg,tb-size=${MIRRORFLEET_TB_SIZE_MB:-256}"
  fi
  args+=("$arg")
  prev=$arg
done
exec /usr/bin/qemu-system-x86_64 "${args[@]}"
"""


def write_tcg_wrapper() -> Path:
    """The emulator the Vagrantfile gives libvirt for TCG VMs, when it exists."""
    path = cache_root() / "vagrant" / "qemu-tcg"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != QEMU_TCG:
        path.write_text(QEMU_TCG)
    if path.stat().st_mode & 0o777 != 0o755:
        # only when needed: a new ctime makes libvirt probe the emulator again
        path.chmod(0o755)
    return path


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def installed_key() -> str | None:
    """The key of the mirrorfleet/bookworm box Vagrant holds, None when it holds none."""
    folder = vagrant_home() / "boxes" / BOX_NAME.replace("/", "-VAGRANTSLASH-")
    for marker in folder.glob("*/libvirt/mirrorfleet-box.json"):
        try:
            return str(json.loads(marker.read_text())["key"])
        except (OSError, ValueError, KeyError):
            return None
    return None


def add_box(path: Path) -> bool:
    """`vagrant box add` the box unless Vagrant holds this very one; True if added."""
    if installed_key() == path.stem:
        return False
    proc = subprocess.run(
        ["vagrant", "box", "add", "--force", "--name", BOX_NAME, str(path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"},
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise UserError(f"vagrant box add {path} failed: {' / '.join(tail)}")
    return True
