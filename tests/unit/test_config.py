"""Agent and origin configs: a bad file is one clear line, before any sync starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorfleet.config import AgentConfig, load_agent_config, load_origin_config
from mirrorfleet.errors import MirrorfleetError

GOOD_AGENT = """
name = "mirror1"
tree = "/srv/mirror"
upstream_rsync = "rsync://origin/mirror/"
upstream_http = "http://origin/"
public_keys = ["Dvej1LGrusScI/8kmGloiYHiyBYweJYU6ASQ1PHw2/g="]
ping_secret = "/etc/mirrorfleet/ping.secret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_good_agent_config_and_defaults(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, GOOD_AGENT))
    assert isinstance(config, AgentConfig)
    assert config.tree == Path("/srv/mirror")
    assert config.content_paths == ("packages",)
    assert config.listen_address == ("0.0.0.0", 8873)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("bogus = 1\n", "unknown keys bogus"),
        ('preset = "cpan"\n', "preset 'cpan' is unknown"),
        ('retries = "3"\n', "retries must be an integer"),
        ("retries = true\n", "retries must be an integer"),
        ('listen = "nope"\n', "listen must be HOST:PORT"),
        ('content = ["pool/dists"]\n', "must be a top-level dir"),
        ('content = [".mirror"]\n', "must be a top-level dir"),
        ('notify = ["ftp://monitor/"]\n', "is not an http(s) URL"),
    ],
)
def test_bad_agent_config(tmp_path: Path, change: str, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_agent_config(write(tmp_path, GOOD_AGENT + change))


@pytest.mark.parametrize(
    ("line", "replacement", "message"),
    [
        ('upstream_rsync = "rsync://origin/mirror/"', 'upstream_rsync = "http://x/"', "rsync://"),
        (
            'public_keys = ["Dvej1LGrusScI/8kmGloiYHiyBYweJYU6ASQ1PHw2/g="]',
            "public_keys = []",
            "at least one key",
        ),
        ('name = "mirror1"', "", "missing required key"),
    ],
)
def test_bad_agent_values(tmp_path: Path, line: str, replacement: str, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        load_agent_config(write(tmp_path, GOOD_AGENT.replace(line, replacement)))


def test_unreadable_configs(tmp_path: Path) -> None:
    with pytest.raises(MirrorfleetError, match="does not exist"):
        load_agent_config(tmp_path / "missing.toml")
    with pytest.raises(MirrorfleetError, match="unreadable"):
        load_origin_config(write(tmp_path, "name = [unclosed"))


def test_bad_agent_config_exits_1_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("mirrorfleet"))
    path = write(tmp_path, GOOD_AGENT + "bogus = 1\n")
    proc = subprocess.run(
        [cli, "agent", "sync", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "unknown keys bogus" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("ttl = 5\n", "ttl 30-86400"),
        ("port = 0\n", "port 1-65535"),
        ("max_withdraw_share = 0\n", "percentage"),
        ("owner = 7\n", "owner must be a string"),
    ],
)
def test_bad_dns_config(tmp_path: Path, extra: str, message: str) -> None:
    from mirrorfleet.config import load_dns_config

    path = tmp_path / "dns.toml"
    path.write_text(
        'zone = "m.example."\nserver = "192.0.2.1"\nkey_name = "k"\nkey_file = "/k"\n' + extra
    )
    with pytest.raises(MirrorfleetError, match=message):
        load_dns_config(path)


GOOD_MONITOR = (
    'fleet = "/etc/mirrorfleet/fleet.toml"\nping_secret = "/etc/mirrorfleet/ping.secret"\n'
)


def test_good_monitor_config_and_defaults(tmp_path: Path) -> None:
    from mirrorfleet.config import load_monitor_config

    path = tmp_path / "monitor.toml"
    path.write_text(GOOD_MONITOR)
    config = load_monitor_config(path)
    assert (config.interval, config.down_after, config.min_listed) == (30, 2, 1)
    assert config.listen_address == ("0.0.0.0", 8874)
    assert config.dns == Path()  # unset: probe and report only


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("interval = 0\n", "interval must be 1-3600"),
        ("down_after = 0\n", "down_after must be 1-100"),
        ("spot_checks = 50\n", "spot_checks must be 0-20"),
        ("max_parallel = 0\n", "max_parallel must be 1-256"),
        ('listen = "nowhere"\n', "listen must be HOST:PORT"),
        ('interval = "30"\n', "interval must be an integer"),
        ("lag = 3\n", "unknown keys lag"),
    ],
)
def test_bad_monitor_config(tmp_path: Path, extra: str, message: str) -> None:
    from mirrorfleet.config import load_monitor_config

    path = tmp_path / "monitor.toml"
    path.write_text(GOOD_MONITOR + extra)
    with pytest.raises(MirrorfleetError, match=message):
        load_monitor_config(path)
