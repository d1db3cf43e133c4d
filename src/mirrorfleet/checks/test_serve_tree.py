"""What origin and mirrors share (roles/serve_tree): the tree over HTTP and read-only
rsync, from Debian's nginx and rsync, each sandboxed by a mirrorfleet drop-in."""

from __future__ import annotations

import pytest

INVENTORY_GROUP = ("origin", "mirrors")


def test_nginx_config_is_valid(host) -> None:
    assert host.run("nginx -t -q").rc == 0


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        # pip's own header: JSON (or HTML where a tree has no JSON page), never a 403
        (
            "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
            "q=0.1, text/html; q=0.01",
            "application/vnd.pypi.simple.v1+json|application/vnd.pypi.simple.v1+html",
        ),
        ("text/html", "text/html"),
    ],
)
def test_the_simple_root_is_negotiated(host, site, accept: str, content_type: str) -> None:
    """PEP 691 by roles/serve_tree/files/pep691.js, as the deployed nginx runs it. A
    tree not published yet has no root page: a 404, but never the 403 of a page
    chosen that is not there."""
    got = host.check_output(
        f"{site.curl} -s -o /dev/null -w '%{{http_code}} %{{content_type}}' "
        f"-H 'Accept: {accept}' {site.url}/simple/"
    )
    status, _, served = got.partition(" ")
    assert status in ("200", "404"), got
    if status == "200":
        assert served.split(";")[0] in content_type.split("|"), got


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
