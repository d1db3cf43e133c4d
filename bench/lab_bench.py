"""Lab lifecycle benchmark: cold and warm `lab up`, full deploy, no-change rerun, `lab down`.

    sudo .venv/bin/python bench/lab_bench.py [--runs 3] [--skip-cold] [--json]

Baselines measured in the same run, on the same machine:
- cold up    vs a bare `debootstrap` of the same package list (the floor for a template);
- warm up    vs one bare `systemd-nspawn -b` boot until sshd answers (the floor per host);
- rerun      vs `pyinfra inventories/lab.py exec -- true` (connection cost alone).
Uses its own lab name and subnet; always tears down, and checks for leftovers.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAB, SUBNET = "bn", "10.233.0.0/24"
ENV = {**os.environ, "MIRRORFLEET_LAB": LAB}


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env or ENV, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def up(env: dict[str, str] | None = None) -> tuple[float, dict]:
    seconds, out = timed([str(BIN / "mirrorfleet"), "lab", "up", "--subnet", SUBNET, "--json"], env)
    return seconds, json.loads(out)


def down(env: dict[str, str] | None = None) -> tuple[float, dict]:
    seconds, out = timed([str(BIN / "mirrorfleet"), "lab", "down", "--json"], env)
    return seconds, json.loads(out)


def pyinfra(*args: str) -> tuple[float, list[str]]:
    """Seconds, and the operations that changed or failed on any host (from pyinfra's
    JSON, where "success" lists the hosts an operation changed)."""
    seconds, out = timed([str(BIN / "pyinfra"), "-y", "--json", "inventories/lab.py", *args])
    operations = (json.loads(out)["results"] or {}).get("operations", [])
    return seconds, [op["name"] for op in operations if op["success"] or op["error"]]


def bare_debootstrap(target: Path) -> float:
    from mirrorfleet.lab.template import PACKAGES, SUITE, debian_mirror

    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE]
    return timed([*argv, str(target), debian_mirror()])[0]


def bare_nspawn_boot(template: Path, workdir: Path) -> float:
    """One container by hand: overlay, netns, veth, boot, wait for sshd."""
    from mirrorfleet.lab import container, network

    ns, veth, br = "mfbb-h", "mfbb-h", "mfbb-br"
    net = ipaddress.IPv4Network("10.234.0.0/24")
    gw, addr = net.network_address + 1, net.network_address + 10
    start = time.monotonic()
    network.ensure_bridge(br, gw, net)
    network.ensure_host_network(ns, veth, br, addr, net, gw)
    root = container.ensure_overlay(template, workdir / "h")
    subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, capture_output=True)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    pid = container.start(root, "mfbb-h", ns, "h", workdir / "console.log", "mfbb")
    try:
        container.wait_for_port(str(addr), 22, 60, pid, root)
        return time.monotonic() - start
    finally:
        container.stop([pid])
        subprocess.run(["umount", str(root)], check=False)
        network.delete_netns(ns)
        network.delete_link(br)
        container.remove_cgroups("mfbb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm up/down repetitions")
    parser.add_argument("--skip-cold", action="store_true", help="skip the template builds")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    results: dict[str, object] = {"hosts": 7, "cpus": os.cpu_count(), "runs": args.runs}
    socket.setdefaulttimeout(5)
    down()  # start clean

    if not args.skip_cold:
        cold_cache = Path(tempfile.mkdtemp(prefix="mf-cold-"))
        try:
            results["baseline_debootstrap_s"] = bare_debootstrap(cold_cache / "bare")
            shutil.rmtree(cold_cache / "bare")
            env = {**ENV, "MIRRORFLEET_CACHE": str(cold_cache)}
            results["cold_up_s"], _ = up(env)
            down(env)
        finally:
            shutil.rmtree(cold_cache, ignore_errors=True)

    ups, downs, per_host, deploys, reruns, baselines_exec = [], [], [], [], [], []
    for _ in range(args.runs):
        seconds, state = up()
        ups.append(seconds)
        per_host += [h["seconds"] for h in state["hosts"]]
        seconds, changed = pyinfra("deploy.py")
        if not changed:
            sys.exit("the first deploy changed nothing: not a fresh lab")
        deploys.append(seconds)
        seconds, changed = pyinfra("deploy.py")
        if changed:
            sys.exit(f"the rerun changed {changed}: not a no-change rerun")
        reruns.append(seconds)
        baselines_exec.append(pyinfra("exec", "--", "true")[0])
        seconds, report = down()
        downs.append(seconds)
        if any(report["remaining"].values()):
            sys.exit(f"leftovers after down: {report['remaining']}")

    from mirrorfleet.lab.template import template_dir

    with tempfile.TemporaryDirectory(prefix="mf-bare-") as workdir:
        bare = [
            bare_nspawn_boot(template_dir() / "rootfs", Path(workdir)) for _ in range(args.runs)
        ]

    med = statistics.median
    results.update(
        warm_up_s=med(ups),
        warm_up_per_host_s=med(per_host),
        baseline_bare_nspawn_boot_s=med(bare),
        deploy_full_s=med(deploys),
        rerun_no_change_s=med(reruns),
        baseline_pyinfra_exec_true_s=med(baselines_exec),
        down_s=med(downs),
        leftovers_after_down=0,
    )
    if "cold_up_s" in results:
        results["ratio_cold_up_vs_debootstrap"] = (
            results["cold_up_s"] / results["baseline_debootstrap_s"]
        )
    results["ratio_warm_up_7_hosts_vs_one_bare_boot"] = med(ups) / med(bare)
    results["ratio_rerun_vs_exec_true"] = med(reruns) / med(baselines_exec)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:42} {value:.2f}" if isinstance(value, float) else f"{key:42} {value}")


if __name__ == "__main__":
    main()
