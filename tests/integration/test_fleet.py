"""Origin and mirrors on real hosts: publish, push propagation, the fallback timer,
pip installing from a mirror, real pip and uv installing real projects from trees
imported in each layout `origin import` takes (issue 16), and bad upstream input
keeping the old state. Readers during syncs and a full disk are in tests/faults.

Steps run in file order on one lab of 4 hosts (3 mirrors).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import indextrees
import pyclients
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from labkit import (
    AS_SERVICE,
    BIN,
    changed_operations,
    get_json,
    host_of_target,
    import_and_publish,
    served_serial,
    step,
    syncs_held,
)

from mirrorfleet.config import DnsConfig, dumps
from mirrorfleet.lab.inventory import public_name
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.proxy_process import running_proxy
from mirrorfleet.tree.keys import MONITOR_TSIG, parse_public_key
from mirrorfleet.tree.stamp import Stamp

pytestmark = pytest.mark.lab

LAB, SUBNET = "fl", "10.236.0.0/24"
MIRRORS = ["mirror1", "mirror2", "mirror3"]
PUBLISH = (*AS_SERVICE, "origin", "publish", "--json")
PROPAGATION_TIMEOUT = 10.0
SYNC_SERVICE, SYNC_TIMER = "mirrorfleet-sync.service", "mirrorfleet-sync.timer"
SYNC_INTERVAL = 20  # mirror3's sync_interval in fleet_topology.toml
# the timer's period, its RandomizedDelaySec (a tenth), the sync, and a loaded machine
TIMER_TIMEOUT = 2 * SYNC_INTERVAL + 30


@pytest.fixture(scope="module")
def lab(make_lab):
    lab = make_lab(LAB, SUBNET)
    lab.up("--topology", str(Path(__file__).with_name("fleet_topology.toml")))
    lab.pyinfra("deploy.py")
    return lab


@pytest.fixture(scope="module")
def public_key(lab):
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    return parse_public_key((secrets / "origin-signing.pub").read_text())


def serials(lab, public_key) -> dict[str, int | None]:
    return {host: served_serial(lab, host, public_key) for host in MIRRORS}


def publish(lab, *extra: str) -> dict:
    return json.loads(lab.check("origin", *PUBLISH, *extra))


def test_publish_reaches_every_mirror(lab, public_key) -> None:
    lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "20")
    result = publish(lab)
    assert result["serial"] == 1 and len(result["changed"]) == 20
    assert set(result["pings"].values()) == {202}
    lab.wait_for(lambda: set(serials(lab, public_key).values()) == {1}, PROPAGATION_TIMEOUT)


def test_second_tier_syncs_from_the_first_and_records_the_hops(lab) -> None:
    config = lab.check("mirror3", "cat", "/etc/mirrorfleet/agent.toml")
    assert f'upstream_http = "http://{public_name("mirror1")}/"' in config
    assert f'notify = ["http://{public_name("mirror3")}:8873/ping"]' in lab.check(
        "mirror1", "cat", "/etc/mirrorfleet/agent.toml"
    )
    assert "mirror3" not in lab.check("origin", "cat", "/etc/mirrorfleet/origin.toml")
    traces = lab.check("mirror3", "ls", "/srv/mirror/.mirror/trace").split()
    assert traces == ["mirror1", "mirror3", "origin"]


def test_pip_installs_from_a_mirror(lab, tmp_path: Path) -> None:
    """The venv's pip, told only the mirror: no config of this machine's is read
    (`--isolated` still reads /etc/pip.conf and /etc/xdg/pip)."""
    env = pyclients.sandbox_env(tmp_path / "home", PIP_CONFIG_FILE="/dev/null")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    mirror = lab.address("mirror2")
    argv = [str(venv / "bin/pip"), "install", "--no-cache-dir", "-q"]
    argv += ["--index-url", f"http://{mirror}/simple/", "--trusted-host", mirror, "demo-00007"]
    install = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    assert install.returncode == 0, install.stderr
    version = subprocess.run(
        [str(venv / "bin/python"), "-c", "import demo_00007; print(demo_00007.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert version.stdout.strip() == "1.0.0"


def test_new_release_is_pushed_to_every_mirror(lab, public_key) -> None:
    lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--add", "demo-00007==1.0.1")
    result = publish(lab)
    assert result["serial"] == 2 and result["changed"] == ["demo-00007"]
    lab.wait_for(lambda: set(serials(lab, public_key).values()) == {2}, PROPAGATION_TIMEOUT)
    page = urllib.request.urlopen(
        f"http://{lab.address('mirror3')}/simple/demo-00007/", timeout=5
    ).read()
    assert b"demo_00007-1.0.1-py3-none-any.whl" in page


def last_sync(lab, host: str) -> dict:
    """The agent's own account of its last sync that copied something (GET /status on
    the host): a timer's or a late ping's "unchanged" check may follow it at any time."""
    status = json.loads(lab.check(host, "curl", "-sf", "http://localhost:8873/status"))
    return status["last_synced"] or {}


def add_release(lab, release: str) -> None:
    lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--add", release)


def test_pushed_releases_arrive_by_the_change_records_on_every_tier(lab) -> None:
    """The release above reached mirror1 and mirror2 from the origin and mirror3 from
    mirror1, each by the records alone: no walk of the tree."""
    for host in MIRRORS:
        last = last_sync(lab, host)
        assert (last["status"], last["mode"], last["why_full"]) == ("synced", "delta", ""), host


def test_a_mirror_several_serials_behind_catches_up_in_one_delta(lab, public_key) -> None:
    with syncs_held(lab, "mirror2"):
        start = serials(lab, public_key)["mirror2"]
        for i in range(3):
            add_release(lab, f"demo-0001{i}==2.0")
            publish(lab)
    head = start + 3
    lab.wait_for(lambda: serials(lab, public_key)["mirror2"] == head, PROPAGATION_TIMEOUT)
    last = last_sync(lab, "mirror2")
    assert (last["previous"], last["serial"], last["mode"]) == (start, head, "delta"), last
    page = urllib.request.urlopen(f"http://{lab.address('mirror2')}/simple/demo-00012/", timeout=5)
    assert b"demo_00012-2.0-py3-none-any.whl" in page.read()


def test_a_deleted_project_disappears_from_every_mirror(lab, public_key) -> None:
    lab.check(
        "origin", "rm", "-r", "/srv/mirror/simple/demo-00019", "/srv/mirror/packages/demo-00019"
    )
    result = publish(lab)
    assert result["removed"] == ["demo-00019"], result
    lab.wait_for(
        lambda: set(serials(lab, public_key).values()) == {result["serial"]}, PROPAGATION_TIMEOUT
    )
    for host in MIRRORS:
        gone = lab.exec(
            host, "ls", "/srv/mirror/simple/demo-00019", "/srv/mirror/packages/demo-00019"
        )
        assert gone.returncode != 0 and gone.stdout == "", (host, gone.stdout)
        assert last_sync(lab, host)["mode"] == "delta", host


def test_a_missing_record_means_a_full_sync_that_ends_right(lab, public_key) -> None:
    record = ""
    with syncs_held(lab, "mirror2"):
        add_release(lab, "demo-00004==2.0")
        first = publish(lab)["serial"]
        add_release(lab, "demo-00005==2.0")
        head = publish(lab)["serial"]
        record = f"/srv/mirror/.mirror/changes/{first}.json"
        lab.check("origin", "mv", record, "/root/record.json")
    try:
        lab.wait_for(lambda: serials(lab, public_key)["mirror2"] == head, PROPAGATION_TIMEOUT)
    finally:
        if record:
            lab.check("origin", "mv", "/root/record.json", record)
    last = last_sync(lab, "mirror2")
    assert last["mode"] == "full" and f"record {first} is missing upstream" in last["why_full"]
    for project in ("demo-00004", "demo-00005"):
        wheel = f"packages/{project}/{project.replace('-', '_')}-2.0-py3-none-any.whl"
        assert lab.exec("mirror2", "test", "-f", f"/srv/mirror/{wheel}").returncode == 0


def test_the_audit_repairs_a_file_deleted_behind_the_agents_back(lab, public_key) -> None:
    wheel = "/srv/mirror/packages/demo-00003/demo_00003-1.0.0-py3-none-any.whl"
    original = lab.check("mirror1", "sha256sum", wheel)
    lab.check("mirror1", "rm", wheel)
    lab.check("mirror1", "systemctl", "start", "mirrorfleet-audit.service")  # runs to its end
    assert lab.check("mirror1", "sha256sum", wheel) == original
    invocation = unit_show(lab, "mirror1", "mirrorfleet-audit.service", "InvocationID")
    journal = lab.check(
        "mirror1",
        "journalctl",
        f"_SYSTEMD_INVOCATION_ID={invocation['InvocationID']}",
        "-o",
        "cat",
        "--no-pager",
    )
    assert "(full: asked for)" in journal, journal


def unit_show(lab, host: str, unit: str, *props: str) -> dict[str, str]:
    """systemd's own record of a unit: property -> value."""
    out = lab.check(host, "systemctl", "show", "-p", ",".join(props), unit)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


