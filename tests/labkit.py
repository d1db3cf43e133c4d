"""The lab harness every lab scenario shares (tests/integration, tests/faults): drive
a lab through the real CLIs, read what it left behind, and read a mirror the way a
client does.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.resolver
import pytest
from cryptography import x509

from mirrorfleet.cli.verify import pytest_argv
from mirrorfleet.tree.stamp import Stamp, parse_stamp

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "need root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "rsync"):
        if shutil.which(tool) is None:
            return f"need {tool}"
    return None


def require_lab() -> None:
    """Skip without root and tools, except where the lab must run (CI): fail there."""
    missing = missing_prerequisite()
    if missing:
        if os.environ.get("MIRRORFLEET_REQUIRE_LAB"):
            pytest.fail(f"lab tests are required here but {missing}")
        pytest.skip(f"lab tests {missing}")


class LabRun:
    """Drive one lab through the real CLIs, as an operator would."""

    def __init__(self, name: str, subnet: str) -> None:
        self.name, self.subnet = name, subnet
        self.env = {**os.environ, "MIRRORFLEET_LAB": name}
        self.state: dict = {}

    def run(self, *argv: str, timeout: float = 600, env: dict | None = None, input_text: str = ""):
        return subprocess.run(
            list(argv),
            env=env or self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
        )

    def cli(self, *args: str, timeout: float = 600) -> dict | list:
        proc = self.run(str(BIN / "mirrorfleet"), *args, "--json", timeout=timeout)
        assert proc.returncode == 0, f"mirrorfleet {' '.join(args)} failed:\n{proc.stderr}"
        return json.loads(proc.stdout)

    def up(self, *args: str) -> dict:
        self.state = self.cli("lab", "up", "--subnet", self.subnet, *args)
        return self.state

    def down(self) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "mirrorfleet"), "lab", "down", timeout=120)

    def pyinfra(self, *args: str) -> dict:
        proc = self.run(str(BIN / "pyinfra"), "-y", "--json", "inventories/lab.py", *args)
        assert proc.returncode == 0, (
            f"pyinfra {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        )
        return json.loads(proc.stdout)

    def infra_suite(self, *extra: str) -> subprocess.CompletedProcess:
        """The checks of deployed hosts (mirrorfleet.checks) against this lab: the same
        pytest run as `mirrorfleet verify`, with pytest's own output options."""
        return self.run(*pytest_argv("inventories/lab.py"), "-q", *extra, timeout=300)

    def exec(self, host: str, *command: str, timeout: float = 120, input_text: str = ""):
        return self.run(
            str(BIN / "mirrorfleet"),
            "lab",
            "exec",
            host,
            "--",
            *command,
            timeout=timeout,
            input_text=input_text,
        )

    def check(self, host: str, *command: str, timeout: float = 120, input_text: str = "") -> str:
        proc = self.exec(host, *command, timeout=timeout, input_text=input_text)
        assert proc.returncode == 0, f"{host}: {' '.join(command)} failed:\n{proc.stderr}"
        return proc.stdout

    def address(self, host: str) -> str:
        return next(h["address"] for h in self.state["hosts"] if h["name"] == host)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
        """Seconds until predicate() held; fails the test at timeout."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                pytest.fail(f"condition not met within {timeout}s")
            time.sleep(interval)
        return time.monotonic() - start


def changed_operations(result: dict) -> list[str]:
    """Each operation a pyinfra run changed or failed, with the hosts it did so on.

    `result` is what `pyinfra -y --json` prints (LabRun.pyinfra). Its per-operation
    "success", "no_change" and "error" are lists of host names, success meaning
    changed (pyinfra_cli.prints.build_results_json), so a rerun that changed nothing
    has empty "success" and "error" everywhere. A non-empty "no_change" says nothing
    about the other hosts: checking it alone passes an operation that changed on one
    host and not on another.
    """
    results = result["results"]
    assert results is not None, "a dry run (--dry) reports no results"
    found = []
    for op in results["operations"]:
        hosts = [f"changed on {h}" for h in op["success"]]
        hosts += [f"failed on {h}" for h in op["error"]]
        if hosts:
            found.append(f"{op['name']}: {', '.join(hosts)}")
    return found


AGENT_UNITS = ("mirrorfleet-agent.service", "mirrorfleet-sync.timer")


@contextmanager
def syncs_held(lab: LabRun, host: str) -> Iterator[None]:
    """No sync on `host` until the block ends: neither its agent (pushes) nor its
    fallback timer, which may fire at any moment of a long lab run."""
    lab.check(host, "systemctl", "stop", *AGENT_UNITS)
    try:
        yield
    finally:
        lab.check(host, "systemctl", "start", *AGENT_UNITS)


@contextmanager
def step(name: str) -> Iterator[None]:
    """One named step of a scenario: any failure in it fails the test with the step's
    name and how long it ran in front of the reason.

    pytest.fail, which LabRun.wait_for raises at a timeout, raises `Failed`, a
    BaseException, so `except Exception` alone would let a timeout through nameless.
    KeyboardInterrupt and pytest.skip still pass through untouched.
    """
    started = time.monotonic()
    try:
        yield
    except (Exception, pytest.fail.Exception) as exc:  # an assertion, a timeout, a command
        reason = str(exc) or type(exc).__name__
        pytest.fail(f"step {name!r} failed after {time.monotonic() - started:.0f}s: {reason}")
    print(f"step {name!r}: {time.monotonic() - started:.1f}s")


def kernel_leftovers(lab: str) -> dict[str, list[str]]:
    """What a lab left behind, read straight from the kernel and /proc, not through
    the code under test."""
    prefix = f"mf{lab}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    )
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    procs = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "systemd-nspawn" in cmdline and f"/run/netns/{prefix}" in cmdline:
            procs.append(cmdline)
    return {
        "netns": [n for n in netns.split() if n.startswith(prefix)],
        "links": [link["ifname"] for link in links if link["ifname"].startswith(prefix)],
        "mounts": [m for m in mounts if f"/labs/{lab}/" in m],
        "processes": procs,
    }


# -- reading a lab fleet the way clients and operators do ------------------------------

AS_SERVICE = ("runuser", "-u", "mirrorfleet", "--", "mirrorfleet")
IMPORTS = "/var/tmp/mirrorfleet-import"  # on the origin: source trees to import


def import_and_publish(lab: LabRun, name: str, source: Path) -> dict:
    """A source tree onto the origin (rsync over the lab's SSH), then, as the service
    user, `origin import --list-changed | origin publish --changed -`: publish's JSON."""
    ssh = f"ssh -F {lab.state['ssh_config']}"
    lab.check("origin", "install", "-d", "-o", "mirrorfleet", IMPORTS)
    copy = lab.run(
        "rsync", "-a", "--delete", "--chmod=D755,F644", "--chown=mirrorfleet:mirrorfleet",
        "-e", ssh, f"{source}/", f"origin:{IMPORTS}/{name}/", timeout=120,
    )  # fmt: skip
    assert copy.returncode == 0, f"rsync to the origin failed: {copy.stderr}"
    pipeline = (
        f"mirrorfleet origin import {IMPORTS}/{name} --list-changed"
        " | mirrorfleet origin publish --changed - --json"
    )
    out = lab.check("origin", *AS_SERVICE[:-1], "bash", "-o", "pipefail", "-c", pipeline)
    return json.loads(out)


ZONE = "mirrors.lab.test."  # the lab inventory's mirror_zone
HREF = re.compile(rb'href="([^"#]+)(?:#sha256=([0-9a-f]{64}))?"')


def publish(lab: LabRun, *flags: str) -> int:
    """Publish on the origin as its service user; the new serial."""
    out = lab.check("origin", *AS_SERVICE, "origin", "publish", "--json", *flags)
    return int(json.loads(out)["serial"])


def add_releases(lab: LabRun, releases: dict[str, str], payload: int) -> int:
    """Add one release per project on the origin and publish them, in one exec."""
    steps = [
        f"mirrorfleet demo-content /srv/mirror --add {project}=={version} "
        f"--payload {payload} >/dev/null"
        for project, version in releases.items()
    ]
    script = " && ".join([*steps, "mirrorfleet origin publish --json"])
    return int(json.loads(lab.check("origin", *AS_SERVICE[:-1], "sh", "-c", script))["serial"])


def wheel_path(project: str, version: str) -> str:
    return f"packages/{project}/{project.replace('-', '_')}-{version}-py3-none-any.whl"


def served_stamp(base: str, public_key) -> Stamp | None:
    """The stamp a host serves, fetched over HTTP and verified, as a client would."""
    try:
        with urllib.request.urlopen(f"{base}/.mirror/stamp.json", timeout=5) as response:
            return parse_stamp(response.read(), [public_key])
    except OSError:
        return None


def served_serial(lab: LabRun, host: str, public_key) -> int | None:
    stamp = served_stamp(f"http://{lab.address(host)}", public_key)
    return stamp.serial if stamp else None


def dns_answer(lab: LabRun, server: str, name: str, rdtype: str) -> list[str]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.address(server)]
    resolver.lifetime = 5
    try:
        return sorted(r.to_text() for r in resolver.resolve(name, rdtype))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []


