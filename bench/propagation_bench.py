"""Propagation: origin publish -> every mirror serving the new serial, on lab hosts.

    sudo .venv/bin/python bench/propagation_bench.py [--updates 20] [--files N]
        [--no-timer] [--json] [--cache DIR] [--keep-lab]

Boots its own lab (origin + 3 mirrors, lab "pb" on 10.237.0.0/24), deploys, fills
the origin with the demo tree (100 projects) and publishes it. Then:

1. push, demo tree: --updates new releases, each written by `demo-content --add ...
   --list-changed` and published with that list (`origin publish --changed -`, so
   publish reads only what changed); the agents are pinged.
2. --files N (N > 0): a tree of about N distribution files in bandersnatch's layout
   (bench/bandersnatch_tree.py, cached under --cache so a rerun does not generate it
   again) is copied from the host side into the origin's /srv/mirror (through the
   container's overlay, owned by the origin's service user), the root pages are
   rewritten to list every project, and the origin publishes `--full`. Every mirror
   then catches up by its own full sync: how long that took is reported. Then the
   same pushed releases as in 1, on the big tree.
3. timer only (unless --no-timer): agent daemons stopped, `publish --no-ping`, the
   fallback timer at its 10 s minimum (the deploy sets `sync_interval=10`).

Each sample is timed on one clock (the containers share the host's): the origin
prints the time when the change list is written and when `publish` returns; the
host polls every mirror's stamp over HTTP every 20 ms and notes when each serves
the new serial. Reported per mode: p50/p95/max of publish returning -> all three
mirrors serving, the publish itself (CLI wall and the work its --json reports), and
from each agent's `GET :8873/status` (`last_synced`) the mode and seconds of the sync
that brought it there, and when it started after publish returned. The load
average is recorded around every phase. The lab is always torn down (SIGTERM too),
unless --keep-lab (then `MIRRORFLEET_LAB=pb mirrorfleet lab down` is yours to run).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import bandersnatch_tree as bt

from mirrorfleet.config import AGENT_PORT
from mirrorfleet.lab.state import lab_dir

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
USER = "mirrorfleet"  # the service user the origin role gives the tree (roles/fleet.py)
TREE = "/srv/mirror"
LIST = "/tmp/pb-changed.txt"  # on the origin: the change list of the last release
DEFAULT_CACHE = Path("/var/cache/mirrorfleet/bench")
POLL_S = 0.02
TARGET_P50_S = 1.0  # issue 15: push p50 <= 1 s with a 1M-file tree on the origin


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(*argv: str, timeout: float = 900) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def on(host: str, command: str, timeout: float = 900) -> str:
    return run(
        str(BIN / "mirrorfleet"), "lab", "exec", host, "--", "sh", "-c", command, timeout=timeout
    )


def as_service(command: str) -> str:
    """A shell command run as the origin's service user, as a publish runs."""
    return f"runuser -u {USER} -- sh -c {shlex.quote(command)}"


