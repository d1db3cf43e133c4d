"""Monitor: origin publish -> the DNS TXT of every mirror showing the new serial, on lab hosts.

    sudo .venv/bin/python bench/monitor_bench.py [--updates 20] [--baseline-updates 6] [--json]

Boots its own lab (origin, BIND primary dns1 and secondary dns2, the monitor with
its production `monitor_interval = 30`, mirror1-3), deploys deploy.py, publishes
20 demo projects once and waits for DNS to show them. Then, per update, one new
release is published on the origin and, from the moment `publish` returns (the
origin's own clock, which lab hosts share with this machine), three pollers on
this machine (20 ms period) record when:

- every mirror serves the new serial over HTTP (`/.mirror/stamp.json`): sync;
- dns1 / dns2 answer the new serial in `_head._pkgmirror` TXT;
- dns1 / dns2 answer it in every mirror's `<label>._meta._pkgmirror` TXT.

Phase "notified" is the normal path: the origin pings the mirrors and the monitor,
each agent pings the monitor after its sync, and the monitor probes at once.

Phase "polled" (the baseline) changes one thing: on the origin and the mirrors the
name `monitor` resolves to 127.0.0.1, where nothing listens on the monitor port,
so every notification to the monitor is refused at once (publish still pings the
mirrors, which still sync at once) and the monitor learns of the new head and of
the synced mirrors only from its own 30 s round, like a polling mirror checker.
Its n publishes are spread evenly over the monitor's 30 s cycle: an unmeasured
update shows when the rounds fall, then publish k returns (k + 0.5) / n of the
interval after a round. The bench checks, from publish's ping results and the
monitor's ping counter, that no notification reached the monitor in that phase
and that all did in the other.

The lab is always torn down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.exception
import dns.resolver

from mirrorfleet.config import MONITOR_PORT

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAB, SUBNET = "mb", "10.238.0.0/24"
MIRRORS = ["mirror1", "mirror2", "mirror3"]
DNS_SERVERS = ["dns1", "dns2"]
ZONE = "mirrors.lab.test."
HEAD = f"_head._pkgmirror.{ZONE}"
INTERVAL = 30  # monitor_interval: the production default, on purpose
TOPOLOGY = f"""subnet = "{SUBNET}"
[groups]
origin = ["origin"]
dns = ["dns1", "dns2"]
monitor = ["monitor"]
mirrors = {json.dumps(MIRRORS)}

[hosts.dns1]
dns_role = "primary"

[hosts.dns2]
dns_role = "secondary"