def listed(lab: LabRun, server: str = "dns1") -> dict[str, int]:
    """The mirrors DNS lists: SRV target (its host name: targets are the hosts'
    public names, `<host>.<zone>`) -> priority."""
    answers = dns_answer(lab, server, f"_pkgmirror._tcp.{ZONE}", "SRV")
    return {host_of_target(v.split()[3]): int(v.split()[0]) for v in answers}


def host_of_target(target: str) -> str:
    """A lab host's name from its public name (lab/inventory.public_name)."""
    name = target.rstrip(".")
    suffix = "." + ZONE.rstrip(".")
    assert name.endswith(suffix), f"{target} is not a lab public name"
    return name.removesuffix(suffix)


def meta(lab: LabRun, label: str, server: str = "dns1") -> str:
    return " ".join(dns_answer(lab, server, f"{label}._meta._pkgmirror.{ZONE}", "TXT"))


def soa_serial(lab: LabRun, server: str = "dns1") -> int:
    return int(dns_answer(lab, server, ZONE, "SOA")[0].split()[2])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def monitor_status(lab: LabRun) -> dict:
    """The monitor's status.json, as its status page reads it."""
    return get_json(f"http://{lab.address('monitor')}/status.json")


def monitor_states(lab: LabRun) -> dict[str, str]:
    return {m["label"]: m["state"] for m in monitor_status(lab)["mirrors"]}


