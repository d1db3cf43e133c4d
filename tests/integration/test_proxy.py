"""Issue 20: `mirrorfleet proxy` against real parts on loopback: a BIND primary the
monitor writes, three mirrors each on its own HTTP server (so one can die alone), the
`mirrorfleet proxy` command as a user runs it, and real pip reading through it.

Every test starts its own proxy, so no page is in its cache before the test breaks a
mirror: what the proxy serves is what it fetched and checked then.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mirrorfleet.content import pypi
from mirrorfleet.origin.publish import publish
from mirrorfleet.testing.loopback import free_port, stop_process
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.loopback_fleet import LoopbackFleet, loopback_monitor
from mirrorfleet.testing.proxy_process import running_proxy
from mirrorfleet.tree.keys import SecretsDir, init_secrets
from mirrorfleet.tree.manifest import shard_path
from mirrorfleet.tree.stamp import STAMP_PATH

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
ZONE = "mirrors.test."
MIRRORS = ("m1", "m2", "m3")
PROJECTS = ("demo-00000", "demo-00001", "demo-00002")
TIMEOUT = 1.0  # the proxy's --timeout: DNS tries; mirrors get twice that


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: loopback BIND needs no lab."""


@dataclass
class World:
    fleet: LoopbackFleet
    bind: LoopbackBind
    old_stamp: bytes  # serial 1's stamp, validly signed
    old_page: bytes  # demo-00000's page at serial 1

    def lookup_args(self) -> list[str]:
        key = self.fleet.secrets.public_key.read_text().strip()
        port = str(self.bind.primary.port)
        return ["--zone", ZONE, "--server", "127.0.0.1", "--port", port, "--key", key]

    def restore(self) -> None:
        """Every mirror a faithful copy of the origin, and answering."""
        for label in MIRRORS:
            shutil.rmtree(self.fleet.tree(label))
            self.fleet.sync(label)
            if label not in self.fleet.servers:
                self.fleet.start(label)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("proxy")
    init_secrets(root / "secrets")
    fleet = LoopbackFleet(root, SecretsDir(root / "secrets"), MIRRORS, own_servers=True)
    old_stamp = (fleet.origin.tree / STAMP_PATH).read_bytes()
    old_page = (fleet.origin.tree / "simple/demo-00000/index.html").read_bytes()
    fleet.release("2.0", "demo-00000")
    for label in MIRRORS:
        fleet.sync(label)
    try:
        with LoopbackBind(root / "bind", ZONE) as bind:
            monitor = loopback_monitor(fleet, bind, root / "status", lag_grace=0)
            monitor.round(set(MIRRORS), refresh_head=True)
            yield World(fleet, bind, old_stamp, old_page)
    finally:
        fleet.close()


class Running:
    def __init__(self, proc: subprocess.Popen, base: str, log: Path) -> None:
        self.proc, self.base, self.log = proc, base, log

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def status(self) -> dict:
        return json.loads(self.get("/status")[2])

    def in_use(self) -> str:
        """The mirror that answers now: its label."""
        _, headers, _ = self.get(f"/simple/{PROJECTS[2]}/")
        return headers["X-Mirrorfleet-Mirror"].split(".")[0]


@pytest.fixture
def proxy(world: World, tmp_path: Path) -> Iterator[Running]:
    lookup = world.lookup_args()
    try:
        with running_proxy([MIRRORFLEET], lookup, tmp_path / "proxy.log", timeout=TIMEOUT) as (
            proc,
            base,
        ):
            yield Running(proc, base, tmp_path / "proxy.log")
    finally:
        world.restore()


def origin_file(world: World, path: str) -> bytes:
    return (world.fleet.origin.tree / path).read_bytes()


