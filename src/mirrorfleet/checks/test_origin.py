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


def test_signing_key_is_private_to_the_service_user(host) -> None:
    key = host.file("/etc/mirrorfleet/origin-signing.key")
    assert key.exists
    assert (key.user, key.group, key.mode) == ("mirrorfleet", "mirrorfleet", 0o600)


def test_publish_config_is_not_world_readable(host) -> None:
    config = host.file("/etc/mirrorfleet/origin.toml")
    assert (config.user, config.group, config.mode) == ("root", "mirrorfleet", 0o640)


def test_publish_state_dir_belongs_to_the_service_user(host) -> None:
    state = host.file("/var/lib/mirrorfleet/origin")
    assert state.is_directory
    assert (state.user, state.group, state.mode) == ("mirrorfleet", "mirrorfleet", 0o750)


def test_heartbeat_timer_is_armed(host) -> None:
    """The heartbeat keeps the stamp from expiring on an idle fleet (tree/stamp.py)."""
    timer = host.service("mirrorfleet-heartbeat.timer")
    assert timer.is_enabled and timer.is_running
    show = "systemctl show -p NextElapseUSecMonotonic --value mirrorfleet-heartbeat.timer"
    assert host.check_output(show).strip() not in ("", "infinity")


def test_mirrorfleet_command_works(host) -> None:
    assert host.run("mirrorfleet --version").stdout.startswith("mirrorfleet, version")


@pytest.mark.parametrize(
    "path", ["/etc/mirrorfleet/tsig-monitor.key", "/etc/bind/mirrorfleet-keys.conf"]
)
def test_origin_holds_no_dns_key(host, path: str) -> None:
    assert not host.file(path).exists
