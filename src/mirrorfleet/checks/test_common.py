"""What the common role promises on every host."""

from __future__ import annotations

import pytest

INVENTORY_GROUP = "all"


@pytest.mark.parametrize("package", ["python3", "python3-venv", "rsync", "curl", "openssh-server"])
def test_base_package_installed(host, package: str) -> None:
    assert host.package(package).is_installed


def test_sshd_running_and_enabled(host) -> None:
    sshd = host.service("ssh")
    assert sshd.is_running
    assert sshd.is_enabled


def test_sshd_listens_on_22(host) -> None:
    assert host.socket("tcp://0.0.0.0:22").is_listening


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("x11forwarding", "no"),
        ("permitrootlogin", "without-password"),
        ("maxauthtries", "3"),
    ],
)
def test_sshd_effective_setting(host, setting: str, expected: str) -> None:
    effective = dict(
        line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line
    )
    assert effective[setting] == expected


def test_service_user_is_unprivileged(host, inventory_host) -> None:
    user = host.user(inventory_host.data.get("service_user", "mirrorfleet"))
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert "sudo" not in user.groups


def test_config_dir_is_closed_to_others(host, inventory_host) -> None:
    config = host.file(inventory_host.data.get("config_dir", "/etc/mirrorfleet"))
    assert config.is_directory
    assert config.user == "root"
    assert config.group == inventory_host.data.get("service_user", "mirrorfleet")
    assert config.mode == 0o750


def test_time_sync_enabled(host) -> None:
    assert host.service("systemd-timesyncd").is_enabled