# Not shortened: notifications, not the timer, must be what drives DNS.
[hosts.monitor]
monitor_interval = {INTERVAL}
"""
ENV = {**os.environ, "MIRRORFLEET_LAB": LAB}
PERIOD = 0.02  # poll period (s)
TIMEOUT = 60.0  # per update
SERIAL = re.compile(r'"serial=(\d+)"')


def run(*argv: str) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def on(host: str, command: str) -> str:
    return run(str(BIN / "mirrorfleet"), "lab", "exec", host, "--", "sh", "-c", command)


def meta_name(label: str) -> str:
    return f"{label}._meta._pkgmirror.{ZONE}"


def txt_serial(resolver: dns.resolver.Resolver, name: str) -> int:
    try:
        answer = resolver.resolve(name, "TXT")
    except dns.exception.DNSException:
        return -1
    match = SERIAL.search(" ".join(r.to_text() for r in answer))
    return int(match.group(1)) if match else -1


def http_serial(address: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address}/.mirror/stamp.json", timeout=2) as r:
            return json.loads(r.read())["signed"]["serial"]
    except (OSError, ValueError, KeyError):
        return -1


class Pollers:
    """Three threads (HTTP, dns1, dns2) that each poll their targets every PERIOD and
    record the wall time (time.time()) each target first answered a serial > `after`."""

    def __init__(self, addresses: dict[str, str], after: int) -> None:
        self.after, self.seen, self.values = after, {}, {}
        self.stop = threading.Event()
        checks: dict[str, list[tuple[str, object]]] = {
            "http": [(m, lambda a=addresses[m]: http_serial(a)) for m in MIRRORS]
        }
        for server in DNS_SERVERS:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [addresses[server]]
            resolver.lifetime = 1
            names = [("head", HEAD)] + [(m, meta_name(m)) for m in MIRRORS]
            checks[server] = [
                (label, lambda r=resolver, n=name: txt_serial(r, n)) for label, name in names
            ]
        self.total = sum(len(c) for c in checks.values())
        self.threads = [
            threading.Thread(target=self._poll, args=(kind, targets), daemon=True)
            for kind, targets in checks.items()
        ]
        for thread in self.threads:
            thread.start()

    def _poll(self, kind: str, targets: list) -> None:
        pending = list(targets)
        while pending and not self.stop.is_set():
            tick = time.monotonic()
            for target in list(pending):
                label, check = target
                value = check()
                if value > self.after:
                    self.seen[(kind, label)] = time.time()
                    self.values[(kind, label)] = value
                    pending.remove(target)
            self.stop.wait(max(0.0, PERIOD - (time.monotonic() - tick)))

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.seen) < self.total and time.monotonic() < deadline:
            time.sleep(PERIOD)
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return len(self.seen) == self.total


def publish(release: str) -> tuple[float, dict]:
    """Add one release and publish; (wall time publish returned on the origin, result)."""
    out = on(
        "origin",
        f"runuser -u mirrorfleet -- mirrorfleet demo-content /srv/mirror --add {release} "
        ">/dev/null && out=$(runuser -u mirrorfleet -- mirrorfleet origin publish --json) "
        "&& date +%s.%N && printf '%s\\n' \"$out\"",
    )
    stamp, _, body = out.partition("\n")
    return float(stamp), json.loads(body)


def sample(
    addresses: dict[str, str], serial: int, release: str, notified: bool
) -> tuple[dict, dict[str, float]]:
    """One update: its row of delays, and wall times (publish called and returned, the
    head first seen on dns1, which is when the monitor's round published)."""
    pollers = Pollers(addresses, serial)
    called = time.time()
    returned, result = publish(release)
    new = result["serial"]
    if new != serial + 1:
        sys.exit(f"publish gave serial {new}, expected {serial + 1}")
    monitor_pings = [s for url, s in result["pings"].items() if f":{MONITOR_PORT}/" in url]
    expected = 202 if notified else 0
    if monitor_pings != [expected]:
        sys.exit(f"the origin's ping to the monitor returned {monitor_pings}, not [{expected}]")
    if not pollers.wait(TIMEOUT):
        missing = sorted(
            f"{k}:{label}"
            for k, targets in (("http", MIRRORS), *((s, ["head", *MIRRORS]) for s in DNS_SERVERS))
            for label in targets
            if (k, label) not in pollers.seen
        )
        sys.exit(f"serial {new} not everywhere within {TIMEOUT}s: missing {missing}")
    if set(pollers.values.values()) != {new}:
        sys.exit(f"expected serial {new} everywhere, saw {pollers.values}")

    def latest(kind: str, labels: list[str]) -> float:
        return max(pollers.seen[(kind, label)] for label in labels) - returned

    row = {
        "serial": new,
        "sync_http": latest("http", MIRRORS),
        "head_dns1": latest("dns1", ["head"]),
        "head_dns2": latest("dns2", ["head"]),
        "mirrors_dns1": latest("dns1", MIRRORS),
        "mirrors_dns2": latest("dns2", MIRRORS),
    }
    row["monitor_dns"] = row["mirrors_dns1"] - row["sync_http"]
    row["secondary"] = row["mirrors_dns2"] - row["mirrors_dns1"]
    row = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
    return row, {"called": called, "returned": returned, "round": pollers.seen[("dns1", "head")]}


def wait_for_dns(addresses: dict[str, str], serial: int, timeout: float) -> None:
    pollers = Pollers(addresses, serial - 1)
    if not pollers.wait(timeout) or set(pollers.values.values()) != {serial}:
        sys.exit(f"serial {serial} did not reach DNS within {timeout}s: {pollers.values}")


def monitor_metrics(address: str) -> dict[str, float]:
    """The monitor's counters that matter here: notifications, rounds, DNS updates."""
    with urllib.request.urlopen(f"http://{address}:{MONITOR_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    wanted = {
        "pings": 'mirrorfleet_monitor_pings_total{verdict="accepted"}',
        "rounds": "mirrorfleet_monitor_cycle_duration_seconds_count",
        "round_s": "mirrorfleet_monitor_cycle_duration_seconds_sum",
        "dns_updates": 'mirrorfleet_monitor_publishes_total{result="applied"}',
    }
    found = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in "#")
    return {key: float(found.get(name, 0)) for key, name in wanted.items()}


def delta(after: dict[str, float], before: dict[str, float], updates: int) -> dict[str, float]:
    rounds = after["rounds"] - before["rounds"]
    return {
        "notifications_accepted": after["pings"] - before["pings"],
        "rounds_per_update": round(rounds / updates, 2),
        "dns_updates_per_update": round(
            (after["dns_updates"] - before["dns_updates"]) / updates, 2
        ),
        "mean_round_s": round((after["round_s"] - before["round_s"]) / max(rounds, 1), 3),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
        "max_s": round(ordered[-1], 3),
    }


MEASURES = {
    "sync_http": "every mirror serves it over HTTP (sync)",
    "head_dns1": "head TXT on dns1",
    "head_dns2": "head TXT on dns2",
    "mirrors_dns1": "every mirror's meta TXT on dns1",
    "mirrors_dns2": "every mirror's meta TXT on dns2",
    "monitor_dns": "  split: monitor + DNS (dns1 meta - sync)",
    "secondary": "  split: dns1 -> dns2 (NOTIFY + IXFR)",
}


