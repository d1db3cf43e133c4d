"""A mirror: the sync agent and its timer, sandboxed, holding no signing key."""

from __future__ import annotations

import json

import pytest

INVENTORY_GROUP = "mirrors"


@pytest.mark.parametrize(
    "unit",
    ["nginx", "rsync", "mirrorfleet-agent.service", "mirrorfleet-sync.timer"],
)
def test_unit_running_and_enabled(host, unit: str) -> None:
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


@pytest.mark.parametrize("socket", ["tcp://0.0.0.0:80", "tcp://0.0.0.0:873", "tcp://0.0.0.0:8873"])
def test_listening(host, socket: str) -> None:
    assert host.socket(socket).is_listening


def test_ping_secret_is_private_to_the_service_user(host) -> None:
    secret = host.file("/etc/mirrorfleet/ping.secret")
    assert (secret.user, secret.group, secret.mode) == ("mirrorfleet", "mirrorfleet", 0o600)


def test_mirror_holds_no_signing_key(host) -> None:
    assert host.run("ls /etc/mirrorfleet/*signing.key").rc != 0


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ("User", "mirrorfleet"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
    ],
)
def test_agent_is_sandboxed(host, prop: str, expected: str) -> None:
    value = host.check_output(f"systemctl show -p {prop} --value mirrorfleet-agent.service")
    assert value == expected


def test_unauthenticated_ping_is_refused(host) -> None:
    status = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' http://localhost:8873/ping"
    )
    assert status == "401"


def test_agent_metrics_answer(host) -> None:
    metrics = host.check_output("curl -sf http://localhost:8873/metrics")
    assert "mirrorfleet_agent_syncs_total" in metrics


def test_rsync_module_refuses_uploads(host) -> None:
    assert host.run("rsync /etc/hostname rsync://localhost/mirror/uploaded").rc != 0


def _serial(host, url: str) -> int | None:
    raw = host.run(f"curl -sf {url}/.mirror/stamp.json")
    return json.loads(raw.stdout)["signed"]["serial"] if raw.rc == 0 else None


def test_serves_its_upstreams_serial(host) -> None:
    config = host.file("/etc/mirrorfleet/agent.toml").content_string
    upstream = next(
        line.split('"')[1] for line in config.splitlines() if line.startswith("upstream_http")
    )
    assert _serial(host, "http://localhost") == _serial(host, upstream.rstrip("/"))
