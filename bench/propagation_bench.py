"""Propagation: origin publish -> every mirror serving the new serial, on lab hosts.

    sudo .venv/bin/python bench/propagation_bench.py [--updates 20] [--json]

Boots its own lab (origin + 3 mirrors), deploys, and publishes --updates new
releases twice: with pushes (the normal path), then timer-only (agent daemons
stopped, `publish --no-ping`, the fallback timer set to its 10 s minimum). Each
sample is the time from `publish` returning to all three mirrors serving the new
serial, polled over HTTP every 50 ms. The lab is always torn down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAB, SUBNET = "pb", "10.237.0.0/24"
MIRRORS = ["mirror1", "mirror2", "mirror3"]
TOPOLOGY = """subnet = "10.237.0.0/24"
[groups]
origin = ["origin"]
mirrors = ["mirror1", "mirror2", "mirror3"]
"""
ENV = {**os.environ, "MIRRORFLEET_LAB": LAB}


def run(*argv: str) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def on(host: str, command: str) -> str:
    return run(str(BIN / "mirrorfleet"), "lab", "exec", host, "--", "sh", "-c", command)


def serial_of(address: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}/.mirror/stamp.json", timeout=2) as r:
            return json.loads(r.read())["signed"]["serial"]
    except OSError:
        return -1


def sample(addresses: list[str], release: str, publish_flags: str, timeout: float) -> float:
    out = on(
        "origin",
        "runuser -u mirrorfleet -- sh -c 'mirrorfleet demo-content /srv/mirror --add "
        f"{release} >/dev/null && mirrorfleet origin publish --json {publish_flags}'",
    )
    published, serial = time.monotonic(), json.loads(out)["serial"]
    while any(serial_of(a) != serial for a in addresses):
        if time.monotonic() - published > timeout:
            sys.exit(f"serial {serial} did not reach every mirror within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - published


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
        "max_s": round(ordered[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as topo:
        topo.write(TOPOLOGY)
    try:
        state = json.loads(
            run(str(BIN / "mirrorfleet"), "lab", "up", "--topology", topo.name, "--json")
        )
        addresses = [h["address"] for h in state["hosts"] if h["name"] in MIRRORS]
        run(
            str(BIN / "pyinfra"),
            "-y",
            "inventories/lab.py",
            "deploy.py",
            "--data",
            "sync_interval=10",
        )
        on(
            "origin",
            "runuser -u mirrorfleet -- mirrorfleet demo-content /srv/mirror "
            "--projects 100 >/dev/null && runuser -u mirrorfleet -- mirrorfleet "
            "origin publish >/dev/null",
        )
        push = [sample(addresses, f"demo-00001==3.0.{i}", "", 30) for i in range(args.updates)]
        for mirror in MIRRORS:
            on(mirror, "systemctl stop mirrorfleet-agent.service")
        timer = [
            sample(addresses, f"demo-00002==3.0.{i}", "--no-ping", 60) for i in range(args.updates)
        ]
        results = {
            "updates": args.updates,
            "mirrors": len(MIRRORS),
            "push": percentiles(push),
            "timer_only_10s": percentiles(timer),
        }
        results["ratio_p50_timer_over_push"] = round(
            results["timer_only_10s"]["p50_s"] / results["push"]["p50_s"], 1
        )
        print(json.dumps(results, indent=2) if args.json else results)
    finally:
        subprocess.run([str(BIN / "mirrorfleet"), "lab", "down"], env=ENV, capture_output=True)
        Path(topo.name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