TIMESPAN = re.compile(r"(\d+(?:\.\d+)?)(us|ms|min|s|h|d)\b")
MICROSECONDS = {"us": 1, "ms": 1e3, "s": 1e6, "min": 60e6, "h": 3600e6, "d": 86400e6}


def microseconds(shown: str) -> int:
    """A monotonic time as `systemctl show` prints it: raw µs for a service's
    ExecMainStartTimestampMonotonic, a timespan ("3h 1min 45.904934s") for a timer's
    LastTriggerUSecMonotonic."""
    if shown.isdigit():
        return int(shown)
    parts = TIMESPAN.findall(shown)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == shown.replace(" ", ""), shown
    return round(sum(float(n) * MICROSECONDS[u] for n, u in parts))


def test_without_pushes_the_fallback_timer_gets_there(lab, public_key) -> None:
    """mirror3's agent is stopped, so no push reaches it and nothing here starts a
    sync: the serial must arrive by a run of mirrorfleet-sync.service that the timer
    started (its start is the timer's last trigger) and that synced that serial."""
    lab.check("mirror3", "systemctl", "stop", "mirrorfleet-agent.service")
    try:
        before = unit_show(lab, "mirror3", SYNC_SERVICE, "InvocationID")["InvocationID"]
        publish_serial = publish(lab, "--force")["serial"]
        lab.wait_for(
            lambda: serials(lab, public_key)["mirror1"] == publish_serial, PROPAGATION_TIMEOUT
        )
        took = lab.wait_for(
            lambda: serials(lab, public_key)["mirror3"] == publish_serial, TIMER_TIMEOUT
        )
        print(f"mirror3 had serial {publish_serial} {took:.1f}s after mirror1, by the timer")
        timer = unit_show(lab, "mirror3", SYNC_TIMER, "ActiveState", "LastTriggerUSecMonotonic")
        run = unit_show(
            lab, "mirror3", SYNC_SERVICE, "InvocationID", "ExecMainStartTimestampMonotonic"
        )
        assert timer["ActiveState"] == "active"
        assert run["InvocationID"] not in ("", before), "the sync service never ran"
        triggered = microseconds(timer["LastTriggerUSecMonotonic"])
        started = microseconds(run["ExecMainStartTimestampMonotonic"])
        assert 0 <= started - triggered < 1_000_000, (timer, run)  # the timer started it
        journal = lab.check(
            "mirror3",
            "journalctl",
            f"_SYSTEMD_INVOCATION_ID={run['InvocationID']}",
            "-o",
            "cat",
            "--no-pager",
        )
        assert f"synced: serial {publish_serial}" in journal, journal
        agent = lab.exec("mirror3", "systemctl", "is-active", "mirrorfleet-agent.service")
        assert agent.stdout.strip() == "inactive"  # no push could have done it
    finally:
        lab.check("mirror3", "systemctl", "start", "mirrorfleet-agent.service")


