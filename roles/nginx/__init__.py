"""nginx, shared by the roles that serve HTTP (serve_tree on the origin and the
mirrors, the monitor's status page): one site per role, installed, enabled, checked
with `nginx -t` before nginx reloads it, and reloaded only when something changed.
nginx itself runs sandboxed (hardening.harden()) with the drop-in beside this file.

Each site's template stays with the role that serves it; this role owns nginx."""

from __future__ import annotations

from pathlib import Path

from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from mirrorfleet_roles import hardening

TEMPLATES = Path(__file__).parent / "templates"
SANDBOX = TEMPLATES / "nginx-sandbox.conf.j2"


def site(conf: str, template: Path, what: str) -> None:
    """sites-available/<conf> from template, enabled; nginx's default site disabled."""
    available = f"/etc/nginx/sites-available/{conf}"
    installed = files.template(
        name=f"Configure the {what} site", src=str(template), dest=available, mode="0644"
    )
    enabled = files.link(
        name=f"Enable the {what} site", path=f"/etc/nginx/sites-enabled/{conf}", target=available
    )
    default = files.link(
        name="Disable nginx's default site", path="/etc/nginx/sites-enabled/default", present=False
    )
    changed = any_changed(installed, enabled, default)
    server.shell(name="Check the nginx configuration", commands=["nginx -t -q"], _if=changed)
    hardening.service(
        "nginx.service", "Run nginx", "Reload nginx", [installed, enabled, default], reload=True
    )
    sandbox()


def sandbox() -> None:
    """nginx.service in a drop-in sandbox: the master keeps only what it uses as root.

    CAP_NET_BIND_SERVICE for port 80; CAP_SETUID/CAP_SETGID to start its workers as
    www-data; CAP_DAC_OVERRIDE to open the logs, which belong to www-data (0640,
    logrotate's `create`), and CAP_CHOWN to give a log it had to create back to
    www-data when it reopens logs (USR1 after a rotation); CAP_KILL to signal its
    workers, which run as another user. It writes its logs, its temp dirs and /run
    (its pid file, /run/nginx.pid, set in Debian's nginx.conf and unit).
    """
    hardening.harden(
        "nginx.service",
        SANDBOX,
        "/var/log/nginx /var/lib/nginx /run",
        capabilities="CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE CAP_CHOWN "
        "CAP_KILL",
        # setuid/setgroups/chown are @privileged; nginx sets no rlimits or priorities
        denied_syscalls="@resources",
        private_users=False,
    )
