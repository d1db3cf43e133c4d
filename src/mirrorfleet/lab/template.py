"""The cached Debian root filesystem every lab host overlays.

Built once with debootstrap and keyed by a hash of what goes into it, so a change
to the package list builds a new template instead of reusing a stale one. Lab hosts
have no internet: every package a role installs must be listed here
(tests/unit/test_template.py checks the roles against this list).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.lab.state import cache_root, state_root
from mirrorfleet.lab.system import run

SUITE = "bookworm"
TEMPLATE_VERSION = 1  # bump when finalize() changes what a template contains

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "iproute2",
    "iputils-ping",
    "procps",
    "less",
    "sudo",
    "curl",
    "ca-certificates",
)
ROLE_PACKAGES = (
    "systemd-timesyncd",
    "nginx",
    "libnginx-mod-http-js",  # PEP 691 negotiation (roles/serve_tree/files/pep691.js)
    "rsync",
    "bind9",
    "bind9-dnsutils",
    "python3-cryptography",
    "python3-cffi-backend",  # debootstrap does not resolve the virtual package it provides
    "python3-dnspython",
    "python3-click",
    "python3-rich",
    "python3-prometheus-client",
    "python3-boto3",
    # HTTPS (roles/tls): certbot, its DNS-01 plugin, and the lab's ACME CA
    "openssl",
    "certbot",
    "python3-certbot",
    "python3-certbot-dns-rfc2136",
    "pebble",
)
PACKAGES = BASE_PACKAGES + ROLE_PACKAGES

# Services the roles enable themselves; off in the template so a bare host is quiet.
DISABLED_UNITS = (
    "nginx.service",
    "named.service",
    "rsync.service",
    "certbot.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)

Progress = Callable[[str], None]


def template_key(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> str:
    blob = json.dumps([TEMPLATE_VERSION, suite, sorted(packages)]).encode()
    return f"{suite}-{hashlib.sha256(blob).hexdigest()[:12]}"


def template_dir(key: str | None = None) -> Path:
    return cache_root() / "templates" / (key or template_key())


def debian_mirror(suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt already uses, so the lab needs no new config."""
    override = os.environ.get("MIRRORFLEET_DEBIAN_MIRROR")
    if override:
        return override
    proc = run(
        [
            "apt-get",
            "indextargets",
            "--format",
            "$(REPO_URI) $(RELEASE) $(COMPONENT)",
            "Identifier: Packages",
        ],
        check=False,
    )
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == suite and parts[2] == "main":
            return parts[0]
    raise UserError(
        f"no Debian {suite} mirror in this machine's apt sources; "
        "set MIRRORFLEET_DEBIAN_MIRROR to a Debian mirror URL"
    )


def ensure_template(progress: Progress = print) -> Path:
    """Return the template's root, building it if it is missing or incomplete."""
    final = template_dir()
    root = final / "rootfs"
    if (final / "complete").exists():
        return root
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `up` waits instead of building twice
        if (final / "complete").exists():
            return root
        build_template(final, progress)
    prune_templates(keep=final)
    return root


def build_template(final: Path, progress: Progress) -> None:
    shutil.rmtree(final, ignore_errors=True)
    staging = final.with_name(final.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    mirror = debian_mirror()
    progress(f"building lab template {final.name} with debootstrap from {mirror} (once, ~2 min)")
    started = time.monotonic()
    log = staging / "debootstrap.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(staging / "rootfs"),
                mirror,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise UserError(
            f"debootstrap failed ({proc.returncode}): {' / '.join(tail)} (full log: {log})"
        )
    finalize(staging / "rootfs")
    (staging / "complete").write_text(
        json.dumps({"packages": sorted(PACKAGES), "seconds": round(time.monotonic() - started)})
    )
    staging.rename(final)
    progress(f"template ready in {time.monotonic() - started:.0f}s")


def finalize(root: Path) -> None:
    """Strip what must differ per host; each host gets its own on first boot."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").unlink(missing_ok=True)
    run(["systemctl", f"--root={root}", "disable", *DISABLED_UNITS], check=False)
    run(["systemctl", f"--root={root}", "enable", "ssh.service"])
    (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def prune_templates(keep: Path) -> None:
    """Remove older templates that no lab's state still overlays."""
    in_use = {str(keep / "rootfs")}
    for state in state_root().glob("*/state.json"):
        try:
            in_use.add(json.loads(state.read_text())["template"])
        except (OSError, ValueError, KeyError):
            continue
    for other in keep.parent.iterdir():
        if other.is_dir() and other != keep and str(other / "rootfs") not in in_use:
            shutil.rmtree(other, ignore_errors=True)