def test_forged_upstream_stamp_keeps_the_old_state(lab, public_key) -> None:
    before = serials(lab, public_key)
    stamp_path = "/srv/mirror/.mirror/stamp.json"
    good = lab.check("origin", "cat", stamp_path)
    forged = Stamp.new(before["mirror1"] + 5, "origin").sign(Ed25519PrivateKey.generate())
    lab.check(
        "origin",
        "sh",
        "-c",
        f"cat > {stamp_path}.forged && mv {stamp_path}.forged {stamp_path}",
        input_text=forged.decode(),
    )
    try:
        failed = lab.exec("mirror1", "systemctl", "start", "mirrorfleet-sync.service")
        assert failed.returncode != 0
        journal = lab.check(
            "mirror1", "journalctl", "-u", "mirrorfleet-sync.service", "-n", "20", "--no-pager"
        )
        assert "rejected" in journal and "unknown key" in journal
        assert serials(lab, public_key) == before
    finally:
        lab.check("origin", "sh", "-c", f"cat > {stamp_path}", input_text=good)


def test_bad_agent_config_keeps_serving_and_a_deploy_repairs_it(lab, public_key) -> None:
    serving = served_serial(lab, "mirror2", public_key)
    lab.check("mirror2", "sh", "-c", "echo 'bogus = 1' >> /etc/mirrorfleet/agent.toml")
    lab.exec("mirror2", "systemctl", "restart", "mirrorfleet-agent.service")
    lab.wait_for(
        lambda: (
            "unknown keys bogus"
            in lab.check(
                "mirror2", "journalctl", "-u", "mirrorfleet-agent", "-n", "20", "--no-pager"
            )
        ),
        PROPAGATION_TIMEOUT,
    )
    assert lab.exec("mirror2", "systemctl", "is-active", "mirrorfleet-agent").returncode != 0
    assert served_serial(lab, "mirror2", public_key) == serving  # nginx still serves
    ops = lab.pyinfra("deploy.py")["results"]["operations"]
    assert "mirrorfleet mirror | Configure the sync agent" in [
        op["name"] for op in ops if op["success"]
    ]
    serial = publish(lab, "--force")["serial"]
    lab.wait_for(lambda: serials(lab, public_key)["mirror2"] == serial, PROPAGATION_TIMEOUT)


