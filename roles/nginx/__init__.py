"""nginx, shared by the roles that serve HTTP (serve_tree on the origin and the
mirrors, the monitor's status page): one site per role, installed, enabled, checked
with `nginx -t` before nginx reloads it, and reloaded only when something changed.
nginx itself runs sandboxed (hardening.harden()) with the drop-in beside this file.

Each site's template stays with the role that serves it; this role owns nginx."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jinja2 import FileSystemLoader
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from mirrorfleet_roles import hardening, tls

TEMPLATES = Path(__file__).parent / "templates"
SCRIPTS = "/etc/nginx/mirrorfleet"  # njs modules (libnginx-mod-http-js)
SANDBOX = TEMPLATES / "nginx-sandbox.conf.j2"


def site(conf: str, template: Path, what: str, scripts: Sequence[Path] = ()) -> None:
    """sites-available/<conf> from template, enabled; nginx's default site disabled;
    HTTPS as the host's `tls` says (roles/tls: the template gets tls_certificate,
    tls_key and acme_webroot, None when plain HTTP is kept).

    scripts: njs modules the site imports, installed in SCRIPTS; the template gets
    each one's path as `<stem>_js`, and a change to any of them reloads nginx."""
    secure, certificate = tls.site_data()
    available = f"/etc/nginx/sites-available/{conf}"
    paths = {f"{script.stem}_js": f"{SCRIPTS}/{script.name}" for script in scripts}
    installed_scripts = [
        files.put(
            name=f"Install the {what} site's {script.name}",
            src=str(script),
            dest=paths[f"{script.stem}_js"],
            mode="0644",
            create_remote_dir=True,
        )
        for script in scripts
    ]
    installed = files.template(
        name=f"Configure the {what} site",
        src=str(template),
        dest=available,
        mode="0644",
        jinja_env_kwargs={"loader": FileSystemLoader([str(template.parent), str(TEMPLATES)])},
        **paths,
        **secure,
    )
    enabled = files.link(
        name=f"Enable the {what} site", path=f"/etc/nginx/sites-enabled/{conf}", target=available
    )
    default = files.link(
        name="Disable nginx's default site", path="/etc/nginx/sites-enabled/default", present=False
    )
    triggers = [*installed_scripts, installed, enabled, default, *certificate]
    changed = any_changed(*triggers)
    server.shell(name="Check the nginx configuration", commands=["nginx -t -q"], _if=changed)
    hardening.service("nginx.service", "Run nginx", "Reload nginx", triggers, reload=True)
    sandbox()
    # with the site answering the challenge: the CA's certificate, and nginx reloaded
    # onto it (certbot's deploy hook does the same on every renewal)
    issued = tls.obtain()
    if issued:
        systemd.service(
            name="Reload nginx onto its new certificate",
            service="nginx.service",
            reloaded=True,
            _if=any_changed(*issued),
        )


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
