"""pip and uv against a lab mirror, with and without PEP 658 `.metadata` files (issue 16).

    sudo .venv/bin/python bench/metadata_bench.py [--runs 3] [--json] [--keep]

Run on demand, not in CI. A lab of two hosts (origin, mirror1) is booted and
deployed. The wheel cache's set (tests/wheelcache.py: requests and its dependencies,
packaging, setuptools, wheel, and six as an sdist) is imported on the origin as a
bandersnatch tree (a `.metadata` file beside every wheel, advertised in both page
forms) and published; then the same files as a plain PEP 503 tree (no `.metadata`:
the pages no longer advertise it) imported over it and published. After each, the
clients of tests/pyclients.py run against mirror1, each fresh (new venv, no cache,
nothing of this machine's configuration), in turn, `--runs` times:

- resolve: `pip install --dry-run` (Debian's pip, the latest pip), `uv pip install
  --dry-run`, `uv lock` (a uv project);
- resolve + install: `pip install`, `uv pip install`, `uv lock` then `uv sync`.

Each row gives the median seconds, and the requests and bytes mirror1's nginx logged
for that client's run (its access log, read before and after). Both variants
include building six from its sdist, which fetches setuptools from the mirror.
Always tears the lab down unless --keep.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import indextrees  # noqa: E402
import pyclients  # noqa: E402
import wheelcache  # noqa: E402
from labkit import LabRun, import_and_publish, served_serial  # noqa: E402

from mirrorfleet.cli.client import pip_settings, uv_toml  # noqa: E402
from mirrorfleet.tree.keys import parse_public_key  # noqa: E402

LAB, SUBNET = "mb", "10.238.0.0/24"
TOPOLOGY = """# bench/metadata_bench.py: an origin and one mirror
[groups]
origin = ["origin"]
mirrors = ["mirror1"]
"""
VARIANTS = {"with .metadata": indextrees.bandersnatch, "without .metadata": indextrees.plain}
MODES = ("resolve", "resolve + install")


def served(lab: LabRun) -> int:
    return int(lab.check("mirror1", "stat", "-c", "%s", "/var/log/nginx/access.log"))


def traffic(lab: LabRun, since: int, agent: str) -> tuple[int, int]:
    """Requests and body bytes mirror1 served to `agent` since byte `since` of its log."""
    text = lab.check("mirror1", "tail", "-c", f"+{since + 1}", "/var/log/nginx/access.log")
    mine = [r for r in pyclients.requests_in(text) if r.agent.startswith(agent)]
    return len(mine), sum(r.bytes for r in mine)


def measure(lab: LabRun, clients: pyclients.Clients, index: str, runs: int) -> list[dict]:
    settings = pip_settings(index)
    host = settings["trusted-host"]
    pip_conf = "[global]\n" + "\n".join(f"{k} = {v}" for k, v in settings.items())
    exports = {
        "PIP_INDEX_URL": index,
        "PIP_TRUSTED_HOST": host,
        "UV_DEFAULT_INDEX": index,
        "UV_INSECURE_HOST": host,
    }
    versions = clients.versions()
    agents = {
        "debian-pip": f"pip/{versions['debian-pip'].split()[0]}",
        "latest-pip": f"pip/{versions['latest-pip']}",
        "uv-pip": f"uv/{versions['uv']}",
        "uv-project": f"uv/{versions['uv']}",
    }
    calls = {
        "debian-pip": lambda dry: clients.debian_pip(pip_conf, dry_run=dry),
        "latest-pip": lambda dry: clients.latest_pip(exports, dry_run=dry),
        "uv-pip": lambda dry: clients.uv_pip(uv_toml(index, host), dry_run=dry),
    }
    samples: list[dict] = []
    for i in range(runs):
        for client in pyclients.CLIENTS:
            if client == "uv-project":  # one run: lock (resolve), then sync
                since = served(lab)
                run = clients.uv_project(exports)
                pyclients.check_run(run, clients.cache)
                requests, size = traffic(lab, since, agents[client])
                samples.append(sample(i, client, "resolve", run.phases["lock"], None, None))
                samples.append(sample(i, client, "resolve + install", run.seconds, requests, size))
                continue
            for mode in MODES:
                since = served(lab)
                run = calls[client](mode == "resolve")
                if mode != "resolve":
                    pyclients.check_run(run, clients.cache)
                requests, size = traffic(lab, since, agents[client])
                samples.append(sample(i, client, mode, run.seconds, requests, size))
            print(f"  run {i + 1}: {client} done", file=sys.stderr)
    return samples


def sample(i: int, client: str, mode: str, seconds: float, requests, size) -> dict:
    return {
        "run": i,
        "client": client,
        "mode": mode,
        "seconds": seconds,
        "requests": requests,
        "bytes": size,
    }


def summary(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for client in pyclients.CLIENTS:
        for mode in MODES:
            row: dict = {"client": client, "mode": mode}
            for variant, samples in results.items():
                mine = [s for s in samples if s["client"] == client and s["mode"] == mode]
                row[variant] = {
                    "median_s": statistics.median(s["seconds"] for s in mine),
                    "runs": [round(s["seconds"], 2) for s in mine],
                    "requests": mine[0]["requests"],
                    "bytes": mine[0]["bytes"],
                }
            rows.append(row)
    return rows


def table(rows: list[dict], versions: dict[str, str]) -> str:
    names = {
        "debian-pip": f"Debian's pip {versions['debian-pip'].split()[0]}",
        "latest-pip": f"pip {versions['latest-pip']}",
        "uv-pip": f"uv {versions['uv']} `uv pip install`",
        "uv-project": f"uv {versions['uv']} `uv lock` / `+ uv sync`",
    }
    with_, without = VARIANTS
    lines = [
        f"| client | what | {with_} | {without} | served by the mirror (with / without) |",
        "|---|---|---:|---:|---|",
    ]
    for row in rows:
        a, b = row[with_], row[without]
        served_text = "(in the next row)"
        if a["requests"] is not None:
            kb = f"{a['bytes'] / 1024:.0f} / {b['bytes'] / 1024:.0f}"
            served_text = f"{a['requests']} / {b['requests']} requests, {kb} KB"
        lines.append(
            f"| {names[row['client']]} | {row['mode']} | {a['median_s']:.2f} s "
            f"| {b['median_s']:.2f} s | {served_text} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    cache = wheelcache.ensure()
    lab = LabRun(LAB, SUBNET)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="metadata-bench-") as tmp:
        work = Path(tmp)
        topology = work / "topology.toml"
        topology.write_text(TOPOLOGY)
        try:
            started = time.monotonic()
            lab.up("--topology", str(topology))
            lab.pyinfra("deploy.py")
            print(f"lab up and deployed in {time.monotonic() - started:.0f}s", file=sys.stderr)
            secrets = Path(lab.state["ssh_config"]).with_name("secrets")
            key = parse_public_key((secrets / "origin-signing.pub").read_text())
            clients = pyclients.Clients(work / "clients", cache)
            versions = clients.setup()
            index = f"http://{lab.address('mirror1')}/simple/"
            files = [d.path for d in cache.dists]
            for number, (variant, build) in enumerate(VARIANTS.items()):
                source = build(files, work / f"source-{number}")
                serial = int(import_and_publish(lab, f"source-{number}", source)["serial"])
                lab.wait_for(lambda s=serial: served_serial(lab, "mirror1", key) == s, 60)
                print(f"{variant}: serial {serial} on mirror1", file=sys.stderr)
                results[variant] = measure(lab, clients, index, args.runs)
        finally:
            if not args.keep:
                lab.down()
    rows = summary(results)
    if args.json:
        print(json.dumps({"versions": versions, "rows": rows, "samples": results}, indent=1))
    else:
        print(table(rows, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