def test_unauthenticated_ping_is_refused_and_counted(lab) -> None:
    url = f"http://{lab.address('mirror1')}:8873"
    request = urllib.request.Request(f"{url}/ping", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401
    metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    assert 'mirrorfleet_agent_pings_total{verdict="rejected"}' in metrics


# -- issue 16: real pip and uv, real projects, each layout `origin import` takes -------

ZONE = "mirrors.lab.test."
LAYOUTS = {"plain": indextrees.plain, "bandersnatch": indextrees.bandersnatch}


@pytest.fixture(scope="module")
def fleet_dns(lab, tmp_path_factory) -> Iterator[tuple[LoopbackBind, Path, Path]]:
    """This lab has no DNS hosts (test_dns_lab and test_e2e have them), so the fleet's
    records live in a BIND primary on this machine's loopback: `mirrorfleet dns apply
    --fleet` probes the lab's mirrors as the monitor does, once, and writes them there;
    `mirrorfleet pick` and `pip-config` read them as a user's machine would."""
    work = tmp_path_factory.mktemp("fleet-dns")
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    key = (secrets / "origin-signing.pub").read_text().strip()
    upstreams = {"mirror3": "mirror1"}  # fleet_topology.toml
    fleet = FleetConfig(
        f"http://{lab.address('origin')}/",
        (key,),
        tuple(
            MirrorSpec(
                label=host,
                target=f"{host}.{ZONE.rstrip('.')}",
                url=f"http://{lab.address(host)}/",
                tier=2 if host in upstreams else 1,
                upstream=upstreams.get(host, ""),
            )
            for host in MIRRORS
        ),
    )
    (work / "fleet.toml").write_text(dumps(fleet))
    with LoopbackBind(work / "bind", ZONE) as bind:
        tsig = work / "tsig.key"
        tsig.write_text(bind.keys[MONITOR_TSIG])
        tsig.chmod(0o600)
        config = DnsConfig(
            zone=ZONE,
            server="127.0.0.1",
            port=bind.primary.port,
            key_name=MONITOR_TSIG,
            key_file=tsig,
        )
        (work / "dns.toml").write_text(dumps(config))
        yield bind, work / "dns.toml", work / "fleet.toml"


def lookup_args(lab, bind: LoopbackBind) -> list[str]:
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    key = (secrets / "origin-signing.pub").read_text().strip()
    return ["--zone", ZONE, "--server", "127.0.0.1", "--port", str(bind.primary.port), "--key", key]


def control(lab, *args: str) -> str:
    """A `mirrorfleet` command on this machine, the control node."""
    proc = lab.run(str(BIN / "mirrorfleet"), *args, timeout=120)
    assert proc.returncode == 0, f"mirrorfleet {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def host_of(lab, url: str) -> str:
    address = urlsplit(url).hostname
    return next(h["name"] for h in lab.state["hosts"] if h["address"] == address)


def log_size(lab, host: str) -> int:
    return int(lab.check(host, "stat", "-c", "%s", "/var/log/nginx/access.log"))


def log_since(lab, host: str, size: int) -> list[pyclients.Request]:
    text = lab.check(host, "tail", "-c", f"+{size + 1}", "/var/log/nginx/access.log")
    return pyclients.requests_in(text)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_real_pip_and_uv_install_from_a_picked_mirror(
    lab, public_key, wheels, clients, fleet_dns, tmp_path: Path, layout: str
) -> None:
    """issue 16, Must show: the real projects of the wheel cache, in a tree of the
    given layout, imported and published on the origin; every mirror at that serial;
    then Debian's pip, the latest pip, `uv pip install` and a uv project (`uv lock`,
    `uv sync --locked`), each pointed at a mirror `mirrorfleet pip-config` picked,
    install requests (and its dependencies), packaging and six, whose only file is an
    sdist: it builds with setuptools from the same mirror (the mirror's access log
    shows the client fetching it), and nothing else is used (pip's report, uv.lock).
    The bandersnatch tree advertises `.metadata`: the latest pip and uv must use it."""
    bind, dns_toml, fleet_toml = fleet_dns
    projects = {d.project for d in wheels.dists}
    with step(f"{layout}: import and publish"):
        source = LAYOUTS[layout]([d.path for d in wheels.dists], tmp_path / layout)
        result = import_and_publish(lab, layout, source)
        assert set(result["changed"]) == projects, result["changed"]
        serial = result["serial"]
        lab.wait_for(
            lambda: set(serials(lab, public_key).values()) == {serial}, PROPAGATION_TIMEOUT
        )
    with step(f"{layout}: the fleet's records, and a pick"):
        control(lab, "dns", "apply", "--config", str(dns_toml), "--fleet", str(fleet_toml))
        pick = json.loads(control(lab, "pick", *lookup_args(lab, bind), "--json"))
        assert pick["serial"] == pick["head"]["serial"] == serial, pick
        assert host_of(lab, pick["url"]) in MIRRORS
    versions = clients.versions()
    agents = {
        "debian-pip": f"pip/{versions['debian-pip'].split()[0]}",
        "latest-pip": f"pip/{versions['latest-pip']}",
        "uv-pip": f"uv/{versions['uv']}",
        "uv-project": f"uv/{versions['uv']}",
    }
    wanted = {d.path.name for d in wheels.dists if d.project in pyclients.INSTALLED}
    build = {d.path.name for d in wheels.dists if d.project in pyclients.BUILD_REQUIREMENTS}
    for client in pyclients.CLIENTS:
        with step(f"{layout}: {client}"):
            fmt = {"debian-pip": "pip.conf", "uv-pip": "uv"}.get(client, "env")
            config = control(lab, "pip-config", *lookup_args(lab, bind), "--format", fmt)
            index = re.search(r"http://[^\s\"]+/simple/", config)
            assert index, config
            mirror = host_of(lab, index[0])
            before = log_size(lab, mirror)
            if client == "debian-pip":
                run = clients.debian_pip(config)
            elif client == "latest-pip":
                run = clients.latest_pip(pyclients.parse_exports(config))
            elif client == "uv-pip":
                run = clients.uv_pip(config)
            else:
                run = clients.uv_project(pyclients.parse_exports(config))
            assert run.index == index[0], (run.index, index[0])
            pyclients.check_run(run, wheels)
            seen = log_since(lab, mirror, before)
            fetched = pyclients.files_fetched(seen, agents[client])
            assert wanted | build <= fetched, sorted((wanted | build) - fetched)
            metadata = {f"{name}.metadata" for name in wanted | build if name.endswith(".whl")}
            if layout == "bandersnatch" and client != "debian-pip":
                assert metadata <= fetched, sorted(metadata - fetched)
            if layout == "plain":
                assert not metadata & fetched
            print(f"{layout}: {client} from {mirror} in {run.seconds:.1f}s")


# -- issue 20: `mirrorfleet proxy` in front of the lab's fleet, mirrors dying mid-install --

# proxy_server's /metrics: `name{labels} value` lines (prometheus_client's text format)
METRIC = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)
UNREACHABLE = 'mirrorfleet_proxy_failovers_total{reason="unreachable"}'
FILES_OK = tuple(
    f'mirrorfleet_proxy_requests_total{{kind="{kind}",outcome="ok"}}'
    for kind in ("file", "metadata")
)
FAULTS = 2  # the mirror in use, then the one the proxy moved to


