"""`mirrorfleet proxy-unit` and the proxy's own option checks, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))


def run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MIRRORFLEET, *argv], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def test_the_units_it_writes_are_units_systemd_takes(tmp_path: Path) -> None:
    done = run("proxy-unit", "--write", "--listen", "127.0.0.1:4000", XDG_CONFIG_HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "systemd" / "user"
    socket, service = folder / "mirrorfleet-proxy.socket", folder / "mirrorfleet-proxy.service"
    assert "ListenStream=127.0.0.1:4000" in socket.read_text()
    assert f"ExecStart={MIRRORFLEET} proxy" in service.read_text()
    assert "systemctl --user enable --now mirrorfleet-proxy.socket" in done.stderr
    system = json.loads(run("proxy-unit", "--system", "--json").stdout)
    assert system["directory"] == "/etc/systemd/system" and not system["written"]
    for name, text in system["units"].items():
        (tmp_path / name).write_text(text)
    assert "DynamicUser=yes" in system["units"]["mirrorfleet-proxy.service"]
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in system["units"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_bad_listen_address_is_refused_before_anything_starts() -> None:
    for argv in (["proxy", "--zone", "z.", "--key", "k"], ["proxy-unit"]):
        done = run(*argv, "--listen", "localhost")
        assert done.returncode == 2 and "is not HOST:PORT" in done.stderr, done.stderr


def test_pip_config_says_when_no_proxy_answers() -> None:
    done = run("pip-config", "--zone", "z.", "--key", "k", "--proxy", "http://127.0.0.1:9/")
    assert done.returncode == 1
    assert "no mirrorfleet proxy answers at http://127.0.0.1:9/" in done.stderr
    assert "mirrorfleet proxy-unit --write" in done.stderr


def test_the_command_hosts_run_never_loads_the_proxy() -> None:
    """Hosts install the wheel with --no-deps over Debian's packages, which have no
    urllib3 there: the proxy and its pool load only when `proxy` runs."""
    code = (
        "import sys, mirrorfleet.cli; "
        "print(sorted(m for m in ('urllib3', 'mirrorfleet.client.proxy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
