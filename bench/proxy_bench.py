"""Issue 20: what `mirrorfleet proxy` costs pip, and how fast it fails over, on loopback.

    .venv/bin/python bench/proxy_bench.py [--runs 5] [--timeout 1] [--big-mb 64]
        [--popular-files 1000] [--python PY] [--http-server] [--only PART] [--json]

Run on demand, not in CI (about 4 minutes with --runs 5; needs nginx with its njs
module and BIND's named, as the unit tests do; root, as tests/nginxkit.py runs nginx).
Everything runs on 127.0.0.1:

- an origin whose tree holds the wheel cache's set (tests/wheelcache.py: requests and
  its dependencies, packaging, setuptools, wheel; six as an sdist), imported as a
  bandersnatch tree (a `.metadata` file beside every wheel) by the origin's own import
  code (content/importer.py) and published; plus a made-up wheel of --big-mb MB
  (random bytes, stored) for the proxy's cost per byte, and a demo project of
  --popular-files releases (pypi.generate) for the cost of a large page;
- three mirror copies, each served by the real nginx site of the serve_tree role
  (tests/nginxkit.py), each its own process and port, so one can die alone
  (--http-server: Python's http.server instead, as tests/integration/test_proxy.py);
- a BIND primary holding the records the real monitor wrote after one round;
- `mirrorfleet proxy --timeout T -v` as a subprocess, as a user runs it (a mirror gets
  2 x T per socket operation), with its own state dir and no client.toml.

What it measures, the variants interleaved in each of --runs rounds:

1. `pip download --no-cache-dir -d DIR requests packaging six setuptools` (with its
   dependencies; six's sdist is prepared, which installs setuptools from the index)
   directly from one mirror's /simple/, through a warm proxy (the same download done
   once before), and through a cold one (a fresh process per run, started before the
   clock: DNS read, one mirror's stamp and snapshot proven; no shard, page or file).
   pip runs isolated: PIP_CONFIG_FILE=/dev/null, HOME in a scratch folder, no proxy
   or CA variables in its environment.
2. The floor: what pip fetched (its pages, its files), and the big wheel, read with
   one kept-alive HTTP connection (http.client) from the mirror, and the same paths
   from a warm proxy: the proxy's own cost per request and per byte (it spools and
   hashes each file before its first byte).
3. Failover, each round with a fresh proxy: the mirror in use (its
   X-Mirrorfleet-Mirror) is stopped (connection refused), or hangs (its port taken
   by a listener that never answers), and the next page request (the stamp aged
   past 2 s, so it must reach a mirror), then a file request, are timed against the
   same request before, each on a new connection. pip pointed straight at a broken
   mirror is the baseline (once each; hung: with --retries 0, one request, as pip
   waits its 15 s timeout per try), and a whole `pip download` through the proxy
   with the mirror in use broken.
4. Size: a manifest shard of PyPI's size (2,400 projects, made by the real
   shard_document and Snapshot code), fetched from nginx with the proxy's own Pool
   and verified as the proxy does (Snapshot.check_shard + parse_shard); the same for
   the requests page and the popular one (check_page); the memory a parsed shard
   holds; and warm page requests to a live proxy against the same page from nginx,
   on a new connection and on a kept-alive one: the requests page and the page of
   --popular-files releases (the big page: a warm one must be a cache lookup, not a
   new hash and parse of its body).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import indextrees  # noqa: E402
import wheelcache  # noqa: E402
from harness import cli, work_dir  # noqa: E402
from nginxkit import LoopbackNginx  # noqa: E402

from mirrorfleet.client.upstream import Pool  # noqa: E402
from mirrorfleet.client.verify import check_page  # noqa: E402
from mirrorfleet.content import pypi  # noqa: E402
from mirrorfleet.content.importer import import_tree  # noqa: E402
from mirrorfleet.origin.publish import publish  # noqa: E402
from mirrorfleet.probe.fetch import MAX_PAGE  # noqa: E402
from mirrorfleet.testing import proxy_process  # noqa: E402
from mirrorfleet.testing.loopback_dns import LoopbackBind  # noqa: E402
from mirrorfleet.testing.loopback_fleet import LoopbackFleet, loopback_monitor  # noqa: E402
from mirrorfleet.tree.keys import SecretsDir, init_secrets  # noqa: E402
from mirrorfleet.tree.manifest import MAX_SHARD, parse_shard, shard_document, shard_of  # noqa: E402
from mirrorfleet.tree.snapshot import Entry, Snapshot, parse_snapshot  # noqa: E402

ZONE = "proxybench.test."  # not the tests' zone: nothing remembered about it anywhere
MIRRORS = ("m1", "m2", "m3")
WANTED = ("requests", "packaging", "six", "setuptools")
PAGE = "/simple/requests/"  # the page and file the failover requests ask for
STAMP_AGE = 2.0  # client/proxy.py Settings.stamp_age: a stamp is read again after it
PIP_TIMEOUT = 15.0  # pip's own default --timeout (seconds per socket operation)
TARGET_RATIO = 1.10
SHARD_PROJECTS = 2_400  # PyPI: ~600k projects / 256 shards
SHARDS = 256
LRU_SHARDS = 64  # client/upstream.py Documents.shards
SERIAL = 26_000_000
POPULAR = "popular-00000"  # pypi.generate's name for the project of --popular-files
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
PIP_HTML = {"Accept": "text/html"}  # the page form the proxy serves, from the mirror
REQUEST_LINE = re.compile(r'"GET (\S+) HTTP/1\.[01]" (\d{3})')


def log(message: str) -> None:
    print(f"[proxy_bench] {message}", file=sys.stderr, flush=True)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


# -- the fleet -------------------------------------------------------------------------


class NginxFleet(LoopbackFleet):
    """LoopbackFleet whose mirrors are each served by the serve_tree role's nginx site
    (its own process and port: `stop` and `start` take it down and bring it back on
    the same port). The origin stays on the fleet's http.server (the monitor reads it)."""

    def __init__(self, root: Path, secrets: SecretsDir, labels: Sequence[str]) -> None:
        self.nginx: dict[str, LoopbackNginx] = {}
        super().__init__(root, secrets, labels, projects=1)

    def start(self, label: str) -> None:
        server = self.nginx.get(label)
        if server is None:
            server = LoopbackNginx(self.tree(label), self.root / "nginx" / label)
            self.nginx[label] = server
        server.__enter__()
        self.ports[label] = server.port
        self.servers[label] = server  # type: ignore[assignment]  # "is it up" for callers

    def stop(self, label: str) -> None:
        self.servers.pop(label)
        self.nginx[label].close()

    def url(self, label: str) -> str:
        if label in self.nginx:
            return f"{self.nginx[label].url}/"
        return super().url(label)

    def close(self) -> None:
        for server in self.nginx.values():
            server.close()
        self.servers.clear()
        super().close()