def proxy_metrics(base: str) -> dict[str, float]:
    """The proxy's /metrics: 'name{labels}' -> value."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f"{name}{{{labels}}}": float(value) for name, labels, value in METRIC.findall(text)}


def files_answered(metrics: dict[str, float]) -> float:
    """Files and .metadata the proxy handed a client, verified."""
    return sum(metrics.get(key, 0.0) for key in FILES_OK)


@contextmanager
def lab_proxy(lab, bind: LoopbackBind, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mirrorfleet proxy` on this machine, reading the fleet's records as a user's
    machine would: its base URL, once /status answers, and its process."""
    with running_proxy(
        [str(BIN / "mirrorfleet")], lookup_args(lab, bind), log, timeout=1, ready_within=60
    ) as (proc, base):
        yield base, proc


class ArmedStop:
    """`systemctl stop nginx` on a lab host through `mirrorfleet lab exec`, as
    LabRun.exec runs it, but with the SSH session opened beforehand: a shell waits on
    its stdin, so nginx refuses connections ~0.07 s after the trigger rather than
    ~0.5 s."""

    SCRIPT = "echo armed; read go && systemctl stop nginx"

    def __init__(self, lab, host: str) -> None:
        self.host = host
        argv = [str(BIN / "mirrorfleet"), "lab", "exec", host, "--", "sh", "-c", self.SCRIPT]
        self.proc = subprocess.Popen(
            argv,
            env=lab.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.fired = self.returned = 0.0  # monotonic
        self.outcome = ""  # what the stop said, if it failed
        self._waiter = threading.Thread(target=self._wait, daemon=True)

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:  # the session ended: it says why
            assert self.proc.stderr is not None
            line = self.proc.stderr.read()
        assert line.strip() == "armed", f"{self.host}: lab exec: {line}"

    def fire(self) -> None:
        """Stop nginx now; the stop runs on while the caller watches the proxy."""
        assert self.proc.stdin is not None
        self.fired = time.monotonic()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self._waiter.start()

    def _wait(self) -> None:
        _, err = self.proc.communicate(timeout=60)  # closes stdin
        self.returned = time.monotonic()
        if self.proc.returncode != 0:
            self.outcome = f"{self.host}: systemctl stop nginx exited {self.proc.returncode}: {err}"

    def finish(self) -> None:
        """Wait for a fired stop; end an unfired one (`read` meets EOF: nothing stops)."""
        if self.fired:
            self._waiter.join(60)
        elif self.proc.poll() is None:
            self.proc.communicate("", timeout=60)


@dataclass
class Fault:
    host: str
    seen: float  # seconds from the client's start (it makes its venv first) to the trigger
    files: float  # files the proxy had answered at the trigger
    refused: float  # ... to when nginx there refused connections
    stop: ArmedStop

    @property
    def returned(self) -> float:
        """When `systemctl stop nginx` had returned, in the same seconds."""
        return self.seen + self.stop.returned - self.stop.fired


def refuses(address: str, port: int = 80, timeout: float = 10) -> bool:
    """Whether address:port refuses connections within timeout (polled every 2 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=0.5).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


class FaultInjector(threading.Thread):
    """Stops nginx on the mirror the proxy uses once the client got a file through it,
    then on the mirror the proxy moved to once a file was answered after that,
    reading the proxy's /status and /metrics every 20 ms as an operator's dashboard
    would.

    From a trigger until nginx refuses connections (~0.07 s) the proxy is held
    (SIGSTOP, then SIGCONT): the client's requests wait for it, so each stop lands
    between two of them however fast the client is. uv reads the pages and .metadata
    of this install in ~0.15 s, builds six, then fetches every wheel at once in
    ~0.02 s: a stop that lands after the .metadata leaves the second one nothing to
    hit. Which mirror served which file is read from the nginx logs afterwards."""

    POLL = 0.02

    def __init__(self, lab, base: str, proxy: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.lab, self.base, self.proxy = lab, base, proxy
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.armed: dict[str, ArmedStop] = {}
        self.started = time.monotonic()

    def run(self) -> None:
        try:
            self._inject()
        except Exception as exc:  # recorded, so the test fails with it
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _inject(self) -> None:
        threshold = files_answered(proxy_metrics(self.base))
        while len(self.faults) < FAULTS and not self.done.is_set():
            answered = files_answered(proxy_metrics(self.base))
            in_use = get_json(f"{self.base}/status")["in_use"]
            host = host_of_target(in_use["target"]) if in_use else None
            if host and host not in {f.host for f in self.faults} and answered > threshold:
                self._stop_nginx(host, answered)
                threshold = answered
            time.sleep(self.POLL)

    def _stop_nginx(self, host: str, answered: float) -> None:
        stop = self.armed[host]
        os.kill(self.proxy.pid, signal.SIGSTOP)
        try:
            stop.fire()
            refused = refuses(self.lab.address(host))
        finally:
            os.kill(self.proxy.pid, signal.SIGCONT)
        if not refused:
            raise AssertionError(f"nginx on {host} still takes connections 10 s after the stop")
        seen, now = stop.fired - self.started, time.monotonic() - self.started
        self.faults.append(Fault(host, seen, answered, now, stop))

    def __enter__(self) -> FaultInjector:
        try:
            for host in MIRRORS:
                self.armed[host] = ArmedStop(self.lab, host)
            for armed in self.armed.values():
                armed.ready()
        except BaseException:
            self._finish()
            raise
        self.started = time.monotonic()
        self.start()
        return self

    def stop(self) -> None:
        """No fault from here on: the thread ends, fired stops are waited for."""
        self.done.set()
        self.join(60)
        self._finish()

    def _finish(self) -> None:
        for armed in self.armed.values():
            armed.finish()
            if armed.outcome:
                self.errors.append(armed.outcome)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_serves(lab, host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{lab.address(host)}/.mirror/stamp.json", timeout=2):
            return True
    except OSError:
        return False


def test_pip_and_uv_install_through_the_proxy_while_mirrors_die(
    lab, public_key, wheels, clients, fleet_dns, tmp_path: Path
) -> None:
    """issue 20, Must show: the latest pip and `uv pip install`, each pointed at a
    fresh `mirrorfleet proxy` by `pip-config --proxy`, install the real projects
    while nginx stops on the mirror the proxy uses, then on the one it moved to,
    mid-install. Each of the two served files before it stopped and failed a request
    after; every install succeeds, from the third mirror at the end, and the proxy's
    metrics count both failovers (a refused connection: "unreachable")."""
    bind, dns_toml, fleet_toml = fleet_dns
    with step("import and publish, every mirror at that serial"):
        source = indextrees.bandersnatch([d.path for d in wheels.dists], tmp_path / "tree")
        serial = import_and_publish(lab, "bandersnatch", source)["serial"]
        lab.wait_for(
            lambda: set(serials(lab, public_key).values()) == {serial}, PROPAGATION_TIMEOUT
        )
        control(lab, "dns", "apply", "--config", str(dns_toml), "--fleet", str(fleet_toml))
    for client in ("latest-pip", "uv-pip"):
        injector: FaultInjector | None = None
        log = tmp_path / f"proxy-{client}.log"
        try:
            with (
                lab_proxy(lab, bind, log) as (base, proc),
                step(f"{client} through the proxy"),
            ):
                fmt = "uv" if client == "uv-pip" else "env"
                where = [*lookup_args(lab, bind), "--proxy", base, "--format", fmt]
                config = control(lab, "pip-config", *where)
                before = proxy_metrics(base)
                sizes = {host: log_size(lab, host) for host in MIRRORS}
                with FaultInjector(lab, base, proc) as injector:
                    try:
                        if client == "latest-pip":
                            run = clients.latest_pip(pyclients.parse_exports(config))
                        else:
                            run = clients.uv_pip(config)
                    except pyclients.ClientFailed as exc:
                        tail = "\n".join(log.read_text().splitlines()[-40:])
                        raise pyclients.ClientFailed(f"{exc}\nthe proxy's log:\n{tail}") from None
                    finally:
                        finished = time.monotonic() - injector.started
                        injector.stop()
                after = proxy_metrics(base)
                status = get_json(f"{base}/status")
                served = {
                    host: sum(
                        1
                        for r in log_since(lab, host, sizes[host])
                        if r.path.startswith("/packages/") and r.status == 200
                    )
                    for host in MIRRORS
                }
                failovers = after[UNREACHABLE] - before[UNREACHABLE]
                for fault in injector.faults:
                    print(
                        f"{client}: nginx stopped on {fault.host}, in use, at {fault.seen:.2f}s "
                        f"({fault.files:.0f} files answered): refused connections at "
                        f"{fault.refused:.2f}s, the stop returned at {fault.returned:.2f}s"
                    )
                print(
                    f"{client}: installed in {run.seconds:.1f}s, ended {finished:.2f}s after "
                    f"the start; {failovers:.0f} unreachable failovers of "
                    f"{status['failovers']}; files each mirror served: {served}; in use at "
                    f"the end: {status['in_use']}"
                )
                assert not injector.errors, injector.errors
                assert run.index == f"{base}/simple/", run.index
                pyclients.check_run(run, wheels)
                stopped = [f.host for f in injector.faults]
                assert len(set(stopped)) == FAULTS, f"{client} ended at {finished:.2f}s: {stopped}"
                late = [f.host for f in injector.faults if f.refused >= finished]
                assert not late, f"{client} ended at {finished:.2f}s, before {late} stopped"
                assert failovers >= FAULTS, (before, after)
                failures = {host_of_target(m["target"]): m["failures"] for m in status["mirrors"]}
                assert status["in_use"], status
                third = host_of_target(status["in_use"]["target"])
                assert third in MIRRORS and third not in stopped, (third, stopped)
                for host in MIRRORS:  # each served the install in turn
                    assert served[host], (host, served)
                for host in stopped:  # and each stopped one failed a request after
                    assert failures[host], (host, failures)
        finally:
            restarted = [f.host for f in injector.faults] if injector else []
            for host in restarted:
                lab.check(host, "systemctl", "start", "nginx")
            for host in restarted:
                lab.wait_for(lambda host=host: nginx_serves(lab, host), 30)


def test_deploy_rerun_changes_nothing(lab) -> None:
    assert changed_operations(lab.pyinfra("deploy.py")) == []


def test_infra_suite_passes(lab) -> None:
    proc = lab.infra_suite()
    assert proc.returncode == 0, proc.stdout[-3000:]