def unit_pids(lab: LabRun, host: str, unit: str) -> list[int]:
    """Host PIDs of every process in a lab host's systemd unit, read from the cgroup
    tree, so a fault lands in microseconds rather than after an exec."""
    pattern = f"mirrorfleet/mf{lab.name}/mf{lab.name}-{host}/payload/system.slice/{unit}"
    pids: set[int] = set()
    for hierarchy in ("unified", "systemd", ""):
        try:
            text = Path("/sys/fs/cgroup", hierarchy, pattern, "cgroup.procs").read_text()
        except OSError:  # no such hierarchy, or the unit stopped and its cgroup is going
            continue
        pids.update(int(p) for p in text.split())
    return sorted(pids)


# -- killing a sync in a chosen window --------------------------------------------------

# What marks each rsync stage's command line (mirrorfleet.agent.rsync.rsync_argv). The
# last window, "move", has no rsync: it is after the last rsync, before the stamp.
SYNC_MARKERS = {
    "scan": "--existing",
    "pages": "/pages.list",
    "content": "--include=/",
    "changed content": "/changed-content.list",
    "changed pages": "/changed-pages.list",
}
# The windows of each way to sync (agent/full.py, agent/delta.py), in order.
SYNC_WINDOWS = {
    "full": ("scan", "pages", "content", "move"),
    "delta": ("changed content", "changed pages", "move"),
}


def cmdlines(pids: list[int]) -> dict[int, str]:
    """pid -> command line of the live ones (a zombie's is empty)."""
    found = {}
    for pid in pids:
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if line:
            found[pid] = line
    return found


def stage_running(pids: list[int], stage: str) -> bool:
    marker = SYNC_MARKERS[stage]
    return any(c.startswith("rsync ") and marker in c for c in cmdlines(pids).values())


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin until predicate() holds (True) or timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def kill_sync_in(
    window: str,
    pids: Callable[[], list[int]],
    rng: random.Random,
    between: Callable[[], None] | None = None,
    timeout: float = 20,
    mode: str = "full",
) -> str:
    """SIGKILL every process of a running sync (pids(): the agent and its rsync) in
    the given window; where the kill landed: the window, "after <window>" when the
    stage ended first, or "no sync seen". SIGSTOP holds the agent while its rsync
    runs on to the end: that is how a kill lands after the last rsync and before the
    stamp. between(), if given, runs with the agent held after the first stage of its
    mode (a second writer upstream)."""

    def hold_after(stage: str) -> int | None:
        agents = [p for p, c in cmdlines(pids()).items() if not c.startswith("rsync ")]
        if not agents:
            return None
        pid = agents[0]
        os.kill(pid, signal.SIGSTOP)
        poll(lambda: not stage_running(pids(), stage), timeout)
        return pid

    first, last = SYNC_WINDOWS[mode][0], SYNC_WINDOWS[mode][-2]
    writes = between is not None and window != first
    if writes and poll(lambda: stage_running(pids(), first), timeout):
        held = hold_after(first)
        between()
        if held is not None:
            os.kill(held, signal.SIGCONT)
    stage = last if window == "move" else window
    if not poll(lambda: stage_running(pids(), stage), timeout):
        return "no sync seen"
    if window == "move" and (held := hold_after(last)) is not None:
        os.kill(held, signal.SIGCONT)
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0, 0.002))
    landed = window if window == "move" or stage_running(pids(), window) else f"after {window}"
    kill_all(pids)
    return landed