class PlainFleet(LoopbackFleet):
    """The tests' fleet: every mirror on a Python http.server of its own."""

    def __init__(self, root: Path, secrets: SecretsDir, labels: Sequence[str]) -> None:
        super().__init__(root, secrets, labels, projects=1, own_servers=False)


class BlackHole:
    """A listener on a mirror's port that never accepts: the kernel completes each
    connection and keeps the request, nobody ever answers (a hung host)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port), backlog=128)

    def close(self) -> None:
        self.sock.close()


def big_wheel(folder: Path, megabytes: int) -> Path:
    """A valid wheel of `megabytes` MB of random bytes, stored (not compressed)."""
    path = folder / "bigwheel-1.0-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("bigwheel/__init__.py", "")
        with zf.open("bigwheel/payload.bin", "w", force_zip64=True) as out:
            for _ in range(megabytes):
                out.write(rng.randbytes(1024 * 1024))
        info = "bigwheel-1.0.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: bigwheel\nVersion: 1.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


@dataclass
class World:
    fleet: LoopbackFleet
    bind: LoopbackBind
    work: Path
    timeout: float
    big_path: str | None  # the big wheel's URL path, if there is one
    env: dict[str, str]  # the proxy's: its own state, no client.toml

    def lookup_args(self) -> list[str]:
        key = self.fleet.secrets.public_key.read_text().strip()
        port = str(self.bind.primary.port)
        return ["--zone", ZONE, "--server", "127.0.0.1", "--port", port, "--key", key]

    def index(self, label: str) -> str:
        return f"{self.fleet.url(label)}simple/"

    def prefix(self, label: str) -> str:
        """The mirror's URL path: "/" on nginx, "/<label>/" on the shared http.server."""
        return "/" + self.fleet.url(label).split("/", 3)[3]

    def label_of(self, target: str) -> str:
        return target.split(".")[0]

    def break_mirror(self, label: str, mode: str) -> BlackHole | None:
        self.fleet.stop(label)
        return BlackHole(self.fleet.ports[label]) if mode == "hang" else None

    def mend(self, label: str, hole: BlackHole | None) -> None:
        if hole is not None:
            hole.close()
        if label not in self.fleet.servers:
            self.fleet.start(label)