def code() -> dict[str, object]:
    """What the lab runs: the deploy builds its wheel from this checkout as it is."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True
    )
    return {
        "commit": head.stdout.strip(),
        "src_uncommitted": [line[3:] for line in dirty.stdout.splitlines()],
    }


def load() -> dict[str, object]:
    return {
        "at": time.strftime("%H:%M:%S"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }


# ---------------------------------------------------------------- what mirrors serve


def serial_of(address: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}/.mirror/stamp.json", timeout=2) as r:
            return json.loads(r.read())["signed"]["serial"]
    except (OSError, ValueError, KeyError):
        return -1


def wait_serial(addresses: list[str], serial: int, timeout: float, every: float) -> list[float]:
    """When (time.time()) each mirror first served `serial` (or a later one)."""
    started, seen = time.time(), {}
    while len(seen) < len(addresses):
        for address in addresses:
            if address not in seen and serial_of(address) >= serial:
                seen[address] = time.time()
        if len(seen) == len(addresses):
            break
        if time.time() - started > timeout:
            missing = sorted(set(addresses) - set(seen))
            sys.exit(f"serial {serial} did not reach {missing} within {timeout:.0f}s")
        time.sleep(every)
    return [seen[a] for a in addresses]


def agent_status(address: str) -> dict | None:
    try:
        url = f"http://{address}:{AGENT_PORT}/status"
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def sync_of(address: str, serial: int, timeout: float = 5.0) -> dict | None:
    """The agent daemon's sync that reached `serial` (its `last_synced`, or `last` on
    code without it). The stamp is served before the agent writes its trace and
    notifies, so its status may lag the stamp briefly. None: the daemon did not sync
    to it (the fallback timer's `agent sync` got there first)."""
    deadline = time.time() + timeout
    while True:
        status = agent_status(address) or {}
        synced = status.get("last_synced", status.get("last")) or {}
        if synced.get("serial") == serial and synced.get("status") == "synced":
            return synced
        if time.time() > deadline:
            return None
        time.sleep(0.05)


# ---------------------------------------------------------------- one release


def publish_release(release: str, flags: str) -> tuple[float, float, float, dict]:
    """Write one release on the origin and publish its change list; (list written,
    publish returned, publish CLI wall, publish's --json), times by the origin's clock
    (the host's: containers share it)."""
    command = (
        f"mirrorfleet demo-content {TREE} --add {release} --list-changed > {LIST} && "
        f"date +%s.%N && mirrorfleet origin publish --json --changed - {flags} < {LIST} && "
        "date +%s.%N"
    )
    lines = on("origin", as_service(command), timeout=300).strip().splitlines()
    listed, published = float(lines[0]), float(lines[-1])
    result = json.loads("\n".join(lines[1:-1]))
    return listed, published, published - listed, result


def sample(addresses: list[str], release: str, flags: str, timeout: float, pushed: bool) -> dict:
    listed, published, wall, result = publish_release(release, flags)
    serial = result["serial"]
    if result["mode"] != "changed-list" or not result["record"]["complete"]:
        sys.exit(f"publish of {release} was not by the change list: {result}")
    served = wait_serial(addresses, serial, timeout, POLL_S)
    out = {
        "release": release,
        "serial": serial,
        "propagation_s": round(max(served) - published, 4),
        "end_to_end_s": round(max(served) - listed, 4),
        "publish_wall_s": round(wall, 4),
        "publish_work_s": round(result["seconds"], 4),
        "record_written": result["record"]["written"],
        "served_after_s": [round(t - published, 4) for t in served],
    }
    if pushed:
        out["pings"] = sorted(set(result["pings"].values()), key=str)
        out["syncs"] = [agent_sync(a, serial, published) for a in addresses]
    return out


def agent_sync(address: str, serial: int, published: float) -> dict:
    synced = sync_of(address, serial)
    if synced is None:
        return {"by": "not the daemon"}
    return {
        "mode": synced.get("mode"),
        "seconds": round(synced["seconds"], 4),
        "started_after_s": round(synced["finished"] - synced["seconds"] - published, 4),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
        "max_s": round(ordered[-1], 3),
    }


def phase(
    addresses: list[str], project: str, version: str, updates: int, pushed: bool
) -> dict[str, object]:
    """--updates releases of `project` (versions version.0, version.1 ...), summed up."""
    flags, timeout = ("", 30) if pushed else ("--no-ping", 60)
    before = load()
    samples = [
        sample(addresses, f"{project}=={version}.{i}", flags, timeout, pushed)
        for i in range(updates)
    ]
    out: dict[str, object] = {
        **percentiles([s["propagation_s"] for s in samples]),
        "end_to_end": percentiles([s["end_to_end_s"] for s in samples]),
        "publish_wall": percentiles([s["publish_wall_s"] for s in samples]),
        "publish_work": percentiles([s["publish_work_s"] for s in samples]),
    }
    if pushed:
        syncs = [s["syncs"][i] for s in samples for i in range(len(addresses))]
        by_daemon = [x for x in syncs if "seconds" in x]
        modes = [str(x.get("mode", x.get("by"))) for x in syncs]
        out["agent_modes"] = {m: modes.count(m) for m in sorted(set(modes))}
        out["agent_sync"] = percentiles([x["seconds"] for x in by_daemon])
        out["agent_sync_per_mirror"] = [
            percentiles([x["seconds"] for x in (s["syncs"][i] for s in samples) if "seconds" in x])
            for i in range(len(addresses))
        ]
        out["agent_started_after_publish"] = percentiles([x["started_after_s"] for x in by_daemon])
        out["pings"] = sorted({str(p) for s in samples for p in s["pings"]})
    out["load_before"], out["load_after"] = before, load()
    out["samples"] = samples
    return out


# ---------------------------------------------------------------- the big tree


def service_ids(root: Path) -> tuple[int, int]:
    """The origin's service user, by its own /etc/passwd (no user namespace: its ids
    are the host's)."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == USER:
            return int(fields[2]), int(fields[3])
    sys.exit(f"no user {USER} on the origin")


def load_big_tree(addresses: list[str], files: int, cache: Path) -> dict[str, object]:
    """Copy the cached bandersnatch tree into the origin, publish it --full, and wait
    for every mirror's full sync."""
    tree, info = bt.cached_tree(cache, bt.Params(files), say)
    root = lab_dir(LAB) / "hosts" / "origin" / "root"
    dest = root / TREE.lstrip("/")
    uid, gid = service_ids(root)
    out: dict[str, object] = {
        "files": files,
        "projects": info["projects"],
        "pages": info["pages"],
        "generated_bytes": info["disk_bytes"],
        "load_before": load(),
    }
    # One pass: the archive already says who owns what (the service user, as the
    # origin role makes the tree), so no chown walks the copy again. The copy goes
    # through the container's overlay (its root), never into the layer below.
    say(f"copying {tree} into the origin's {TREE} (owner {uid}:{gid})")
    started = time.monotonic()
    pack = subprocess.Popen(
        [
            *("tar", "-C", str(tree), "--numeric-owner", f"--owner={uid}", f"--group={gid}"),
            *("-cf", "-", "packages", "simple"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        unpack = subprocess.run(
            ["tar", "-C", str(dest), "--numeric-owner", "-xpf", "-"],
            stdin=pack.stdout,
            timeout=3600,
        )
        pack.stdout.close()
        packed = pack.wait(timeout=60)
    finally:
        if pack.poll() is None:
            pack.kill()
    if packed != 0 or unpack.returncode != 0:
        sys.exit(f"copying the tree into the origin failed (tar: {packed}, {unpack.returncode})")
    out["copy_s"] = round(time.monotonic() - started, 1)
    for top in ("packages", "simple", "simple/index.html"):
        st = (dest / top).stat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            sys.exit(f"{dest / top} is owned by {st.st_uid}:{st.st_gid}, not {uid}:{gid}")
    # The copied root pages list only the generated projects: list the demo ones too.
    on("origin", as_service(f"mirrorfleet demo-content {TREE} --projects 100 >/dev/null"))
    say("origin publish --full of the big tree")
    command = "date +%s.%N && mirrorfleet origin publish --full --json && date +%s.%N"
    lines = on("origin", as_service(command), timeout=3600).strip().splitlines()
    began, published = float(lines[0]), float(lines[-1])
    result = json.loads("\n".join(lines[1:-1]))
    serial = result["serial"]
    out["publish_full"] = {
        "serial": serial,
        "wall_s": round(published - began, 1),
        "work_s": round(result["seconds"], 1),
        "projects_changed": len(result["changed"]),
        "complete_record": result["record"]["complete"],
    }
    say(f"serial {serial} published; waiting for every mirror's full sync")
    served = wait_serial(addresses, serial, timeout=7200, every=1.0)
    out["full_sync"] = {
        "all_three_serving_after_s": round(max(served) - published, 1),
        "served_after_s": [round(t - published, 1) for t in served],
        "agents": [agent_sync(a, serial, published) for a in addresses],
    }
    out["load_after"] = load()
    say(f"big tree in: {json.dumps(out)}")
    return out


# ---------------------------------------------------------------- the run


def deploy(retries: int) -> None:
    """Converge the lab; once more on a failure (a host's apt may meet a transient
    network error)."""
    argv = [str(BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py"]
    for attempt in range(retries + 1):
        proc = subprocess.run(
            [*argv, "--data", "sync_interval=10"],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode == 0:
            return
        say(f"deploy failed (attempt {attempt + 1}): {proc.stdout[-1500:]}")
    sys.exit("deploy failed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--updates", type=int, default=20, help="releases per mode")
    parser.add_argument(
        "--files",
        type=int,
        default=0,
        help="also a bandersnatch-layout tree of about N files on the origin (0: demo only)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated trees")
    parser.add_argument("--no-timer", action="store_true", help="skip the timer-only mode")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.files:
        bt.cached_tree(args.cache, bt.Params(args.files), say)  # before any lab exists
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as topo:
        topo.write(TOPOLOGY)
    ok = False
    started = time.monotonic()
    try:
        subprocess.run(  # what a killed run left behind
            [str(BIN / "mirrorfleet"), "lab", "down"], env=ENV, capture_output=True, timeout=3600
        )
        say(f"lab {LAB} up, deploy")
        state = json.loads(
            run(str(BIN / "mirrorfleet"), "lab", "up", "--topology", topo.name, "--json")
        )
        addresses = [h["address"] for h in state["hosts"] if h["name"] in MIRRORS]
        deployed = code()
        deploy(retries=1)
        first = on(
            "origin",
            as_service(
                f"mirrorfleet demo-content {TREE} --projects 100 >/dev/null && "
                "mirrorfleet origin publish --json"
            ),
        )
        wait_serial(addresses, json.loads(first)["serial"], 120, 0.2)
        results: dict[str, object] = {
            "updates": args.updates,
            "mirrors": len(MIRRORS),
            "code": deployed,
        }
        say("push, demo tree")
        results["push"] = phase(addresses, "demo-00001", "3.0", args.updates, True)
        if args.files:
            results["big_tree"] = load_big_tree(addresses, args.files, args.cache)
            say(f"push, {args.files:,}-file tree")
            big = phase(addresses, "demo-00003", "4.0", args.updates, True)
            results["push_big"] = big
            results["ratio_p50_big_over_demo"] = round(big["p50_s"] / results["push"]["p50_s"], 2)
            results["target_p50_s"] = TARGET_P50_S
            results["target_met"] = big["p50_s"] <= TARGET_P50_S
        if not args.no_timer:
            for mirror in MIRRORS:
                on(mirror, "systemctl stop mirrorfleet-agent.service")
            say("timer only")
            results["timer_only_10s"] = phase(addresses, "demo-00002", "3.0", args.updates, False)
            results["ratio_p50_timer_over_push"] = round(
                results["timer_only_10s"]["p50_s"] / results["push"]["p50_s"], 1
            )
        results["run_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(results, indent=2) if args.json else summary(results))
        ok = True
    finally:
        if args.keep_lab:
            say(f"lab {LAB} left up (--keep-lab)")
        else:
            say(f"lab {LAB} down")
            down = time.monotonic()
            proc = subprocess.run(
                [str(BIN / "mirrorfleet"), "lab", "down"],
                env=ENV,
                capture_output=True,
                text=True,
                timeout=3600,
            )
            say(f"lab down: exit {proc.returncode} in {time.monotonic() - down:.0f}s")
            if proc.returncode != 0:
                say(proc.stderr[-2000:])
        Path(topo.name).unlink(missing_ok=True)
        if not ok:
            say("failed")


def summary(results: dict) -> str:
    """The headline numbers, without the samples."""

    def strip(item: object) -> object:
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items() if k != "samples"}
        return item

    return json.dumps(strip(results), indent=1)


if __name__ == "__main__":
    main()