def kill_all(pids: Callable[[], list[int]], timeout: float = 5) -> None:
    """SIGKILL until none is left: an rsync may fork a child between two looks."""
    deadline = time.monotonic() + timeout
    while (alive := pids()) and time.monotonic() < deadline:
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


class Reader(threading.Thread):
    """A client reading a mirror over and over: the stamp, then index pages, then
    every file they link, hashed. It records what a torn mirror would show: a linked
    file missing or wrong, or a stamp ahead of the files published at its serial."""

    def __init__(self, base: str, public_key, projects: list[str]) -> None:
        super().__init__(daemon=True)
        self.base, self.public_key, self.projects = base, public_key, projects
        self.published: dict[int, list[str]] = {}  # serial -> files it added
        self.stop = threading.Event()
        self.rounds = self.files_checked = 0
        self.torn: list[str] = []
        self.serials_seen: set[int] = set()

    def get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"{self.base}/{path}", timeout=5) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def read_once(self) -> None:
        serial = parse_stamp(self.get(".mirror/stamp.json") or b"", [self.public_key]).serial
        self.serials_seen.add(serial)
        for number, files in list(self.published.items()):
            if number <= serial:
                self.torn += [f"serial {serial}, missing {f}" for f in files if not self.get(f)]
        for project in self.projects:
            page = self.get(f"simple/{project}/")
            if page is None:
                self.torn.append(f"serial {serial}: no index for {project}")
                continue
            for href, digest in HREF.findall(page):
                path = f"simple/{project}/{href.decode()}"
                body = self.get(path)
                self.files_checked += 1
                if body is None:
                    self.torn.append(f"serial {serial}: {path} missing")
                elif digest and hashlib.sha256(body).hexdigest() != digest.decode():
                    self.torn.append(f"serial {serial}: {path} does not match its hash")

    def run(self) -> None:
        deadline = time.monotonic() + 600  # bounded even if the writer hangs
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.read_once()
            # Anything a read raises is what a client would have met: an unreachable
            # mirror, a missing or truncated stamp, one that does not verify. It is
            # recorded, never allowed to end the thread, which would hide it.
            except Exception as exc:
                self.torn.append(f"read failed: {type(exc).__name__}: {exc}")
            self.rounds += 1

    def __enter__(self) -> Reader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(30)


# -- HTTPS in a lab with an ACME CA (issue 17) -----------------------------------------

# The machine's own CA settings must not leak into a check that trusts the lab alone.
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def lab_roots(lab: LabRun) -> Path:
    """The lab's ACME roots, as `lab up` left them (mirrorfleet.lab.acme)."""
    return Path(lab.state["ssh_config"]).with_name("acme-roots.pem")


def served_certificate(address: str, name: str, roots: Path) -> x509.Certificate:
    """The certificate nginx at address serves for name (SNI), verified for that name
    against roots alone: ssl.SSLCertVerificationError when it does not verify."""
    context = ssl.create_default_context(cafile=str(roots))
    with (
        socket.create_connection((address, 443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, name: str, address: str, context: ssl.SSLContext) -> None:
        super().__init__(name, 443, context=context, timeout=5)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, 443), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def https_get(name: str, address: str, roots: Path, path: str) -> bytes:
    """GET https://name/path from address, verified for name against roots alone;
    OSError (ssl errors among them) or a non-200 as ValueError."""
    context = ssl.create_default_context(cafile=str(roots))
    conn = _PinnedHTTPS(name, address, context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"https://{name}{path}: HTTP {response.status}")
    return body


def curl_https(name: str, address: str, roots: Path, path: str = "/") -> int:
    """Real curl for https://name/path with name pinned to address, trusting roots
    alone: its exit status (0 ok, 60 a certificate that does not verify)."""
    env = {k: v for k, v in os.environ.items() if k not in CA_VARIABLES}
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "--cacert", str(roots)]
    argv += ["--resolve", f"{name}:443:{address}", f"https://{name}{path}"]
    return subprocess.run(argv, env=env, capture_output=True, timeout=20).returncode
