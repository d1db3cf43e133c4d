"""The monitor: its daemon sandboxed and answering, the status page served, and the
only DNS key it may hold kept private."""

from __future__ import annotations

import json

import pytest

from mirrorfleet.checks.sandboxing import SANDBOXED

INVENTORY_GROUP = "monitor"


@pytest.mark.parametrize("unit", ["nginx", "mirrorfleet-monitor.service"])
def test_unit_running_and_enabled(host, unit: str) -> None:
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


@pytest.mark.parametrize("socket", ["tcp://0.0.0.0:80", "tcp://0.0.0.0:8874"])
def test_listening(host, socket: str) -> None:
    assert host.socket(socket).is_listening


@pytest.mark.parametrize(
    "path", ["/etc/mirrorfleet/ping.secret", "/etc/mirrorfleet/tsig-monitor.key"]
)
def test_secrets_are_private_to_the_service_user(host, path: str) -> None:
    secret = host.file(path)
    assert (secret.user, secret.group, secret.mode) == ("mirrorfleet", "mirrorfleet", 0o600)


def test_monitor_holds_no_signing_key(host) -> None:
    assert host.run("ls /etc/mirrorfleet/*signing.key").rc != 0


@pytest.mark.parametrize(
    ("prop", "expected"), [*SANDBOXED, ("ReadWritePaths", "/var/www/mirrorfleet-status")]
)
def test_daemon_is_sandboxed(host, prop: str, expected: str) -> None:
    value = host.check_output(f"systemctl show -p {prop} --value mirrorfleet-monitor.service")
    assert value == expected


# nginx (the status page) is Debian's unit, sandboxed by a drop-in (roles/nginx)
@pytest.mark.parametrize("unit", ["mirrorfleet-monitor.service", "nginx.service"])
def test_unit_exposure_is_ok(unit_exposure, unit: str) -> None:
    exposure = unit_exposure(unit)
    assert exposure.level <= exposure.limit, f"systemd-analyze security {exposure}"


def test_unauthenticated_ping_is_refused(host) -> None:
    status = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' http://localhost:8874/ping"
    )
    assert status == "401"


@pytest.mark.parametrize("where", ["status page", "daemon"])
def test_status_json_lists_every_configured_mirror(host, site, where: str) -> None:
    curl, url = (
        (site.curl, site.url) if where == "status page" else ("curl", "http://localhost:8874")
    )
    status = json.loads(host.check_output(f"{curl} -sf {url}/status.json"))
    fleet = host.check_output("grep -c '^\\[\\[mirrors\\]\\]' /etc/mirrorfleet/fleet.toml")
    assert len(status["mirrors"]) == int(fleet)


def test_status_page_is_served(host, site) -> None:
    assert "<table" in host.check_output(f"{site.curl} -sf {site.url}/")


def test_metrics_answer(host) -> None:
    metrics = host.check_output("curl -sf http://localhost:8874/metrics")
    assert "mirrorfleet_monitor_head_serial" in metrics
