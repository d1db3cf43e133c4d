"""A mirror: the sync agent, its fallback and audit timers, sandboxed, holding no signing key."""

from __future__ import annotations

import json
import re

import pytest

from mirrorfleet.checks.sandboxing import SANDBOXED

INVENTORY_GROUP = "mirrors"


@pytest.mark.parametrize(
    "unit",
    [
        "nginx",
        "rsync",
        "mirrorfleet-agent.service",
        "mirrorfleet-sync.timer",
        "mirrorfleet-audit.timer",
    ],
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


@pytest.mark.parametrize(("prop", "expected"), SANDBOXED)
def test_agent_is_sandboxed(host, prop: str, expected: str) -> None:
    value = host.check_output(f"systemctl show -p {prop} --value mirrorfleet-agent.service")
    assert value == expected


@pytest.mark.parametrize(
    "unit",
    ["mirrorfleet-agent.service", "mirrorfleet-sync.service", "mirrorfleet-audit.service"],
)
def test_unit_exposure_is_ok(unit_exposure, unit: str) -> None:
    exposure = unit_exposure(unit)
    assert exposure.level <= exposure.limit, f"systemd-analyze security {exposure}"


def test_the_audit_runs_the_full_sync_on_its_schedule(host) -> None:
    """A file damaged behind the agent's back is repaired within a day: the audit
    timer is armed and its service walks the whole tree."""
    command = host.check_output("systemctl show -p ExecStart --value mirrorfleet-audit.service")
    assert "agent sync --full --wait" in command
    timer = host.check_output("systemctl show -p TimersCalendar --value mirrorfleet-audit.timer")
    assert "OnCalendar=" in timer
    show = "systemctl show -p NextElapseUSecRealtime --value mirrorfleet-audit.timer"
    assert host.check_output(show)  # armed: it has a next run


def test_unauthenticated_ping_is_refused(host) -> None:
    status = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' http://localhost:8873/ping"
    )
    assert status == "401"


def test_agent_metrics_answer(host) -> None:
    metrics = host.check_output("curl -sf http://localhost:8873/metrics")
    assert "mirrorfleet_agent_syncs_total" in metrics


def _serial(host, url: str, curl: str = "curl") -> int | None:
    raw = host.run(f"{curl} -sf {url}/.mirror/stamp.json")
    return json.loads(raw.stdout)["signed"]["serial"] if raw.rc == 0 else None


def test_serves_its_upstreams_serial(host, site) -> None:
    config = host.file("/etc/mirrorfleet/agent.toml").content_string
    upstream = next(
        line.split('"')[1] for line in config.splitlines() if line.startswith("upstream_http")
    )
    assert _serial(host, site.url, site.curl) == _serial(host, upstream.rstrip("/"))


@pytest.mark.parametrize(
    "path", ["/etc/mirrorfleet/tsig-monitor.key", "/etc/bind/mirrorfleet-keys.conf"]
)
def test_mirror_holds_no_dns_key(host, path: str) -> None:
    assert not host.file(path).exists


VERIFY = """
from mirrorfleet.config import load_agent_config
from mirrorfleet.tree.stamp import read_local_stamp
from mirrorfleet.tree.trust import KEYS_PATH, Keyring
config = load_agent_config(__import__("pathlib").Path("/etc/mirrorfleet/agent.toml"))
keys = Keyring.pinned(config.public_keys, config.root_threshold)
keys.load(config.tree / KEYS_PATH)
stamp = read_local_stamp(config.tree, keys)
print(stamp.serial if stamp else "none")
"""


@pytest.fixture(scope="module")
def served(host, site) -> int:
    serial = _serial(host, site.url, site.curl)
    if serial is None:
        pytest.skip("nothing published yet: the mirror serves no stamp")
    return serial


def test_served_stamp_verifies_with_the_pinned_key(host, served: int) -> None:
    """The installed code checks the tree's stamp, exactly as the agent does."""
    out = host.check_output(f"/opt/mirrorfleet/venv/bin/python -c '{VERIFY}'")
    assert out.strip() == str(served)


def test_a_file_named_in_an_index_is_served(host, site, served: int) -> None:
    root = host.check_output(f"{site.curl} -sf {site.url}/simple/")
    project = re.search(r'href="([^"]+/)"', root)
    assert project, "the root index names no project"
    page_url = f"{site.url}/simple/{project.group(1)}"
    page = host.check_output(f"{site.curl} -sf {page_url}")
    link = re.search(r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page)
    assert link, f"{page_url} names no file"
    digest = host.check_output(f"{site.curl} -sf {page_url}{link.group(1)} | sha256sum")
    assert digest.split()[0] == link.group(2)