@contextlib.contextmanager
def build_world(args: argparse.Namespace, work: Path) -> Iterator[World]:
    started = time.perf_counter()
    cache = wheelcache.ensure(log=log)
    dists = [d.path for d in cache.dists]
    big_path = None
    if args.big_mb:
        big = big_wheel(work / "big", args.big_mb)
        dists.append(big)
    init_secrets(work / "secrets")
    cls = PlainFleet if args.http_server else NginxFleet
    fleet = cls(work, SecretsDir(work / "secrets"), MIRRORS)
    try:
        source = indextrees.bandersnatch(dists, work / "bandersnatch")
        imported = import_tree(source, fleet.origin.tree)
        if args.popular_files:
            pypi.generate(fleet.origin.tree, 1, versions=args.popular_files, prefix="popular")
        serial = publish(fleet.origin, ping=False).serial
        shutil.rmtree(source, ignore_errors=True)
        for label in MIRRORS:
            fleet.sync(label)
            fleet.start(label)
        if args.big_mb:
            page = (fleet.origin.tree / "simple/bigwheel/index.html").read_text()
            href = re.search(r'href="([^"#]+)', page)
            assert href is not None, page
            big_path = "/" + href.group(1).replace("../../", "", 1)
        with LoopbackBind(work / "bind", ZONE) as bind:
            monitor = loopback_monitor(fleet, bind, work / "status", lag_grace=0)
            monitor.round(set(MIRRORS), refresh_head=True)
            (work / "home").mkdir()
            (work / "client.toml").write_text("")
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(work / "home"),
                "MIRRORFLEET_STATE_DIR": str(work / "state"),
                "MIRRORFLEET_CLIENT_CONFIG": str(work / "client.toml"),
            }
            log(
                f"fleet up in {time.perf_counter() - started:.1f}s: {imported} files imported, "
                f"serial {serial}, mirrors on " + ", ".join(fleet.url(m) for m in MIRRORS)
            )
            yield World(fleet, bind, work, args.timeout, big_path, env)
    finally:
        fleet.close()


# -- the proxy, and requests to it ---------------------------------------------------


class Running:
    def __init__(self, proc: subprocess.Popen, base: str, log_path: Path) -> None:
        self.proc, self.base, self.log = proc, base, log_path
        self.port = int(base.rsplit(":", 1)[1])

    def status(self) -> dict:
        with Client(self.port) as client:
            return json.loads(client.get("/status")[2])

    def requests(self) -> list[tuple[str, int]]:
        """(path, status) of every GET the proxy logged (it runs with -v)."""
        found = REQUEST_LINE.findall(self.log.read_text())
        return [(path, int(code)) for path, code in found]


@contextlib.contextmanager
def running_proxy(world: World, name: str) -> Iterator[Running]:
    """`mirrorfleet proxy` as a subprocess, ready (its /status answers), stopped by PID."""
    log_path = world.work / "proxy-logs" / f"{name}.log"
    log_path.parent.mkdir(exist_ok=True)
    with proxy_process.running_proxy(
        cli(), world.lookup_args(), log_path, timeout=world.timeout, env=world.env
    ) as (proc, base):
        yield Running(proc, base, log_path)


class Client:
    """One kept-alive HTTP/1.1 connection, as pip keeps one to its index."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes, float]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - started
        return response.status, dict(response.headers), body, took

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, float]:
    """One GET on a new connection (connect included): no kept-alive effects."""
    started = time.perf_counter()
    with Client(port) as client:
        status, got, body, _ = client.get(path, headers)
    return status, got, body, time.perf_counter() - started


# -- pip -------------------------------------------------------------------------------


def pip_env(home: Path) -> dict[str, str]:
    """Nothing of this machine's: no pip.conf, no proxy or CA variables."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "LC_ALL": "C.UTF-8",
    }


def pip_download(
    python: str,
    index: str,
    scratch: Path,
    *extra: str,
    projects: Sequence[str] = WANTED,
    timeout: float = 300,
    check: bool = True,
) -> tuple[float, subprocess.CompletedProcess]:
    """Seconds for one `pip download`, from a clean scratch folder (removed after)."""
    shutil.rmtree(scratch, ignore_errors=True)
    (scratch / "home").mkdir(parents=True)
    argv = [python, "-m", "pip", "download", "--no-cache-dir", "--progress-bar", "off"]
    argv += ["--index-url", index, "-d", str(scratch / "out"), *extra, *projects]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=pip_env(scratch / "home")
        )
    finally:
        took = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(f"pip download from {index} failed:\n{done.stdout}\n{done.stderr}")
    if check:
        got = sorted(p.name for p in (scratch / "out").iterdir())
        assert len(got) >= 8, got  # requests' four, packaging, six, setuptools...
    shutil.rmtree(scratch, ignore_errors=True)
    return took, done


# -- 1. pip: direct, warm proxy, cold proxy ---------------------------------------------


PIP_VARIANTS = ("direct", "warm", "cold")