def table(results: dict) -> str:
    lines = [
        f"{'measure (s after publish returns)':<44} {'phase':<9} {'p50':>7} {'p95':>7} {'max':>7}"
    ]
    for key, title in MEASURES.items():
        for phase in ("notified", "polled"):
            p = results[phase]["stats"][key]
            lines.append(
                f"{title:<44} {phase:<9} {p['p50_s']:>7.3f} {p['p95_s']:>7.3f} {p['max_s']:>7.3f}"
            )
    lines.append(
        f"polled / notified, p50 of every mirror's meta TXT on dns2: "
        f"{results['ratio_p50_polled_over_notified']}x (target: notified p50 <= 3 s)"
    )
    for phase in ("notified", "polled"):
        lines.append(f"monitor, phase {phase}: {results[phase]['monitor']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20, help="notified updates (>= 20)")
    parser.add_argument("--baseline-updates", type=int, default=6, help="polled updates")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.updates < 20 or args.baseline_updates < 1:
        parser.error("--updates must be >= 20 and --baseline-updates >= 1")
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as topo:
        topo.write(TOPOLOGY)
    try:
        state = json.loads(
            run(
                str(BIN / "mirrorfleet"),
                "lab",
                "up",
                "--name",
                LAB,
                "--topology",
                topo.name,
                "--subnet",
                SUBNET,
                "--json",
            )
        )
        addresses = {h["name"]: h["address"] for h in state["hosts"]}
        booted = time.monotonic()
        run(str(BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py")
        deployed = time.monotonic()
        out = on(
            "origin",
            "runuser -u mirrorfleet -- mirrorfleet demo-content /srv/mirror --projects 20 "
            ">/dev/null && runuser -u mirrorfleet -- mirrorfleet origin publish --json",
        )
        serial = json.loads(out)["serial"]
        wait_for_dns(addresses, serial, 120)

        before = monitor_metrics(addresses["monitor"])
        notified = []
        for i in range(args.updates):
            notified.append(sample(addresses, serial, f"demo-00000==1.{i}", notified=True)[0])
            serial += 1
            time.sleep(0.5)
        monitor_notified = delta(monitor_metrics(addresses["monitor"]), before, args.updates)

        # Baseline: notifications to the monitor are refused at once; nothing else changes.
        for host in ["origin", *MIRRORS]:
            # replace the line: with `multi on` (Debian's host.conf) a second one would
            # only add an address to try after 127.0.0.1 is refused
            on(host, "sed -i -E 's/^[0-9.]+([[:space:]]+monitor)$/127.0.0.1\\1/' /etc/hosts")
            if on(host, "getent ahostsv4 monitor | cut -d' ' -f1 | sort -u").split() != [
                "127.0.0.1"
            ]:
                sys.exit(f"{host}: could not point the name monitor at 127.0.0.1")
        # One unmeasured update shows when the monitor's timer rounds fall; each measured
        # publish then returns at offset (k + 0.5) / n of the interval after a round, so
        # the samples cover the cycle evenly instead of hitting one phase n times.
        _, marks = sample(addresses, serial, "demo-00001==0.0", notified=False)
        serial += 1
        before = monitor_metrics(addresses["monitor"])
        polled = []
        for k in range(args.baseline_updates):
            cost = marks["returned"] - marks["called"]
            offset = (k + 0.5) / args.baseline_updates * INTERVAL
            start = marks["round"] + offset - cost
            while start < time.time() + 0.5:
                start += INTERVAL
            time.sleep(start - time.time())
            row, new_marks = sample(addresses, serial, f"demo-00001==1.{k}", notified=False)
            row["offset_s"] = round((new_marks["returned"] - marks["round"]) % INTERVAL, 2)
            polled.append(row)
            marks = new_marks
            serial += 1
        monitor_polled = delta(monitor_metrics(addresses["monitor"]), before, args.baseline_updates)
        accepted = (
            monitor_notified["notifications_accepted"],
            monitor_polled["notifications_accepted"],
        )
        if accepted[0] < 4 * args.updates or accepted[1] != 0:
            sys.exit(
                f"the monitor accepted {accepted[0]} notifications in phase notified "
                f"(expected >= {4 * args.updates}) and {accepted[1]} in phase polled (0)"
            )

        results = {
            "updates": {"notified": args.updates, "polled": args.baseline_updates},
            "mirrors": len(MIRRORS),
            "monitor_interval_s": INTERVAL,
            "notified": {
                "stats": {k: percentiles([s[k] for s in notified]) for k in MEASURES},
                "monitor": monitor_notified,
                "samples": notified,
            },
            "polled": {
                "stats": {k: percentiles([s[k] for s in polled]) for k in MEASURES},
                "monitor": monitor_polled,
                "samples": polled,
            },
            "lab_up_s": round(booted - started, 1),
            "deploy_s": round(deployed - booted, 1),
        }
        results["ratio_p50_polled_over_notified"] = round(
            results["polled"]["stats"]["mirrors_dns2"]["p50_s"]
            / results["notified"]["stats"]["mirrors_dns2"]["p50_s"],
            1,
        )
        results["total_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(results, indent=2) if args.json else table(results))
    finally:
        subprocess.run(
            [str(BIN / "mirrorfleet"), "lab", "down", "--name", LAB], env=ENV, capture_output=True
        )
        Path(topo.name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
