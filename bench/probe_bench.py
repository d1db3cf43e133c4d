"""Monitor probe cycle: fetch_head + observe_all over 1,000 virtual mirrors on loopback.

    .venv/bin/python bench/probe_bench.py [--mirrors 1000] [--rounds 5] [--parallel 32]
                                          [--spot-checks 2] [--json]

One real PyPI-style tree (50 demo projects, small wheels) is published twice by the
origin code with a fresh signing key, so the stamp, change records and manifest shards are
genuinely signed. A ThreadingHTTPServer in a child process serves it on 127.0.0.1:
`/origin/` and `/m<N>/` map onto a tree, so one server stands in for the whole
fleet, and the CPU time measured in this process is the monitor's alone.

Every mirror is assigned a kind (fixed by its number, so any 100 in a row hold the
same mix):
- fresh   (86 %): the origin's tree, at the head serial;
- behind  (10 %): a copy of the tree taken at the previous serial;
- dead     (2 %): a loopback port that is bound but not listening (refused at once);
- forged   (1 %): the current tree, with a stamp claiming a newer serial, signed by
  another key under the real key's id;
- corrupt  (1 %): the current tree, stamp and pages intact, every wheel's bytes
  changed: only a spot check can tell.
Each cycle's verdicts are checked mirror by mirror against those kinds, and the
requests the server saw against the number the probe must make; any difference
fails the run.

Measured in the same run: cycles with spot checks, stamp-only cycles
(--spot-checks 0) with the same parallelism, and a naive baseline of sequential
stamp-only probes of the first 100 mirrors, extrapolated to the whole fleet. The
three are interleaved round by round, after one unmeasured stamp-only warm-up cycle.
CPU is per cycle: this process (time.process_time) and the server child (/proc).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.config import OriginConfig
from mirrorfleet.content import pypi
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.observe import FleetConfig, Head, MirrorSpec, fetch_head, observe_all
from mirrorfleet.tree.keys import SecretsDir, init_secrets, key_id, load_signing_key
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp

PROJECTS = 50
VERSIONS = 2  # two wheels per project: the spot check picks one of the page's links
CHANGED = 5  # projects that get a release in the second serial
NAIVE_SAMPLE = 100
TIMEOUT = 5  # seconds per request, as FleetConfig's default
START_TIMEOUT = 30.0
KINDS = ("fresh", "behind", "dead", "forged", "corrupt")


def kind_of(i: int) -> str:
    r = i % 100
    if r % 10 == 5:
        return "behind"
    if r in (3, 53):
        return "dead"
    if r == 27:
        return "forged"
    if r == 77:
        return "corrupt"
    return "fresh"


def expected_state(kind: str, spot_checks: int) -> str:
    """What the probe must conclude: fresh, behind, dead or bad."""
    if kind == "forged" or (kind == "corrupt" and spot_checks):
        return "bad"
    if kind == "corrupt":
        return "fresh"  # a stamp-only probe cannot see a broken tree
    return kind


# ---------------------------------------------------------------- the server (child)


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default of 5 drops SYNs under 32 parallel probes
    daemon_threads = True
    roots: dict[str, str]
    counter: Any


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def translate_path(self, path: str) -> str:
        prefix, _, rest = path.lstrip("/").partition("/")
        root = self.server.roots.get(prefix)
        if root is None:
            return "/nonexistent/mirrorfleet-probe-bench"
        self.directory = root
        return super().translate_path("/" + rest)

    def do_GET(self) -> None:
        with self.server.counter.get_lock():
            self.server.counter.value += 1
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(roots: dict[str, str], counter: Any, conn: Any) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.roots, server.counter = roots, counter
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever(poll_interval=0.5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the trees


def build_trees(work: Path) -> tuple[dict[str, Path], str, int]:
    """Trees by kind, the public key text, and the head serial."""
    init_secrets(work / "secrets")
    secrets = SecretsDir(work / "secrets")
    current = work / "current"
    current.mkdir()
    names = pypi.generate(current, PROJECTS, versions=VERSIONS)
    origin = OriginConfig(
        "origin", current, secrets.signing_key, secrets.ping_secret, state_dir=work / "state"
    )
    first = publish(origin, ping=False)
    behind = work / "behind"
    shutil.copytree(current, behind, symlinks=True)
    for name in names[:CHANGED]:
        pypi.add_release(current, name, "1.1.0")
    second = publish(origin, ping=False)
    assert (first.serial, second.serial) == (1, 2), (first, second)
    assert len(second.changed) == CHANGED, second.changed

    corrupt = work / "corrupt"
    shutil.copytree(current, corrupt, symlinks=True)
    wheels = list(corrupt.glob("packages/*/*.whl"))
    assert wheels
    for wheel in wheels:  # same size, different bytes: only hashing tells
        data = bytearray(wheel.read_bytes())
        data[len(data) // 2] ^= 0xFF
        wheel.write_bytes(bytes(data))

    forged = work / "forged"
    shutil.copytree(current, forged, symlinks=True)
    real = load_signing_key(secrets.signing_key)
    envelope = json.loads(Stamp.new(second.serial + 1, "origin").sign(Ed25519PrivateKey.generate()))
    envelope["key"] = key_id(real.public_key())  # the real key's id, another key's signature
    (forged / STAMP_PATH).write_text(json.dumps(envelope, sort_keys=True, indent=1) + "\n")
    assert base64.b64decode(envelope["sig"])

    trees = {"fresh": current, "behind": behind, "corrupt": corrupt, "forged": forged}
    return trees, secrets.public_key.read_text().strip(), second.serial


# ---------------------------------------------------------------- the client


def expected_requests(
    kinds: Sequence[str], spot_checks: int, eligible: dict[str, int], with_head: bool = True
) -> int:
    """HTTP requests the server must see for one cycle (dead mirrors never reach it)."""
    total = (1 + (1 if spot_checks else 0)) if with_head else 0
    for kind in kinds:
        if kind == "dead":
            continue
        total += 1  # the stamp
        if not spot_checks or kind == "forged":
            continue
        if kind == "corrupt":
            total += 3 + 1  # shard, page, file (wrong), then the stamp again
        else:
            total += 3 * min(spot_checks, eligible[kind])  # shard, page, file per project
    return total


def classify(verdict: str, serial: int | None, head: int) -> str:
    if verdict == "unreachable":
        return "dead"
    if verdict == "bad":
        return "bad"
    assert verdict == "ok" and serial is not None, verdict
    return "fresh" if serial >= head else "behind"


class Cycle:
    """Runs and checks probe cycles; keeps one sample per cycle."""

    def __init__(
        self, config: FleetConfig, kinds: list[str], head_serial: int, server_pid: int, counter: Any
    ) -> None:
        self.config, self.kinds, self.head_serial = config, kinds, head_serial
        self.server_pid, self.counter = server_pid, counter
        self.eligible: dict[str, int] = {}

    def run(self, specs: Sequence[MirrorSpec], spot_checks: int, parallel: int) -> dict[str, Any]:
        kinds = self.kinds[: len(specs)]
        before_requests = self.counter.value
        before_server = cpu_seconds(self.server_pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        head: Head = fetch_head(self.config, previous=None, spot_checks=spot_checks)
        seen = observe_all(specs, head, self.config, spot_checks, parallel)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        server_cpu = cpu_seconds(self.server_pid) - before_server
        requests = self.counter.value - before_requests

        if head.stamp.serial != self.head_serial:
            raise SystemExit(f"origin head is {head.stamp.serial}, expected {self.head_serial}")
        wrong = []
        states: Counter[str] = Counter()
        for spec, kind, obs in zip(specs, kinds, seen, strict=True):
            state = classify(
                obs.verdict, obs.stamp.serial if obs.stamp else None, head.stamp.serial
            )
            states[state] += 1
            if state != expected_state(kind, spot_checks):
                wrong.append(
                    f"{spec.label} ({kind}): judged {state}, verdict {obs.verdict}, "
                    f"serial {obs.stamp.serial if obs.stamp else None}, error {obs.error}"
                )
        if wrong:
            raise SystemExit(
                f"MISJUDGED {len(wrong)} of {len(specs)} mirrors "
                f"(spot_checks={spot_checks}):\n  " + "\n  ".join(wrong[:20])
            )
        if spot_checks and not self.eligible:
            self.eligible = {
                "fresh": sum(1 for c in head.pool if c.serial <= self.head_serial),
                "behind": sum(1 for c in head.pool if c.serial <= self.head_serial - 1),
            }
        want = expected_requests(kinds, spot_checks, self.eligible)
        if requests != want:
            raise SystemExit(f"server saw {requests} requests, the cycle must make {want}")
        return {
            "wall_s": wall,
            "client_cpu_s": cpu,
            "server_cpu_s": server_cpu,
            "requests": requests,
            "refused_connects": kinds.count("dead"),
            "states": dict(sorted(states.items())),
        }


def p95(values: Sequence[float]) -> float:
    """Nearest rank: with 5 rounds that is the slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summarize(samples: list[dict[str, Any]], mirrors: int, scale: float = 1.0) -> dict[str, Any]:
    med = statistics.median
    wall = [s["wall_s"] * scale for s in samples]
    return {
        "rounds": len(samples),
        "mirrors_probed": mirrors,
        "wall_median_s": round(med(wall), 3),
        "wall_p95_s": round(p95(wall), 3),
        "client_cpu_median_s": round(med(s["client_cpu_s"] * scale for s in samples), 3),
        "server_cpu_median_s": round(med(s["server_cpu_s"] * scale for s in samples), 3),
        "requests_per_cycle": round(samples[0]["requests"] * scale),
        "refused_connects_per_cycle": round(samples[0]["refused_connects"] * scale),
        "mirrors_per_s": round(mirrors * scale / med(wall), 1),
        "states": samples[0]["states"],
    }


