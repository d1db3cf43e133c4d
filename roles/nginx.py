"""One nginx site per role: installed, enabled, checked with `nginx -t` before
nginx reloads it, and reloaded only when something changed."""

from __future__ import annotations

from pathlib import Path

from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed


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
    systemd.service(name="Run nginx", service="nginx.service", running=True, enabled=True)
    systemd.service(name="Reload nginx", service="nginx.service", reloaded=True, _if=changed)
