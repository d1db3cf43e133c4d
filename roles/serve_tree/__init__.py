"""Serve a mirror tree: nginx for clients (HTTP) and a read-only rsync module for
downstream mirrors. deploy.py applies it on the origin and the mirrors, in one step."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, files

from mirrorfleet_roles import hardening, nginx
from mirrorfleet_roles.fleet import SERVICE_DEFAULTS, TREE_DEFAULTS

TEMPLATES = Path(__file__).parent / "templates"
PEP691_JS = Path(__file__).parent / "files" / "pep691.js"  # /simple/'s negotiation
DEFAULTS = {
    **SERVICE_DEFAULTS,
    **TREE_DEFAULTS,
    # rsyncd `hosts allow`; empty: anyone may read (the content is public anyway)
    "rsync_hosts_allow": [],
    "rsync_max_connections": 20,
    # Cache lifetimes: files never change once published; index pages do.
    "http_files_max_age": 31536000,
    "http_index_max_age": 60,
}


@deploy("mirrorfleet serve tree", data_defaults=DEFAULTS)
def apply() -> None:
    apt.packages(
        name="Install nginx, its njs module and rsync",
        packages=["nginx", "libnginx-mod-http-js", "rsync"],
        no_recommends=True,
    )
    files.directory(
        name="Create the tree",
        path=host.data.tree,
        user=host.data.service_user,
        group=host.data.service_user,
        mode="0755",
    )

    nginx.site("mirrorfleet.conf", TEMPLATES / "nginx-site.conf.j2", "mirror", scripts=[PEP691_JS])

    rsyncd = files.template(
        name="Configure the read-only rsync module",
        src=str(TEMPLATES / "rsyncd.conf.j2"),
        dest="/etc/rsyncd.conf",
        mode="0644",
    )
    # Before the first (re)start: the lock file rsyncd.conf names is in its sandbox.
    # Root for port 873; for each client it chroots into the module (CAP_SYS_CHROOT)
    # and drops to the module's uid/gid (CAP_SETUID/CAP_SETGID); the tree is world-
    # readable, so it needs no DAC override, and it writes nothing but the lock file.
    hardening.harden(
        "rsync.service",
        TEMPLATES / "rsync-sandbox.conf.j2",
        "",
        capabilities="CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_SYS_CHROOT",
        syscalls="@system-service chroot",
        denied_syscalls="@resources",
        private_users=False,
    )
    hardening.service("rsync.service", "Run the rsync daemon", "Restart the rsync daemon", [rsyncd])