def pip_download(
    proxy: Running, dest: Path, *projects: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Real pip, with no config of this machine's, reading only the proxy."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(dest),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    argv = [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps"]
    argv += ["--index-url", f"{proxy.base}/simple/", "-d", str(dest / "out"), *projects]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def test_pages_and_files_come_verified_and_say_from_where(world: World, proxy: Running) -> None:
    status, headers, body = proxy.get("/simple/demo-00000/")
    assert status == 200
    assert body == origin_file(world, "simple/demo-00000/index.html")
    assert headers["X-Mirrorfleet-Serial"] == "2"
    assert headers["X-Mirrorfleet-Mirror"] in {f"{m}.example.net" for m in MIRRORS}
    assert headers["X-Mirrorfleet-Verified"] == "yes"
    assert headers["Content-Type"] == "application/vnd.pypi.simple.v1+html"
    wheel = "packages/demo-00000/demo_00000-2.0-py3-none-any.whl"
    assert f"{wheel}".split("/")[-1].encode() in body
    for path in (wheel, f"{wheel}.metadata"):
        status, _, got = proxy.get(f"/{path}")
        assert status == 200 and got == origin_file(world, path)
    # PEP 503: one URL per project
    status, headers, _ = proxy.get("/simple/Demo_00000/")
    assert status == 200 and headers["X-Mirrorfleet-Serial"] == "2"  # after the redirect
    # absent by the signed manifest, and never linked: both refused, no guess
    assert proxy.get("/simple/no-such-project/")[0] == 404
    assert proxy.get("/packages/elsewhere/x-1.0.tar.gz")[0] == 404


def test_a_file_asked_for_before_its_page_is_proven_by_the_page_it_names(
    world: World, proxy: Running
) -> None:
    """uv keeps pages between runs: its first request to a new proxy can be a file."""
    sdist = "packages/demo-00000/demo_00000-1.0.0.tar.gz"
    status, headers, body = proxy.get(f"/{sdist}")
    assert status == 200 and body == origin_file(world, sdist)
    assert headers["X-Mirrorfleet-Verified"] == "yes"
    metrics = proxy.get("/metrics")[2].decode()
    assert 'mirrorfleet_proxy_requests_total{kind="page",outcome="ok"} 1.0' in metrics


def test_pip_downloads_everything_through_the_proxy(world: World, proxy: Running, tmp_path) -> None:
    done = pip_download(proxy, tmp_path, *PROJECTS)
    assert done.returncode == 0, done.stdout + done.stderr
    got = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert set(got) == {
        "demo_00000-2.0-py3-none-any.whl",
        "demo_00001-1.0.0-py3-none-any.whl",
        "demo_00002-1.0.0-py3-none-any.whl",
    }
    for name, body in got.items():
        project = name.split("-")[0].replace("_", "-")
        assert body == origin_file(world, f"packages/{project}/{name}")
    assert proxy.status()["failovers"] == dict.fromkeys(proxy.status()["failovers"], 0)


def break_in_use(world: World, proxy: Running, path: str, body: bytes) -> str:
    """Write `body` at `path` in the tree of the mirror the proxy uses; its label."""
    label = proxy.in_use()
    (world.fleet.tree(label) / path).write_bytes(body)
    return label


def assert_skipped(proxy: Running, broken: str, reason: str, path: str, expected: bytes) -> None:
    status, headers, body = proxy.get(path)
    assert status == 200, body
    assert body == expected  # the client never sees the broken mirror's answer
    assert headers["X-Mirrorfleet-Mirror"] != f"{broken}.example.net"
    state = proxy.status()
    assert state["failovers"][reason] == 1, state
    row = next(m for m in state["mirrors"] if m["target"] == f"{broken}.example.net")
    assert row["failures"] == 1 and row["last_failure"].startswith(reason), row


def test_a_tampered_page_is_skipped(world: World, proxy: Running) -> None:
    page = "simple/demo-00000/index.html"
    genuine = origin_file(world, page)
    tampered = genuine.replace(b"demo_00000-2.0", b"demo_00000-6.6")
    assert tampered != genuine
    broken = break_in_use(world, proxy, page, tampered)
    assert_skipped(proxy, broken, "unverified", "/simple/demo-00000/", genuine)
    assert proxy.status()["verification_failures"] == 1


def test_a_page_from_an_older_serial_is_skipped(world: World, proxy: Running) -> None:
    page = "simple/demo-00000/index.html"
    broken = break_in_use(world, proxy, page, world.old_page)
    assert_skipped(proxy, broken, "unverified", "/simple/demo-00000/", origin_file(world, page))


def test_an_old_stamp_is_skipped(world: World, proxy: Running) -> None:
    """Serial 1's stamp, validly signed, where DNS says serial 2: a rollback."""
    label = proxy.in_use()
    time.sleep(2.1)  # the proxy reads a stamp again after 2 s
    (world.fleet.tree(label) / STAMP_PATH).write_bytes(world.old_stamp)
    page = "simple/demo-00001/index.html"
    assert_skipped(proxy, label, "stale", "/simple/demo-00001/", origin_file(world, page))


def test_a_tampered_file_is_skipped(world: World, proxy: Running) -> None:
    wheel = "packages/demo-00001/demo_00001-1.0.0-py3-none-any.whl"
    assert proxy.get("/simple/demo-00001/")[0] == 200
    genuine = origin_file(world, wheel)
    middle = len(genuine) // 2
    tampered = genuine[:middle] + bytes([genuine[middle] ^ 0xFF]) + genuine[middle + 1 :]
    broken = break_in_use(world, proxy, wheel, tampered)
    assert_skipped(proxy, broken, "unverified", f"/{wheel}", genuine)


def test_a_mirror_caught_mid_sync_is_passed_over_briefly_not_called_bad(
    world: World, proxy: Running, tmp_path: Path
) -> None:
    """The next serial's shard and page already on disk, its stamp not yet: the page
    does not verify against the stamp, but the shard is signed at a later serial."""
    origin = world.fleet.origin
    nxt = replace(origin, tree=tmp_path / "next", state_dir=tmp_path / "next-state")
    shutil.copytree(origin.tree, nxt.tree)
    shutil.copytree(origin.state_dir, nxt.state_dir)
    pypi.add_release(nxt.tree, "demo-00001", "1.1.0")
    assert publish(nxt, ping=False).serial == 3
    label = proxy.in_use()
    for path in (shard_path("demo-00001"), "simple/demo-00001/index.html"):
        (world.fleet.tree(label) / path).write_bytes((nxt.tree / path).read_bytes())
    status, headers, body = proxy.get("/simple/demo-00001/")
    assert status == 200
    assert body == origin_file(world, "simple/demo-00001/index.html")  # serial 2's
    assert headers["X-Mirrorfleet-Mirror"] != f"{label}.example.net"
    state = proxy.status()
    assert state["failovers"]["syncing"] == 1 and state["verification_failures"] == 0, state
    row = next(m for m in state["mirrors"] if m["target"] == f"{label}.example.net")
    assert row["set_aside_seconds"] <= 2.0, row


def test_pip_gets_everything_while_the_mirror_in_use_is_down(
    world: World, proxy: Running, tmp_path: Path
) -> None:
    down = proxy.in_use()
    world.fleet.stop(down)
    done = pip_download(proxy, tmp_path, *PROJECTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((tmp_path / "out").iterdir())) == len(PROJECTS)
    metrics = proxy.get("/metrics")[2].decode()
    assert 'mirrorfleet_proxy_failovers_total{reason="unreachable"} 1.0' in metrics, metrics
    assert proxy.status()["in_use"]["target"] != f"{down}.example.net"


def test_with_every_mirror_down_the_error_names_the_fleet_and_why(
    world: World, proxy: Running, tmp_path: Path
) -> None:
    for label in MIRRORS:
        world.fleet.stop(label)
    started = time.monotonic()
    status, _, body = proxy.get("/simple/demo-00001/")
    took = time.monotonic() - started
    assert status == 503
    text = body.decode()
    assert f"no mirror of {ZONE} can answer" in text
    for label in MIRRORS:
        assert f"{label}.example.net: unreachable" in text, text
    assert took < 3 * 2 * TIMEOUT + 2, took  # refused at once, bounded by timeouts at worst
    # set aside: the next request fails without waiting on any mirror
    started = time.monotonic()
    assert proxy.get("/simple/demo-00002/")[0] == 503
    assert time.monotonic() - started < 1.0
    # pip retries a 503 a few times, then says no version was found (it logs why only
    # with -v); the proxy's log says why, for whoever runs it
    started = time.monotonic()
    done = pip_download(proxy, tmp_path, "demo-00002", timeout=60)
    assert done.returncode != 0 and "demo-00002" in done.stderr
    assert time.monotonic() - started < 30
    assert f"no mirror of {ZONE} can answer" in proxy.log.read_text()


def test_pip_config_points_pip_and_uv_at_the_proxy(
    world: World, proxy: Running, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PIP_CONFIG_FILE": str(tmp_path / "pip.conf"),
        "UV_CONFIG_FILE": str(tmp_path / "uv.toml"),
    }
    argv = [MIRRORFLEET, "pip-config", *world.lookup_args(), "--proxy", proxy.base, "--write"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    index = f"{proxy.base}/simple/"
    assert f"index-url = {index}" in (tmp_path / "pip.conf").read_text()
    assert f'url = "{index}"' in (tmp_path / "uv.toml").read_text()
    # a uv.toml of the user's own is never overwritten
    (tmp_path / "uv.toml").write_text('cache-dir = "/tmp/mine"\n')
    again = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 1 and "mirrorfleet did not write it" in again.stderr
    assert (tmp_path / "uv.toml").read_text() == 'cache-dir = "/tmp/mine"\n'
    # a proxy of another fleet is refused
    other = [MIRRORFLEET, "pip-config", "--zone", "other.test.", "--key", "x", "--proxy"]
    refused = subprocess.run([*other, proxy.base], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"serves {ZONE}" in refused.stderr


def test_systemd_socket_activation_starts_it_on_the_first_request(
    world: World, tmp_path: Path
) -> None:
    """As the unit `proxy-unit` writes runs it: systemd holds the socket, the proxy
    starts on the first connection and serves it (its own --listen is not used)."""
    port = free_port()
    argv = ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", MIRRORFLEET, "proxy"]
    argv += [*world.lookup_args(), "--timeout", str(TIMEOUT), "--listen", "127.0.0.1:9"]
    log = tmp_path / "activated.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        running = Running(proc, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 10
        while b"Listening on" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        status, headers, body = running.get("/simple/demo-00001/")
        assert status == 200, body
        assert body == origin_file(world, "simple/demo-00001/index.html")
        assert headers["X-Mirrorfleet-Verified"] == "yes"
        assert "serving mirrors.test. at http://127.0.0.1:" in log.read_text()
    finally:
        stop_process(proc)
