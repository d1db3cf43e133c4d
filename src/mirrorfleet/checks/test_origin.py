"""The origin: serves its tree over HTTP and read-only rsync, holds the signing key."""

from __future__ import annotations

import time

import pytest

INVENTORY_GROUP = "origin"
HEARTBEAT_RUN_LIMIT = 120  # seconds; one heartbeat signs a stamp and pings mirrors


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
    """The heartbeat keeps the stamp from expiring on an idle fleet (tree/stamp.py).

    While a heartbeat runs, OnUnitActiveSec has no next time yet ("infinity"): on a
    slow host (a VM under TCG) that window is many seconds, and the check once failed
    in it. So a running heartbeat is waited for, bounded; no next time and no
    heartbeat running fails at once."""
    timer = host.service("mirrorfleet-heartbeat.timer")
    assert timer.is_enabled and timer.is_running
    show = "systemctl show -p NextElapseUSecMonotonic --value mirrorfleet-heartbeat.timer"
    running = "systemctl is-active mirrorfleet-heartbeat.service"
    deadline = time.monotonic() + HEARTBEAT_RUN_LIMIT
    while host.check_output(show).strip() in ("", "infinity"):
        if host.run(running).stdout.strip() != "activating":
            # a heartbeat that ended between the two reads has armed the timer again
            assert host.check_output(show).strip() not in ("", "infinity"), (
                "the heartbeat timer has no next run, and no heartbeat is running"
            )
            break
        assert time.monotonic() < deadline, f"a heartbeat ran over {HEARTBEAT_RUN_LIMIT}s"
        time.sleep(1)


def test_mirrorfleet_command_works(host) -> None:
    assert host.run("mirrorfleet --version").stdout.startswith("mirrorfleet, version")


@pytest.mark.parametrize(
    "path", ["/etc/mirrorfleet/tsig-monitor.key", "/etc/bind/mirrorfleet-keys.conf"]
)
def test_origin_holds_no_dns_key(host, path: str) -> None:
    assert not host.file(path).exists