def interleaved(
    rounds: int, runs: Sequence[Callable[[], dict[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Round by round, each kind of cycle once: load from elsewhere hits them alike."""
    samples: list[list[dict[str, Any]]] = [[] for _ in runs]
    for _ in range(rounds):
        for kept, run in zip(samples, runs, strict=True):
            kept.append(run())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--spot-checks", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.mirrors <= 10_000 and 1 <= args.rounds <= 50):
        parser.error("need 1 <= --mirrors <= 10000 and 1 <= --rounds <= 50")
    if not (1 <= args.parallel <= 256 and 0 <= args.spot_checks <= 10):
        parser.error("need 1 <= --parallel <= 256 and 0 <= --spot-checks <= 10")

    work = Path(tempfile.mkdtemp(prefix="mf-probebench-", dir="/var/tmp"))
    ctx = multiprocessing.get_context("spawn")
    server: multiprocessing.process.BaseProcess | None = None
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        trees, public_key, head_serial = build_trees(work)
        build_seconds = time.perf_counter() - started

        dead.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
        dead_port = dead.getsockname()[1]
        kinds = [kind_of(i) for i in range(args.mirrors)]
        labels = [f"m{i:04d}" for i in range(args.mirrors)]
        roots = {"origin": str(trees["fresh"])}
        roots.update(
            (label, str(trees[kind]))
            for label, kind in zip(labels, kinds, strict=True)
            if kind != "dead"
        )
        counter = ctx.Value("q", 0)
        receive, send = ctx.Pipe(duplex=False)
        server = ctx.Process(target=serve, args=(roots, counter, send), daemon=True)
        server.start()
        send.close()
        if not receive.poll(START_TIMEOUT):
            raise SystemExit("the loopback server did not start")
        port = receive.recv()
        assert server.pid is not None

        specs = tuple(
            MirrorSpec(
                label=label,
                target=f"{label}.bench.invalid",
                url=f"http://127.0.0.1:{dead_port if kind == 'dead' else port}/{label}/",
            )
            for label, kind in zip(labels, kinds, strict=True)
        )
        config = FleetConfig(
            origin_url=f"http://127.0.0.1:{port}/origin/",
            public_keys=(public_key,),
            mirrors=specs,
            timeout=TIMEOUT,
        )
        cycle = Cycle(config, kinds, head_serial, server.pid, counter)
        naive_specs = specs[:NAIVE_SAMPLE]
        scale = len(specs) / len(naive_specs)

        cycle.run(specs, 0, args.parallel)  # warm-up, unmeasured (still checked)
        spot, stamp_only, naive = interleaved(
            args.rounds,
            [
                partial(cycle.run, specs, args.spot_checks, args.parallel),
                partial(cycle.run, specs, 0, args.parallel),
                partial(cycle.run, naive_specs, 0, 1),
            ],
        )

        rows = {
            f"spot_checks={args.spot_checks}, parallel={args.parallel}": summarize(
                spot, len(specs)
            ),
            f"stamp only, parallel={args.parallel}": summarize(stamp_only, len(specs)),
            f"naive: sequential stamp only, first {len(naive_specs)}, "
            f"extrapolated x{scale:g}": summarize(naive, len(naive_specs), scale),
        }
        spot_row, stamp_row, naive_row = rows.values()
        results = {
            "mirrors": len(specs),
            "kinds": dict(sorted(Counter(kinds).items())),
            "head_serial": head_serial,
            "cores": os.cpu_count(),
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "tree_build_s": round(build_seconds, 2),
            "cycles": rows,
            "ratios": {
                "spot_over_stamp_only_wall": round(
                    spot_row["wall_median_s"] / stamp_row["wall_median_s"], 2
                ),
                "spot_over_stamp_only_client_cpu": round(
                    spot_row["client_cpu_median_s"] / stamp_row["client_cpu_median_s"], 2
                ),
                "naive_extrapolated_over_stamp_only_wall": round(
                    naive_row["wall_median_s"] / stamp_row["wall_median_s"], 2
                ),
                "naive_extrapolated_over_spot_wall": round(
                    naive_row["wall_median_s"] / spot_row["wall_median_s"], 2
                ),
            },
        }
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            report(results)
    finally:
        dead.close()
        if server is not None and server.pid is not None:
            server.terminate()
            server.join(5)
            if server.is_alive():
                server.kill()
                server.join(5)
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0)


def report(results: dict[str, Any]) -> None:
    print(
        f"{results['mirrors']} mirrors {results['kinds']}, head serial "
        f"{results['head_serial']}, {results['cores']} cores, "
        f"tree built in {results['tree_build_s']} s, 1-min load average before/after "
        f"{results['loadavg_1min_before_after']}"
    )
    header = ("cycle", "wall med s", "wall p95 s", "client CPU s", "server CPU s")
    header += ("mirrors/s", "requests", "states")
    print(" | ".join(header))
    for name, row in results["cycles"].items():
        cells = (name, row["wall_median_s"], row["wall_p95_s"], row["client_cpu_median_s"])
        cells += (row["server_cpu_median_s"], row["mirrors_per_s"], row["requests_per_cycle"])
        cells += (" ".join(f"{k}={v}" for k, v in row["states"].items()),)
        print(" | ".join(str(c) for c in cells))
    for name, value in results["ratios"].items():
        print(f"{name:42} {value}")


if __name__ == "__main__":
    main()
