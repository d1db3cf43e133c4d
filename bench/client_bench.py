"""Client pick latency on loopback: DNS discovery vs a reflector-style status download.

    /var/tmp/mfvenv/bin/python bench/client_bench.py [--mirrors 16] [--samples 200]
                                                     [--cli-samples 10] [--json]

The lab is the one tests/integration/test_client.py builds. A LoopbackFleet holds
the origin's signed tree and one copy per mirror (m01..m16). A real BIND primary
runs on 127.0.0.1. One Monitor round probes every mirror, publishes SRV, head and
meta records into BIND, and writes status.json into a `status/` directory inside the
served www root. The trees and status.json are served by a ThreadingHTTPServer in
a child process. The fleet's own in-process server is closed at once, so the client
measured here never shares its GIL with the server it talks to.

Measured in the same run, interleaved sample by sample (--samples each):
- lookup, cold: what `mirrorfleet pick` does, with a fresh `Lookup` each time: a new
  resolver with no cache, round one (SRV + head), the head signature checked, then
  round two for the first PICK_BATCH (4) mirrors in RFC 2782 pick order. "Cold" is
  the client's cache only: BIND is authoritative and answers from memory;
- lookup, warm: the same over one reused resolver with a `dns.resolver.Cache`.
  The cache is filled once before measuring, and its misses are counted;
- pick, cold / warm: that lookup plus `choose()`, which is RFC 2782 order, one HTTP
  GET of the chosen mirror's stamp and its Ed25519 check;
- reflector-style, probe: GET status.json, parse it, then GET every listed
  mirror's `.mirror/stamp.json` one after another. The pick is the fastest mirror
  whose stamp serial is at least the status head. As reflector does, it trusts what
  it downloads: the stamps' signatures are not checked, which favours this baseline;
- list lookup, cold: what `mirrorfleet list` does: round two for all 16 mirrors;
- reflector-style, JSON only: GET status.json, parse it, and pick the fresh mirror
  with the least lag and the fastest monitor probe. There is no probe and no
  signature: status.json is unsigned.

After that, the cold lookup's parts are timed one by one (--samples each). They are
the raw UDP round trips to BIND (one socket, pre-built queries, no dnspython),
building the queries, parsing the answers with dnspython, an empty asyncio.run()
and the head's Ed25519 check. Whatever they leave of the cold lookup is spent in
dnspython's async resolver around them. The run also times sum(range(1000)), so
this machine's Python speed can be compared with another's.

Then the CLI, reported apart because start-up (the interpreter and the imports)
dominates it. It runs `mirrorfleet pick` as a subprocess (--cli-samples), next to
`python -c pass` and `mirrorfleet --help` run the same way.

Every sample is checked. A lookup must list every mirror, all fresh, under a
verified head. A pick's stamp must be at the head's serial. A reflector pick must
find a fresh mirror. The CLI must print a mirror URL. Any failure stops the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.resolver
import dns.version

from mirrorfleet.cli.client import PICK_BATCH
from mirrorfleet.client.choose import MaxLag, ProjectView, choose, dns_verdict
from mirrorfleet.client.discovery import EDNS_PAYLOAD, Discovery, Lookup, discover, read_more
from mirrorfleet.client.projects import wanted
from mirrorfleet.config import DnsConfig, MonitorConfig
from mirrorfleet.monitor.daemon import Monitor
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.loopback_fleet import LoopbackFleet
from mirrorfleet.tree.keys import MONITOR_TSIG, SecretsDir, init_secrets, parse_public_key
from mirrorfleet.tree.stamp import STAMP_PATH, fetch_stamp
from mirrorfleet.zone.records import (
    HEAD,
    SERVICE,
    meta_name,
    parse_txt,
    signed_bytes,
    stamp_from_head,
)

ZONE = "mirrors.bench."
TARGET_MS = 10.0  # issue 7: median lookup <= 10 ms
HTTP_TIMEOUT = 5.0
START_TIMEOUT = 30.0
MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))


# ---------------------------------------------------------------- the server (child)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(directory: str, conn: Any) -> None:
    server = _Server(("127.0.0.1", 0), partial(_Quiet, directory=directory))
    conn.send(server.server_address[1])
    conn.close()
    server.serve_forever(poll_interval=0.5)


# ---------------------------------------------------------------- the clients


@dataclass(frozen=True)
class CachedLookup(Lookup):
    """A Lookup whose resolver is one shared, caching resolver (discovery.py untouched)."""

    shared: dns.asyncresolver.Resolver | None = field(default=None, compare=False, repr=False)

    def resolver(self) -> dns.asyncresolver.Resolver:
        assert self.shared is not None
        return self.shared


class Lab:
    """What every sampled operation needs, and the checks each sample must pass."""

    def __init__(self, settings: dict[str, Any], base: str, mirrors: int) -> None:
        self.settings, self.base, self.mirrors = settings, base, mirrors
        self.keys = settings["keys"]
        self.status_url = f"{base}/status/status.json"
        shared = Lookup(**settings).resolver()
        shared.cache = dns.resolver.Cache()
        self.cache = shared.cache
        self.warm_lookup = CachedLookup(**settings, shared=shared)
        self.rng = random.Random(7)

    def check(self, found: Discovery, read: int) -> Discovery:
        states = [m.state for m in found.mirrors]
        pending = self.mirrors - read
        if len(states) != read or set(states) != {"fresh"} or found.warnings:
            raise SystemExit(f"lookup saw {states} with warnings {found.warnings}")
        if len(found.pending) != pending:
            raise SystemExit(f"lookup left {len(found.pending)} pending, not {pending}")
        return found

    def lookup_cold(self) -> Discovery:
        """What `mirrorfleet pick` does: SRV + head, then the first few metas in pick order."""
        found = discover(Lookup(**self.settings), self.rng, batch=PICK_BATCH)
        return self.check(found, PICK_BATCH)

    def lookup_warm(self) -> Discovery:
        return self.check(discover(self.warm_lookup, self.rng, batch=PICK_BATCH), PICK_BATCH)

    def list_cold(self) -> Discovery:
        """What `mirrorfleet list` does: every mirror's meta record."""
        return self.check(discover(Lookup(**self.settings)), self.mirrors)

    def pick(self, found: Discovery, lookup: Lookup) -> str:
        choice = choose(
            found,
            self.keys,
            rng=self.rng,
            timeout=HTTP_TIMEOUT,
            more=lambda current: read_more(lookup, current, PICK_BATCH),
        )
        if choice.stamp.serial != found.head.serial or not str(choice.mirror.url).startswith(
            self.base
        ):
            raise SystemExit(f"pick {choice.mirror.url} at serial {choice.stamp.serial}")
        return str(choice.mirror.url)

    def pick_cold(self) -> str:
        return self.pick(self.lookup_cold(), Lookup(**self.settings))

    def pick_warm(self) -> str:
        return self.pick(self.lookup_warm(), self.warm_lookup)

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.status_url, timeout=HTTP_TIMEOUT) as response:
            return json.loads(response.read())

    def reflector_json_only(self) -> str:
        data = self.status()
        fresh = [m for m in data["mirrors"] if m["state"] == "fresh"]
        if len(fresh) != self.mirrors:
            raise SystemExit(f"status.json lists {len(fresh)} fresh mirrors")
        best = min(fresh, key=lambda m: (m["lag_serials"], m["probe_seconds"] or math.inf))
        return str(best["url"])

    def reflector_probe(self) -> str:
        data = self.status()
        head = data["head"]["serial"]
        best: tuple[float, str] | None = None
        for mirror in data["mirrors"]:
            url = f"{mirror['url'].rstrip('/')}/{STAMP_PATH}"
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
                    serial = int(json.loads(response.read())["signed"]["serial"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            took = time.perf_counter() - start
            if serial >= head and (best is None or took < best[0]):
                best = (took, str(mirror["url"]))
        if best is None:
            raise SystemExit("reflector-style probe found no fresh mirror")
        return best[1]


# ---------------------------------------------------------------- measuring


def p95(values: Sequence[float]) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


Sample = tuple[float, float]  # wall seconds, this process's CPU seconds


def timed(run: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(samples: int, runs: dict[str, Callable[[], object]]) -> dict[str, list[Sample]]:
    """Round by round, each operation once: load from elsewhere hits them alike."""
    kept: dict[str, list[Sample]] = {name: [] for name in runs}
    for _ in range(samples):
        for name, run in runs.items():
            kept[name].append(timed(run))
    return kept


def summary_ms(samples: Sequence[Sample], cpu: bool = True) -> dict[str, float | None]:
    """Wall-clock statistics; CPU is the median of this process's time (None for a child)."""
    ms = [wall * 1000 for wall, _ in samples]
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(p95(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "cpu_median_ms": round(statistics.median(c * 1000 for _, c in samples), 2) if cpu else None,
        "samples": len(ms),
    }


def components(
    port: int, settings: dict[str, Any], samples: int
) -> dict[str, dict[str, float | None]]:
    """The cold lookup's parts, each alone: what its time is made of."""
    origin = dns.name.from_text(ZONE)
    found = discover(Lookup(**settings))
    names = [
        (dns.name.from_text(SERVICE, origin), "SRV"),
        (dns.name.from_text(HEAD, origin), "TXT"),
    ]
    names += [(dns.name.from_text(meta_name(m.target), origin), "TXT") for m in found.mirrors]

    def queries() -> list[dns.message.QueryMessage]:
        return [dns.message.make_query(n, t, use_edns=0, payload=EDNS_PAYLOAD) for n, t in names]

    wires = [dns.query.udp(q, "127.0.0.1", port=port, timeout=2).to_wire() for q in queries()]
    srv_wire = wires[0]
    key = settings["keys"][0]
    head = dns.query.udp(queries()[1], "127.0.0.1", port=port, timeout=2).answer[0][0]
    stamp, signature, _ = stamp_from_head(parse_txt(head.strings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    sock.connect(("127.0.0.1", port))
    query_wires = [q.to_wire() for q in queries()]

    def round_trips() -> None:
        for wire in query_wires:
            sock.send(wire)
            sock.recv(65535)

    runs: dict[str, Callable[[], object]] = {
        f"{len(names)} UDP round trips to BIND (raw socket, no dnspython)": round_trips,
        f"build the {len(names)} queries (make_query + to_wire)": lambda: [
            q.to_wire() for q in queries()
        ],
        f"parse the {len(names)} answers (dns.message.from_wire)": lambda: [
            dns.message.from_wire(w) for w in wires
        ],
        "  of which the SRV answer alone": lambda: dns.message.from_wire(srv_wire),
        "asyncio.run() of an empty coroutine": lambda: asyncio.run(asyncio.sleep(0)),
        "Ed25519 verify of the head": lambda: key.verify(signature, signed_bytes(stamp)),
    }
    try:
        return {name: summary_ms(v) for name, v in interleaved(samples, runs).items()}
    finally:
        sock.close()


def per_project_overhead(
    fleet: LoopbackFleet,
    monitor: Monitor,
    labels: list[str],
    settings: dict[str, Any],
    samples: int,
) -> dict[str, Any]:
    """`check` of a mirror one serial behind: whole archive (lookup + its stamp) against
    `--for` an unchanged project (lookup + one signed change record + its stamp)."""
    behind = labels[-1]
    projects = (fleet.origin.tree / "simple").iterdir()
    untouched = sorted(p.name for p in projects if p.is_dir() and p.name != "demo-0000")[-1]
    fleet.release("9.9.9", project="demo-0000")
    for label in labels[:-1]:
        fleet.sync(label)
    monitor.round(set(labels), refresh_head=True)
    keys = settings["keys"]

    def look() -> tuple[Discovery, Any]:
        found = discover(Lookup(**settings))
        return found, next(m for m in found.mirrors if m.target.startswith(f"{behind}."))

    def whole() -> None:
        found, mirror = look()
        if dns_verdict(mirror, found.head, MaxLag()) is None:
            raise SystemExit(f"{behind} should be behind")
        fetch_stamp(str(mirror.url), keys, HTTP_TIMEOUT)

    def for_project() -> None:
        found, mirror = look()
        usable = [m for m in found.mirrors if m.state != "down"]
        view = ProjectView(found, wanted([untouched]), keys, HTTP_TIMEOUT)
        why = view.verdict(mirror.serial or 0, usable)
        if why is not None:
            raise SystemExit(f"{behind} should be current for {untouched}: {why}")
        fetch_stamp(str(mirror.url), keys, HTTP_TIMEOUT)

    runs = {"check, whole archive (lagging: refused)": whole, "check --for": for_project}
    for run in runs.values():
        run()
    kept = interleaved(samples, runs)
    rows = {name: summary_ms(values) for name, values in kept.items()}
    medians = [row["median_ms"] for row in rows.values()]
    return {"project": untouched, "rows": rows, "overhead_ms": round(medians[1] - medians[0], 2)}


def cpu_reference_us() -> float:
    """sum(range(1000)), best of 5: to compare this machine's Python speed with others."""
    timer = timeit.Timer("sum(range(1000))")
    number, _ = timer.autorange()
    return round(min(timer.repeat(5, number)) / number * 1e6, 2)


def cli_runs(bind_port: int, key: str, base: str) -> dict[str, Callable[[], object]]:
    where = ["--zone", ZONE, "--server", "127.0.0.1", "--port", str(bind_port), "--key", key]

    def run(argv: list[str], check: Callable[[str], bool]) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not check(proc.stdout):
            raise SystemExit(f"{argv[:2]} failed ({proc.returncode}): {proc.stderr[-500:]}")

    return {
        "python -c pass": partial(run, [sys.executable, "-c", "pass"], lambda _: True),
        "mirrorfleet --help": partial(run, [MIRRORFLEET, "--help"], lambda out: "pick" in out),
        "mirrorfleet pick": partial(
            run,
            [MIRRORFLEET, "pick", *where, "--timeout", "1"],
            lambda out: out.strip().startswith(base),
        ),
    }


def srv_answer(port: int) -> dict[str, Any]:
    """The SRV answer's size over UDP with the client's EDNS buffer, and whether it fits."""
    name = dns.name.from_text(SERVICE, dns.name.from_text(ZONE))
    query = dns.message.make_query(name, "SRV", use_edns=0, payload=EDNS_PAYLOAD)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    return {
        "bytes": len(response.to_wire()),
        "records": sum(len(rrset) for rrset in response.answer),
        "truncated": bool(response.flags & dns.flags.TC),
    }


def measure(args: argparse.Namespace, work: Path, ctx: Any) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    labels = [f"m{i:02d}" for i in range(1, args.mirrors + 1)]
    init_secrets(work / "secrets")
    fleet = LoopbackFleet(work, SecretsDir(work / "secrets"), labels)
    fleet.close()  # its in-process server: the child below serves the same www root
    key = fleet.secrets.public_key.read_text().strip()

    receive, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(str(work / "www"), send), daemon=True)
    server.start()
    try:
        send.close()
        if not receive.poll(START_TIMEOUT):
            raise SystemExit("the loopback HTTP server did not start")
        base = f"http://127.0.0.1:{receive.recv()}"
        config = FleetConfig(
            f"{base}/origin/",
            (key,),
            tuple(
                MirrorSpec(label=m, target=f"{m}.example.net", url=f"{base}/{m}/") for m in labels
            ),
            timeout=2,
        )
        with LoopbackBind(work / "bind", ZONE) as bind:
            key_file = work / "tsig.key"
            key_file.write_text(bind.keys[MONITOR_TSIG])
            dns_config = DnsConfig(
                zone=ZONE,
                server="127.0.0.1",
                port=bind.primary.port,
                key_name=MONITOR_TSIG,
                key_file=key_file,
            )
            monitor_config = MonitorConfig(
                fleet=work / "unused.toml",
                ping_secret=fleet.secrets.ping_secret,
                status_dir=work / "www" / "status",
                lag_grace=0,
            )
            monitor = Monitor(monitor_config, config, dns_config, provider=bind.provider())
            monitor.round(set(labels), refresh_head=True)
            setup_seconds = time.perf_counter() - started

            settings = {
                "zone": ZONE,
                "keys": [parse_public_key(key)],
                "nameservers": ["127.0.0.1"],
                "port": bind.primary.port,
                "timeout": 1.0,
                "lifetime": 3.0,
            }
            lab = Lab(settings, base, len(labels))
            runs: dict[str, Callable[[], object]] = {
                "lookup, cold (new resolver, no cache)": lab.lookup_cold,
                "lookup, warm (shared resolver + Cache)": lab.lookup_warm,
                "pick, cold (lookup + choose: 1 stamp GET + verify)": lab.pick_cold,
                "pick, warm (cached lookup + choose)": lab.pick_warm,
                "reflector-style: status.json + probe every mirror": lab.reflector_probe,
                "reflector-style: status.json only, no probe": lab.reflector_json_only,
                "list lookup, cold (all 16 meta records, as `mirrorfleet list`)": lab.list_cold,
            }
            for run in runs.values():  # imports, first connections, the cache filled
                for _ in range(3):
                    run()
            lab.cache.reset_statistics()
            stats_before = lab.cache.get_statistics_snapshot()
            sampling = time.perf_counter()
            kept = interleaved(args.samples, runs)
            sampling_seconds = time.perf_counter() - sampling
            stats = lab.cache.get_statistics_snapshot()
            rows = {name: summary_ms(values) for name, values in kept.items()}

            cli_rows: dict[str, Any] = {}
            if args.cli_samples:
                cli = cli_runs(bind.primary.port, key, base)
                for run in cli.values():
                    run()  # page cache, .pyc files
                cli_rows = {
                    name: summary_ms(v, cpu=False)
                    for name, v in interleaved(args.cli_samples, cli).items()
                }
            srv = srv_answer(bind.primary.port)
            parts = components(bind.primary.port, settings, args.samples)
            per_project = per_project_overhead(fleet, monitor, labels, settings, args.samples)
    finally:
        if server.is_alive():
            server.terminate()
            server.join(5)
            if server.is_alive():
                server.kill()
                server.join(5)

    names = list(rows)
    cold, warm, pick, pick_warm, probe, json_only, _list = (rows[n]["median_ms"] for n in names)
    return {
        "mirrors": len(labels),
        "samples": args.samples,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "dnspython": dns.version.version,
        "named": subprocess.run(
            ["named", "-v"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "setup_s": round(setup_seconds, 2),
        "sampling_s": round(sampling_seconds, 2),
        "srv_answer_udp": srv,
        "warm_cache_while_sampling": {
            "hits": stats.hits - stats_before.hits,
            "misses": stats.misses - stats_before.misses,
        },
        "python_speed_sum_range_1000_us": cpu_reference_us(),
        "in_process": rows,
        "cold_lookup_parts": parts,
        "target": {
            "lookup_cold_median_ms": cold,
            "target_ms": TARGET_MS,
            "met_cold": cold <= TARGET_MS,
            "met_warm": warm <= TARGET_MS,
        },
        "ratios_of_medians": {
            "reflector_probe_over_pick_cold": round(probe / pick, 2),
            "reflector_probe_over_pick_warm": round(probe / pick_warm, 2),
            "reflector_probe_over_lookup_cold": round(probe / cold, 2),
            "reflector_probe_over_lookup_warm": round(probe / warm, 2),
            "reflector_json_only_over_pick_cold": round(json_only / pick, 2),
            "reflector_json_only_over_lookup_cold": round(json_only / cold, 2),
            "lookup_cold_over_warm": round(cold / warm, 2),
        },
        "cli_subprocess": cli_rows,
        "per_project_check": per_project,
    }


def report(results: dict[str, Any]) -> None:
    srv = results["srv_answer_udp"]
    print(
        f"{results['mirrors']} mirrors, {results['samples']} samples each, "
        f"{results['cores']} cores, Python {results['python']}, dnspython "
        f"{results['dnspython']}, {results['named']}; setup {results['setup_s']} s, "
        f"sampling {results['sampling_s']} s; 1-min load before/after "
        f"{results['loadavg_1min_before_after']}"
    )
    print(
        f"SRV answer over UDP (EDNS {EDNS_PAYLOAD}): {srv['bytes']} bytes, "
        f"{srv['records']} records, truncated={srv['truncated']}; warm cache while "
        f"sampling: {results['warm_cache_while_sampling']}"
    )
    print(
        "Python speed reference: sum(range(1000)) in "
        f"{results['python_speed_sum_range_1000_us']} us"
    )
    for title, rows in (
        (
            "in process (CPU: this process only; the HTTP server and BIND run apart)",
            results["in_process"],
        ),
        ("the cold lookup's parts, each measured alone", results["cold_lookup_parts"]),
        ("CLI as a subprocess (interpreter start-up included)", results["cli_subprocess"]),
        (
            f"check a mirror one serial behind; --for {results['per_project_check']['project']}"
            " (unchanged)",
            results["per_project_check"]["rows"],
        ),
    ):
        if not rows:
            continue
        print(f"\n{title}")
        width = max(len(name) for name in rows)
        print(f"{'':{width}}  median ms   p95 ms   min ms   max ms   CPU ms")
        for name, row in rows.items():
            cpu = "" if row["cpu_median_ms"] is None else f"{row['cpu_median_ms']:8.2f}"
            print(
                f"{name:{width}}  {row['median_ms']:9.2f} {row['p95_ms']:8.2f} "
                f"{row['min_ms']:8.2f} {row['max_ms']:8.2f} {cpu}"
            )
    target = results["target"]
    print(
        f"\nlookup median {target['lookup_cold_median_ms']} ms cold: "
        f"{'meets' if target['met_cold'] else 'MISSES'} the <= {target['target_ms']:g} ms target"
        f" (warm: {'meets' if target['met_warm'] else 'misses'})"
    )
    for name, value in results["ratios_of_medians"].items():
        print(f"{name:40} {value}")
    overhead = results["per_project_check"]["overhead_ms"]
    print(f"{'per-project check overhead (median)':40} {overhead} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=int, default=16)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--cli-samples", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.mirrors <= 99 and 1 <= args.samples <= 2000):
        parser.error("need 1 <= --mirrors <= 99 and 1 <= --samples <= 2000")
    if not 0 <= args.cli_samples <= 50:
        parser.error("need 0 <= --cli-samples <= 50")
    work = Path(tempfile.mkdtemp(prefix="mf-clientbench-", dir="/var/tmp"))
    try:
        results = measure(args, work, multiprocessing.get_context("spawn"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)


if __name__ == "__main__":
    main()