def measure_pip(args: argparse.Namespace, world: World) -> dict[str, Any]:
    direct = world.index(MIRRORS[0])
    scratch = world.work / "pip"
    times: dict[str, list[float]] = {v: [] for v in PIP_VARIANTS}
    starts: list[float] = []
    cold_requests: list[tuple[str, int]] = []
    with running_proxy(world, "warm") as warm:
        pip_download(args.python, direct, scratch)  # .pyc files, the page cache
        pip_download(args.python, f"{warm.base}/simple/", scratch)  # fills the proxy
        primed = len(warm.requests())
        for i in range(args.runs):
            shift = i % len(PIP_VARIANTS)  # each variant runs first in some round
            for variant in PIP_VARIANTS[shift:] + PIP_VARIANTS[:shift]:
                if variant == "direct":
                    took = pip_download(args.python, direct, scratch)[0]
                elif variant == "warm":
                    took = pip_download(args.python, f"{warm.base}/simple/", scratch)[0]
                else:
                    started = time.perf_counter()
                    with running_proxy(world, f"cold-{i}") as cold:
                        starts.append(time.perf_counter() - started)
                        took = pip_download(args.python, f"{cold.base}/simple/", scratch)[0]
                        if not cold_requests:  # pip's, not the readiness checks'
                            cold_requests = [r for r in cold.requests() if r[0] != "/status"]
                times[variant].append(took)
            log(
                f"pip round {i + 1}/{args.runs}: "
                + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items())
            )
        state = warm.status()
        warm_requests = len(warm.requests()) - primed
    rows = {k: summary(v) for k, v in times.items()}
    d, d_min = rows["direct"]["median"], rows["direct"]["min"]
    return {
        "pip": args.python,
        "pip_version": subprocess.run(
            [args.python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
        ).stdout.split(" from ")[0],
        "direct_index": direct,
        "warm_proxy_in_use": state["in_use"]["target"] if state["in_use"] else None,
        "warm_proxy_failovers": state["failovers"],
        "seconds": rows,
        "ratio_median": {k: round(v["median"] / d, 3) for k, v in rows.items()},
        "ratio_min": {k: round(v["min"] / d_min, 3) for k, v in rows.items()},
        "cold_proxy_start_s": summary(starts),
        "requests_per_download": len(cold_requests),
        "warm_proxy_requests_per_download": warm_requests // args.runs,
        "cold_request_paths": cold_requests,
    }


# -- 2. the floor: raw reads from the mirror and through the proxy ---------------------


def fetch_all(
    port: int, prefix: str, paths: Sequence[str], headers: dict[str, str]
) -> tuple[float, int]:
    """Seconds and body bytes for GETs of every path over one kept-alive connection."""
    total = 0
    started = time.perf_counter()
    with Client(port) as client:
        for path in paths:
            status, _, body, _ = client.get(prefix + path.lstrip("/"), headers)
            if status != 200:
                raise RuntimeError(f"GET {prefix}{path}: HTTP {status}")
            total += len(body)
    return time.perf_counter() - started, total


def measure_floor(
    args: argparse.Namespace, world: World, pip_paths: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    label = MIRRORS[0]
    mirror_port = world.fleet.ports[label]
    prefix = world.prefix(label)
    pages = [p for p, code in pip_paths if code == 200 and p.startswith("/simple/")]
    files = [p for p, code in pip_paths if code == 200 and p.startswith("/packages/")]
    groups: dict[str, list[str]] = {"pip's pages": pages, "pip's files": files}
    if world.big_path:
        groups[f"one {args.big_mb} MB wheel"] = [world.big_path]
    headers = {"Accept": PIP_ACCEPT}
    out: dict[str, Any] = {"groups": {}}
    with running_proxy(world, "floor") as proxy:
        ports = {"mirror": (mirror_port, prefix), "proxy": (proxy.port, "/")}
        for port, path_prefix in ports.values():  # caches: nginx's files, the proxy's pages
            for paths in groups.values():
                fetch_all(port, path_prefix, paths, headers)
        for name, paths in groups.items():
            took: dict[str, list[float]] = {k: [] for k in ports}
            size: dict[str, int] = {}
            for _ in range(args.runs):
                for who, (port, path_prefix) in ports.items():
                    t, size[who] = fetch_all(port, path_prefix, paths, headers)
                    took[who].append(t)
            row: dict[str, Any] = {"requests": len(paths), "bytes": size, "seconds": {}}
            d = statistics.median(took["mirror"])
            for who, values in took.items():
                m = statistics.median(values)
                row["seconds"][who] = summary(values, 4)
                row.setdefault("MBps", {})[who] = round(size[who] / m / 1e6, 1)
                if who != "mirror":
                    row.setdefault("ratio", {})[who] = round(m / d, 2)
                    row.setdefault("extra_ms_per_request", {})[who] = round(
                        (m - d) / len(paths) * 1e3, 2
                    )
                    row.setdefault("extra_ns_per_byte", {})[who] = round(
                        (m - d) / max(1, size[who]) * 1e9, 2
                    )
            out["groups"][name] = row
            log(
                f"floor {name}: "
                + ", ".join(f"{w} {v['median'] * 1e3:.1f} ms" for w, v in row["seconds"].items())
            )
        out["failovers_during"] = proxy.status()["failovers"]
    blob = random.Random(1).randbytes(64 * 1024 * 1024)
    hashing = []
    for _ in range(3):
        started = time.perf_counter()
        hashlib.sha256(blob).hexdigest()
        hashing.append(time.perf_counter() - started)
    out["sha256_in_process_MBps"] = round(len(blob) / min(hashing) / 1e6, 1)
    return out


# -- 3. failover -------------------------------------------------------------------------


def first_file(body: bytes) -> str:
    """The `.metadata` path of the first wheel the page links (what pip reads next)."""
    href = re.search(rb'href="([^"#]+\.whl)', body)
    assert href is not None, body[:500]
    return "/" + href.group(1).decode().replace("../../", "", 1) + ".metadata"


def failover_round(world: World, mode: str, i: int) -> dict[str, Any]:
    """One fresh proxy: a page and a file request, normal then with the mirror in use
    broken (the page breaks the first mirror, the file the second). Each request on a
    new connection, so the time is the proxy's, not a kept-alive connection's stall."""
    broken: list[tuple[str, BlackHole | None]] = []
    with running_proxy(world, f"{mode}-{i}") as proxy:
        port = proxy.port
        try:
            status, headers, body, cold_page = one_get(port, PAGE)
            assert status == 200, body
            warm_page = one_get(port, PAGE)[3]  # the stamp is fresh: no mirror is asked
            first = world.label_of(headers["X-Mirrorfleet-Mirror"])
            path = first_file(body)
            time.sleep(STAMP_AGE + 0.2)
            status, _, _, normal_page = one_get(port, PAGE)  # reads the stamp again
            assert status == 200
            time.sleep(STAMP_AGE + 0.2)
            broken.append((first, world.break_mirror(first, mode)))
            status, headers, body, failover_page = one_get(port, PAGE)
            assert status == 200, body
            second = world.label_of(headers["X-Mirrorfleet-Mirror"])
            assert second != first, (first, second)
            status, _, _, normal_file = one_get(port, path)
            assert status == 200
            broken.append((second, world.break_mirror(second, mode)))
            status, headers, body, failover_file = one_get(port, path)
            assert status == 200, body
            third = world.label_of(headers["X-Mirrorfleet-Mirror"])
            assert third not in (first, second), (first, second, third)
            state = proxy.status()
        finally:
            for label, hole in broken:
                world.mend(label, hole)
    return {
        "cold_page": cold_page,
        "warm_page": warm_page,
        "normal_page": normal_page,
        "failover_page": failover_page,
        "normal_file": normal_file,
        "failover_file": failover_file,
        "failovers": {k: v for k, v in state["failovers"].items() if v},
    }


def pip_through_broken(args: argparse.Namespace, world: World, mode: str, i: int) -> float:
    """A whole pip download through a proxy whose mirror in use broke since its last
    request (and whose stamp aged, so pip's first page request meets the break)."""
    hole = None
    with running_proxy(world, f"pip-{mode}-{i}") as proxy:
        headers = one_get(proxy.port, PAGE)[1]
        label = world.label_of(headers["X-Mirrorfleet-Mirror"])
        try:
            hole = world.break_mirror(label, mode)
            time.sleep(STAMP_AGE + 0.2)
            took = pip_download(args.python, f"{proxy.base}/simple/", world.work / "pip")[0]
            assert proxy.status()["failovers"]["unreachable"] >= 1
        finally:
            world.mend(label, hole)
    return took


def pip_straight_at_broken(args: argparse.Namespace, world: World, mode: str) -> dict[str, Any]:
    """pip with its own defaults (hang: but --retries 0, one request) pointed at a broken
    mirror: how long until it gives up, and that it does."""
    label = MIRRORS[0]
    hole = world.break_mirror(label, mode)
    extra = ("--retries", "0") if mode == "hang" else ()
    try:
        took, done = pip_download(
            args.python,
            world.index(label),
            world.work / "pip",
            "--no-deps",
            *extra,
            projects=("six",),
            timeout=200,
            check=False,
        )
    finally:
        world.mend(label, hole)
    return {"seconds": round(took, 2), "exit": done.returncode, "flags": list(extra)}


def measure_failover(args: argparse.Namespace, world: World) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("refused", "hang"):
        rounds = []
        pip_times = []
        for i in range(args.runs):
            rounds.append(failover_round(world, mode, i))
            pip_times.append(pip_through_broken(args, world, mode, i))
            r = rounds[-1]
            log(
                f"failover {mode} {i + 1}/{args.runs}: page {r['normal_page'] * 1e3:.1f} -> "
                f"{r['failover_page'] * 1e3:.1f} ms, file {r['normal_file'] * 1e3:.1f} -> "
                f"{r['failover_file'] * 1e3:.1f} ms, pip {pip_times[-1]:.2f}s"
            )
        keys = [k for k in rounds[0] if k != "failovers"]
        out[mode] = {
            **{f"{k}_s": summary([r[k] for r in rounds], 4) for k in keys},
            "pip_download_s": summary(pip_times),
            "failovers_each_round": rounds[0]["failovers"],
        }
        out[mode]["pip_straight_at_broken_mirror"] = pip_straight_at_broken(args, world, mode)
        log(f"pip straight at a {mode} mirror: {out[mode]['pip_straight_at_broken_mirror']}")
    per_request = 2 * args.timeout
    hang = out["hang"]["failover_page_s"]["median"]
    out["proxy_per_request_timeout_s"] = per_request
    out["pip_default_timeout_s"] = PIP_TIMEOUT
    out["hang_page_over_pip_timeout"] = round(hang / PIP_TIMEOUT, 3)
    out["hang_page_over_proxy_timeout"] = round(hang / per_request, 3)
    return out


# -- 4. size: a shard of PyPI's size -----------------------------------------------------


def timed_runs(fn: Callable[[], object], samples: int) -> dict[str, Any]:
    values = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        values.append((time.perf_counter() - started) * 1e3)
    return summary(values, 3)


def measure_size(args: argparse.Namespace, world: World) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    keys = [key.public_key()]
    rng = random.Random(4)
    shard, names, i = "ab", [], 0
    while len(names) < SHARD_PROJECTS:  # names that really fall in shard ab
        name = f"pypi-project-{i:07d}-example"  # ~108 B an entry, as PyPI's average
        if shard_of(name) == shard:
            names.append(name)
        i += 1
    projects = {n: (SERIAL - rng.randrange(SERIAL // 2), rng.randbytes(32).hex()) for n in names}
    raw = shard_document(shard, projects, SERIAL, key)
    entries = {f"{s:02x}": Entry(rng.randbytes(32).hex(), len(raw)) for s in range(SHARDS)}
    entries[shard] = Entry(hashlib.sha256(raw).hexdigest(), len(raw))
    snapshot = Snapshot(SERIAL, entries)
    snap_raw = snapshot.sign(key)
    snap_sha = hashlib.sha256(snap_raw).hexdigest()

    label = MIRRORS[0]
    folder = world.fleet.tree(label) / ".mirror" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pypi-shard.json").write_bytes(raw)
    url = f"{world.fleet.url(label)}.mirror/bench/pypi-shard.json"
    page_url = f"{world.fleet.url(label)}simple/requests/index.html"
    popular_url = f"{world.fleet.url(label)}simple/{POPULAR}/index.html"
    files = args.popular_files
    samples = max(20, 10 * args.runs)
    pool = Pool(2 * args.timeout)
    try:
        assert pool.get(url, MAX_SHARD) == raw
        page = pool.get(page_url, MAX_PAGE)
        page_sha = hashlib.sha256(page).hexdigest()
        rows = {
            "shard: transfer (proxy's Pool, kept-alive)": timed_runs(
                lambda: pool.get(url, MAX_SHARD), samples
            ),
            "shard: Snapshot.check_shard (sha256, size)": timed_runs(
                lambda: snapshot.check_shard(shard, raw), samples
            ),
            "shard: parse_shard (JSON + Ed25519)": timed_runs(
                lambda: parse_shard(raw, keys), samples
            ),
            "snapshot: parse_snapshot, once a serial": timed_runs(
                lambda: parse_snapshot(snap_raw, keys, snap_sha), samples
            ),
            "page: transfer (requests' page)": timed_runs(
                lambda: pool.get(page_url, MAX_PAGE), samples
            ),
            "page: check_page (sha256 + parse)": timed_runs(
                lambda: check_page("requests", page, page_sha, SERIAL), samples
            ),
        }
        popular = b""
        if files:
            popular = pool.get(popular_url, MAX_PAGE)
            popular_sha = hashlib.sha256(popular).hexdigest()
            rows[f"popular page ({files} releases): transfer"] = timed_runs(
                lambda: pool.get(popular_url, MAX_PAGE), samples
            )
            rows[f"popular page ({files} releases): check_page"] = timed_runs(
                lambda: check_page(POPULAR, popular, popular_sha, SERIAL), samples
            )
    finally:
        pool.close()
        shutil.rmtree(folder)
    live: dict[str, Any] = {}
    mirror = world.fleet.ports[label]
    with (
        running_proxy(world, "size") as proxy,
        Client(proxy.port) as kept,
        Client(mirror) as kept_mirror,
    ):
        for project in ["requests", *([POPULAR] if args.popular_files else [])]:
            page_path = f"/simple/{project}/"
            status, _, body, cold = one_get(proxy.port, page_path)
            assert status == 200, body
            mirror_path = f"{world.prefix(label)}simple/{project}/"
            status, _, direct, _ = one_get(mirror, mirror_path, PIP_HTML)
            assert status == 200 and direct == body, (status, len(direct), len(body))
            runs = {
                "proxy, new connection": functools.partial(one_get, proxy.port, page_path),
                "proxy, kept-alive": functools.partial(kept.get, page_path),
                "mirror, new connection": functools.partial(one_get, mirror, mirror_path, PIP_HTML),
                "mirror, kept-alive": functools.partial(kept_mirror.get, mirror_path, PIP_HTML),
            }
            warm = {name: timed_runs(fn, samples) for name, fn in runs.items()}
            live[project] = {
                "page_bytes": len(body),
                "proxy_cold_ms": round(cold * 1e3, 2),
                "warm_ms": warm,
                "proxy_over_mirror": {
                    how: round(
                        warm[f"proxy, {how}"]["median"] / warm[f"mirror, {how}"]["median"], 2
                    )
                    for how in ("new connection", "kept-alive")
                },
                "proxy_extra_ms": {
                    how: round(
                        warm[f"proxy, {how}"]["median"] - warm[f"mirror, {how}"]["median"], 3
                    )
                    for how in ("new connection", "kept-alive")
                },
            }
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    parsed = parse_shard(raw, keys)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(parsed[1]) == SHARD_PROJECTS
    medians = {k: v["median"] for k, v in rows.items()}
    shard_ms = sum(v for k, v in medians.items() if k.startswith("shard:"))
    page_ms = sum(v for k, v in medians.items() if k.startswith("page:"))
    popular_ms = sum(v for k, v in medians.items() if k.startswith("popular"))
    return {
        "shard_projects": SHARD_PROJECTS,
        "shard_bytes": len(raw),
        "snapshot_bytes": len(snap_raw),
        "page_bytes": len(page),
        "popular_page_bytes": len(popular),
        "cold_popular_page_ms": round(popular_ms, 2),
        "samples": samples,
        "ms": rows,
        "cold_shard_ms": round(shard_ms, 2),
        "cold_page_ms": round(page_ms, 2),
        "first_project_of_a_shard_ms": round(shard_ms + page_ms, 2),
        "shard_over_page": round(shard_ms / page_ms, 1),
        "parsed_shard_bytes": held,
        "shard_cache_bytes_when_full": held * LRU_SHARDS,
        "live": live,
    }


# -- report ------------------------------------------------------------------------------


def report(r: dict[str, Any], out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    def p(text: str = "") -> None:
        print(text, file=out)

    p(
        f"{r['cores']} cores, Python {r['python']}, mirrors served by {r['server']}; "
        f"--runs {r['runs']} --timeout {r['timeout']}; load before/after "
        f"{r['loadavg_1min_before_after']}; {r['total_s']} s in all"
    )
    if "pip" in r:
        report_pip(r, p)
    if "floor" in r:
        report_floor(r, p)
    if "failover" in r:
        report_failover(r, p)
    if "size" in r:
        report_size(r, p)


def report_pip(r: dict[str, Any], p: Callable[[str], None]) -> None:
    pip = r["pip"]
    p(
        f"\n1. {pip['pip_version']}: pip download {' '.join(WANTED)} "
        f"({pip['requests_per_download']} requests through a cold proxy)"
    )
    p(f"{'':26} median s   min s   max s   ratio of medians / of mins (target <= {TARGET_RATIO})")
    for name, row in pip["seconds"].items():
        p(
            f"{name:26} {row['median']:8.2f} {row['min']:7.2f} {row['max']:7.2f}   "
            f"{pip['ratio_median'][name]:.3f} / {pip['ratio_min'][name]:.3f}"
        )
    p(f"cold proxy start (not in the times above): {pip['cold_proxy_start_s']['median']} s")


def report_floor(r: dict[str, Any], p: Callable[[str], None]) -> None:
    p("\n2. the floor: the same GETs over one kept-alive connection (http.client), medians")
    for name, row in r["floor"]["groups"].items():
        p(f"{name}: {row['requests']} requests, {row['bytes']['proxy']:,} B through the proxy")
        for who, t in row["seconds"].items():
            extra = ""
            if who != "mirror":
                extra = (
                    f"  {row['ratio'][who]:6.2f}x  {row['extra_ms_per_request'][who]:+8.2f} "
                    f"ms/request  {row['extra_ns_per_byte'][who]:+8.2f} ns/B"
                )
            p(
                f"  {who:20} {t['median'] * 1e3:9.1f} ms {row['MBps'][who]:8.1f} MB/s "
                f"({row['bytes'][who]:,} B){extra}"
            )
    p(f"sha256 in process: {r['floor']['sha256_in_process_MBps']} MB/s")


def report_failover(r: dict[str, Any], p: Callable[[str], None]) -> None:
    f = r["failover"]
    p(
        f"\n3. failover (proxy --timeout {r['timeout']}: {f['proxy_per_request_timeout_s']} s a "
        "mirror request), medians ms"
    )
    p(
        f"{'':9} page normal  page failover  file normal  file failover  pip via proxy  "
        "pip straight at it"
    )
    for mode in ("refused", "hang"):
        m = f[mode]
        straight = m["pip_straight_at_broken_mirror"]
        p(
            f"{mode:9} {m['normal_page_s']['median'] * 1e3:11.1f} "
            f"{m['failover_page_s']['median'] * 1e3:14.1f} "
            f"{m['normal_file_s']['median'] * 1e3:12.1f} "
            f"{m['failover_file_s']['median'] * 1e3:14.1f} {m['pip_download_s']['median']:12.2f} s "
            f"{straight['seconds']:8.2f} s (exit {straight['exit']} {' '.join(straight['flags'])})"
        )
    p(
        f"hung mirror: page {f['hang']['failover_page_s']['median']:.2f} s = "
        f"{f['hang_page_over_proxy_timeout']}x the proxy's per-request timeout, "
        f"{f['hang_page_over_pip_timeout']}x pip's own {PIP_TIMEOUT:g} s"
    )
    cold = f["refused"]["cold_page_s"]["median"] * 1e3
    warm = f["refused"]["warm_page_s"]["median"] * 1e3
    p(f"page on a fresh proxy: cold {cold:.1f} ms (its shard and page fetched), warm {warm:.2f} ms")


def report_size(r: dict[str, Any], p: Callable[[str], None]) -> None:
    z = r["size"]
    p(
        f"\n4. a shard of PyPI's size: {z['shard_projects']} projects, {z['shard_bytes']:,} B; "
        f"snapshot {z['snapshot_bytes']:,} B; requests' page {z['page_bytes']:,} B; "
        f"the popular page {z['popular_page_bytes']:,} B"
    )
    for name, row in z["ms"].items():
        p(f"{name:46} {row['median']:8.3f} ms (min {row['min']:.3f})")
    p("live, warm pages (medians ms): proxy / mirror (nginx) direct, each new connection and")
    p("kept-alive; the proxy's first (cold) request before them")
    for project, row in z["live"].items():
        w = row["warm_ms"]
        p(f"  {project} ({row['page_bytes']:,} B), cold {row['proxy_cold_ms']:.2f} ms:")
        for how in ("new connection", "kept-alive"):
            proxy, mirror = w[f"proxy, {how}"], w[f"mirror, {how}"]
            p(
                f"    {how:15} proxy {proxy['median']:7.3f} (min {proxy['min']:.3f})  mirror "
                f"{mirror['median']:7.3f} (min {mirror['min']:.3f})  "
                f"{row['proxy_over_mirror'][how]:5.2f}x  {row['proxy_extra_ms'][how]:+.3f} ms"
            )
    p(
        f"cold shard {z['cold_shard_ms']} ms + cold page {z['cold_page_ms']} ms = "
        f"{z['first_project_of_a_shard_ms']} ms for the first project of a shard "
        f"(shard {z['shard_over_page']}x the page); a parsed shard holds "
        f"{z['parsed_shard_bytes'] / 1e6:.2f} MB, {LRU_SHARDS} of them "
        f"{z['shard_cache_bytes_when_full'] / 1e6:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds of every measure")
    parser.add_argument(
        "--timeout", type=float, default=1.0, help="the proxy's --timeout (mirrors: 2x)"
    )
    parser.add_argument("--big-mb", type=int, default=64, help="the made-up wheel; 0: none")
    parser.add_argument(
        "--popular-files", type=int, default=1000, help="releases of the popular project; 0: none"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="whose pip runs (default: this venv's)"
    )
    parser.add_argument(
        "--http-server", action="store_true", help="mirrors on Python's http.server, not nginx"
    )
    parser.add_argument(
        "--only",
        choices=("pip", "floor", "failover", "size"),
        action="append",
        help="run only these parts (repeatable; the floor needs pip's paths, so runs pip)",
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the table: stderr)")
    args = parser.parse_args()
    if not (1 <= args.runs <= 50 and 0.2 <= args.timeout <= 10 and 0 <= args.big_mb <= 1024):
        parser.error("need 1 <= --runs <= 50, 0.2 <= --timeout <= 10, 0 <= --big-mb <= 1024")
    if not 0 <= args.popular_files <= 5000:
        parser.error("need 0 <= --popular-files <= 5000")
    parts = set(args.only or ("pip", "floor", "failover", "size"))
    if "floor" in parts:
        parts.add("pip")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "server": "Python http.server" if args.http_server else "nginx (serve_tree's site)",
        "runs": args.runs,
        "timeout": args.timeout,
        "big_mb": args.big_mb,
    }
    with work_dir("mf-proxybench-") as work, build_world(args, work) as world:
        if "pip" in parts:
            results["pip"] = measure_pip(args, world)
        if "floor" in parts:
            results["floor"] = measure_floor(args, world, results["pip"]["cold_request_paths"])
        if "failover" in parts:
            results["failover"] = measure_failover(args, world)
        if "size" in parts:
            results["size"] = measure_size(args, world)
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["loadavg_1min_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps(results, indent=2))
    report(results, sys.stderr if args.json else sys.stdout)


if __name__ == "__main__":
    main()
