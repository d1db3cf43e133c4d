"""DNS publish cycles for a large fleet, one function per backend.

    .venv/bin/python bench/dns_bench.py --mirrors 1000 --repeat 5 [--backend route53] [--json]

Each backend times three full cycles (read live -> plan -> apply -> wait until the
change is live) on a fresh zone: the first publish, a cycle with no change, and a
cycle where --change-share of the mirrors turn from fresh to lagging. Figures are
the median of --repeat runs. The baseline, measured in the same run on its own fresh
zones, is a naive publisher that sends one change call per record set.

Route 53 runs against a moto server on 127.0.0.1, started and stopped here by PID.
Everything is bounded: boto's timeouts, 30 s for the server to start, and --timeout
for the whole run.
"""

from __future__ import annotations

import json
import signal
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.config import DnsConfig
from mirrorfleet.testing import demo_fleet
from mirrorfleet.testing.loopback_route53 import dummy_aws_env, moto_route53
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import update
from mirrorfleet.zone.plan import Plan
from mirrorfleet.zone.providers import route53
from mirrorfleet.zone.records import RecordSet

ZONE = "mirrors.test."
SCENARIOS = ("first publish", "no change", "state change")
DUMMY_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class Row:
    backend: str
    scenario: str
    changes: int  # record sets created, updated or deleted
    seconds: float  # ours, median
    calls: int  # ours: every API call of the cycle
    change_calls: int  # ours: calls that change the zone
    naive_seconds: float
    naive_calls: int
    naive_change_calls: int

    @property
    def ratio(self) -> float:
        return self.naive_seconds / self.seconds if self.seconds else float("nan")


def fleet_state(mirrors: int, lagging: set[int], key: Ed25519PrivateKey) -> dict:
    records = demo_fleet.mirrors(mirrors, regions=20, lagging=lagging, serial=9)
    stamp = json.loads(Stamp(serial=9, ts=1_700_000_900, origin="origin").sign(key))
    return {"stamp": stamp, "mirrors": [asdict(m) for m in records]}


def scenario_states(mirrors: int, change_share: float) -> list[dict]:
    key = Ed25519PrivateKey.generate()
    step = max(1, round(1 / change_share))
    same = fleet_state(mirrors, set(), key)
    return [same, same, fleet_state(mirrors, set(range(0, mirrors, step)), key)]


# --- Route 53 ----------------------------------------------------------------------


class NaiveRoute53(route53.Route53Provider):
    """The baseline: one ChangeResourceRecordSets call per record set, then INSYNC."""

    def apply(self, plan: Plan, owner: RecordSet, owner_is_live: bool) -> int:
        live = self.last_read or {}
        origin = self.origin
        changes = [route53.change("CREATE", route53.record_of(r, origin)) for r in plan.creates]
        changes += [route53.change("UPSERT", route53.record_of(d, origin)) for _, d in plan.updates]
        changes += [route53.change("DELETE", live[(r.name, r.rdtype)]) for r in plan.deletes]
        ids = [
            self.client.change_resource_record_sets(
                HostedZoneId=self.hosted_zone_id, ChangeBatch={"Changes": [c]}
            )["ChangeInfo"]["Id"]
            for c in changes
        ]
        if ids:
            self.client.get_waiter("resource_record_sets_changed").wait(
                Id=ids[-1], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        return len(ids)


def route53_cycles(
    endpoint: str, kind: type[route53.Route53Provider], states: list[dict]
) -> list[tuple[float, int, int, int]]:
    """The three scenarios on a fresh hosted zone: (seconds, changes, calls, change calls)."""
    admin = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1", **DUMMY_AWS)
    zone_id = admin.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)
    zone_id = zone_id["HostedZone"]["Id"].split("/")[-1]
    config = DnsConfig(zone=ZONE, provider="route53", hosted_zone_id=zone_id, endpoint_url=endpoint)
    target = kind(ZONE, zone_id, endpoint_url=endpoint, insync_delay=1)
    target.client  # noqa: B018 -- made once, outside the timings, as a daemon would
    results = []
    for state in states:
        target.calls.clear()
        start = time.perf_counter()
        result = update.update_zone(config, state, apply=True, provider=target)
        seconds = time.perf_counter() - start
        calls = sum(target.calls.values())
        results.append(
            (seconds, result.plan.changes, calls, target.calls.get("ChangeResourceRecordSets", 0))
        )
    return results


def bench_route53(mirrors: int, repeat: int, change_share: float) -> list[Row]:
    states = scenario_states(mirrors, change_share)
    ours: list[list[tuple[float, int, int, int]]] = []
    naive: list[list[tuple[float, int, int, int]]] = []
    with dummy_aws_env(), moto_route53() as endpoint:
        for _ in range(repeat):
            ours.append(route53_cycles(endpoint, route53.Route53Provider, states))
            naive.append(route53_cycles(endpoint, NaiveRoute53, states))
    rows = []
    for i, scenario in enumerate(SCENARIOS):
        mine, base = [run[i] for run in ours], [run[i] for run in naive]
        rows.append(
            Row(
                backend="route53",
                scenario=scenario,
                changes=mine[0][1],
                seconds=statistics.median(s for s, *_ in mine),
                calls=mine[0][2],
                change_calls=mine[0][3],
                naive_seconds=statistics.median(s for s, *_ in base),
                naive_calls=base[0][2],
                naive_change_calls=base[0][3],
            )
        )
    return rows


BACKENDS: dict[str, Callable[[int, int, float], list[Row]]] = {"route53": bench_route53}


def markdown(rows: list[Row], mirrors: int, repeat: int) -> str:
    lines = [
        f"{mirrors} mirrors, median of {repeat} runs; calls = every API call of the cycle "
        "(change calls in brackets)",
        "",
        "| backend | scenario | record sets changed | ours | ours: calls | naive | "
        "naive: calls | naive / ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.scenario} | {r.changes} | {r.seconds:.3f} s | "
            f"{r.calls} ({r.change_calls}) | {r.naive_seconds:.3f} s | "
            f"{r.naive_calls} ({r.naive_change_calls}) | {r.ratio:.1f}x |"
        )
    return "\n".join(lines)


def _timed_out(signum: int, frame: Any) -> None:
    raise TimeoutError("the benchmark ran past --timeout")


@click.command()
@click.option("--mirrors", default=1000, show_default=True, help="Fleet size.")
@click.option("--repeat", default=5, show_default=True, help="Runs per figure (median).")
@click.option(
    "--change-share",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.01, 1.0),
    help="Share of mirrors that change state in the third cycle.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    type=click.Choice(sorted(BACKENDS)),
    help="Backends to run (default: all).",
)
@click.option("--timeout", default=1800, show_default=True, help="Seconds for the whole run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def main(
    mirrors: int,
    repeat: int,
    change_share: float,
    backends: tuple[str, ...],
    timeout: int,
    as_json: bool,
) -> None:
    """Time full DNS publish cycles for a large fleet against a naive baseline."""
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(timeout)
    rows = [
        row
        for name in backends or sorted(BACKENDS)
        for row in BACKENDS[name](mirrors, repeat, change_share)
    ]
    signal.alarm(0)
    if as_json:
        rounded = [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(r).items()}
            | {"ratio": round(r.ratio, 2), "mirrors": mirrors, "repeat": repeat}
            for r in rows
        ]
        click.echo(json.dumps(rounded, indent=2))
    else:
        click.echo(markdown(rows, mirrors, repeat))


if __name__ == "__main__":
    main()
