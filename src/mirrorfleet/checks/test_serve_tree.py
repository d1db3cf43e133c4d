"""What origin and mirrors share (roles/serve_tree): the tree over HTTP and read-only
rsync, from Debian's nginx and rsync, each sandboxed by a mirrorfleet drop-in."""

from __future__ import annotations

import pytest

INVENTORY_GROUP = ("origin", "mirrors")


def test_nginx_config_is_valid(host) -> None:
    assert host.run("nginx -t -q").rc == 0


def test_rsync_module_refuses_uploads(host) -> None:
    upload = host.run("rsync /etc/hostname rsync://localhost/mirror/uploaded")
    assert upload.rc != 0
    assert "read only" in upload.stderr or "read-only" in upload.stderr


def test_dotfiles_other_than_mirror_meta_are_not_served(dotfile_status: str) -> None:
    assert dotfile_status == "404"


@pytest.mark.parametrize("unit", ["nginx.service", "rsync.service"])
def test_unit_exposure_is_ok(unit_exposure, unit: str) -> None:
    exposure = unit_exposure(unit)
    assert exposure.level <= exposure.limit, f"systemd-analyze security {exposure}"


# Debian's daemons start as root and drop to their own users; their drop-ins
# (roles/nginx, roles/serve_tree) bound them to what that needs.
@pytest.mark.parametrize(
    ("unit", "capabilities"),
    [
        (
            "nginx.service",
            "cap_chown cap_dac_override cap_kill cap_setgid cap_setuid cap_net_bind_service",
        ),
        ("rsync.service", "cap_setgid cap_setuid cap_net_bind_service cap_sys_chroot"),
    ],
)
def test_daemon_keeps_only_the_capabilities_it_needs(host, unit: str, capabilities: str) -> None:
    value = host.check_output(f"systemctl show -p CapabilityBoundingSet --value {unit}")
    assert set(value.split()) == set(capabilities.split())
