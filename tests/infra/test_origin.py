"""The origin: serves its tree over HTTP and read-only rsync, holds the signing key."""

from __future__ import annotations

import pytest

INVENTORY_GROUP = "origin"


@pytest.mark.parametrize("service", ["nginx", "rsync"])
def test_service_running_and_enabled(host, service: str) -> None:
    assert host.service(service).is_running
    assert host.service(service).is_enabled


@pytest.mark.parametrize("socket", ["tcp://0.0.0.0:80", "tcp://0.0.0.0:873"])
def test_listening(host, socket: str) -> None:
    assert host.socket(socket).is_listening


def test_nginx_config_is_valid(host) -> None:
    assert host.run("nginx -t").rc == 0


def test_signing_key_is_private_to_the_service_user(host) -> None:
    key = host.file("/etc/mirrorfleet/origin-signing.key")
    assert key.exists
    assert (key.user, key.group, key.mode) == ("mirrorfleet", "mirrorfleet", 0o600)


def test_publish_config_is_not_world_readable(host) -> None:
    config = host.file("/etc/mirrorfleet/origin.toml")
    assert (config.user, config.group, config.mode) == ("root", "mirrorfleet", 0o640)


def test_mirrorfleet_command_works(host) -> None:
    assert host.run("mirrorfleet --version").stdout.startswith("mirrorfleet, version")


def test_rsync_module_refuses_uploads(host) -> None:
    upload = host.run("rsync /etc/hostname rsync://localhost/mirror/uploaded")
    assert upload.rc != 0
    assert "read only" in upload.stderr or "read-only" in upload.stderr


# nginx and rsync run sandboxed by a mirrorfleet drop-in (fleet.harden()).
@pytest.mark.parametrize("unit", ["nginx.service", "rsync.service"])
def test_unit_exposure_is_ok(unit_exposure, unit: str) -> None:
    exposure = unit_exposure(unit)
    assert exposure.level <= exposure.limit, f"systemd-analyze security {exposure}"


# Debian's daemons start as root and drop to their own users; their drop-ins
# (roles/nginx.py, roles/serve_tree) bound them to what that needs.
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


def test_dotfiles_other_than_mirror_meta_are_not_served(dotfile_status: str) -> None:
    assert dotfile_status == "404"


@pytest.mark.parametrize(
    "path", ["/etc/mirrorfleet/tsig-monitor.key", "/etc/bind/mirrorfleet-keys.conf"]
)
def test_origin_holds_no_dns_key(host, path: str) -> None:
    assert not host.file(path).exists
