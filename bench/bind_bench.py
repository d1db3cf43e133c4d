"""Publishing to BIND: a 1,000-mirror fleet through the real publisher, on loopback.

    .venv/bin/python bench/bind_bench.py [--mirrors 1000] [--repeat 5] [--updates 20] [--json]

A BIND primary and secondary (named.conf from the dns role's own template, DNSSEC
signing on and off) run on 127.0.0.1. Measured in the same run:
- full cycle (AXFR -> plan -> one conditional update) for the first publish, a
  no-change cycle and a cycle where 10 % of the mirrors change state;
- baseline: the same 10 % change sent naively, one update message per record set
  (what a loop over `nsupdate` does), for the ratio;
- primary -> secondary propagation (NOTIFY + IXFR): from the update's answer to the
  secondary serving the new SOA serial, p50/p95 over --updates changes;
- the main SRV answer's size over UDP with EDNS 1,232 (with and without DNSSEC).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.update

from mirrorfleet.testing import demo_fleet
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import records
from mirrorfleet.zone.plan import plan
from mirrorfleet.zone.records import MirrorRecord, RecordSet

ZONE = "mirrors.bench."
REGION_SIZE = 100  # BIND's max-records-per-type: a region SRV set holds at most 100


def fleet(n: int, lagging: int = 0) -> list[MirrorRecord]:
    return demo_fleet.mirrors(n, regions=n // REGION_SIZE or 1, lagging=range(lagging), serial=7)


def desired(mirrors: list[MirrorRecord], serial: int = 7) -> list[RecordSet]:
    head = records.head_rrset(
        Stamp(serial=serial, ts=1_700_000_000, origin="origin"), b"\x01" * 64, "0" * 16, ttl=60
    )
    return records.desired_records(ZONE, head, mirrors, owner="bench")


def cycle(bind: LoopbackBind, want: list[RecordSet]) -> tuple[float, int, int, int]:
    """One publisher cycle; (seconds, messages, record sets changed, zone serial bumps)."""
    target = bind.provider(timeout=30)
    before = bind.primary.soa_serial(ZONE) or 0
    start = time.perf_counter()
    live = target.read_live()
    result = plan(want, live)
    owner = next(r for r in want if r.name == records.OWNER)
    messages = target.apply(result, owner, any(r.name == records.OWNER for r in live))
    elapsed = time.perf_counter() - start
    return elapsed, messages, result.changes, (bind.primary.soa_serial(ZONE) or 0) - before


def naive(bind: LoopbackBind, want: list[RecordSet]) -> tuple[float, int, int]:
    """The baseline: one signed update message per changed record set.
    Returns (seconds, messages, zone serial bumps, i.e. IXFR deltas for secondaries)."""
    target = bind.provider(timeout=30)
    before = bind.primary.soa_serial(ZONE) or 0
    start = time.perf_counter()
    result = plan(want, target.read_live())
    sent = 0
    for _, rrset in result.updates:
        update = dns.update.UpdateMessage(
            target.origin, keyring=target.keyring, keyname=target.key_name
        )
        update.replace(rrset.name, rrset.ttl, rrset.rdtype, *rrset.values)
        response = dns.query.tcp(update, "127.0.0.1", port=target.port, timeout=30)
        assert response.rcode() == dns.rcode.NOERROR
        sent += 1
    elapsed = time.perf_counter() - start
    return elapsed, sent, (bind.primary.soa_serial(ZONE) or 0) - before


def propagation(bind: LoopbackBind, mirrors: list[MirrorRecord], updates: int) -> list[float]:
    primary, secondary = bind.servers
    samples = []
    for k in range(updates):
        flipped = [
            replace(m, state="lagging" if m.label == mirrors[k].label else m.state) for m in mirrors
        ]
        cycle(bind, desired(flipped, serial=100 + k))
        serial, start = primary.soa_serial(ZONE), time.perf_counter()
        deadline = start + 10
        while secondary.soa_serial(ZONE) != serial:
            if time.perf_counter() > deadline:
                raise RuntimeError("the secondary did not follow within 10 s")
            time.sleep(0.002)
        samples.append(time.perf_counter() - start)
    return samples


def srv_answer_size(bind: LoopbackBind, dnssec: bool) -> tuple[int, bool]:
    query = dns.message.make_query(
        f"{records.SERVICE}.{ZONE}", "SRV", use_edns=0, payload=1232, want_dnssec=dnssec
    )
    wire = dns.query.udp(query, "127.0.0.1", port=bind.primary.port, timeout=5)
    return len(wire.to_wire()), bool(wire.flags & dns.flags.TC)


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def run(n: int, repeat: int, updates: int, dnssec: bool) -> dict[str, Any]:
    regions = tuple(sorted({m.region for m in fleet(n) if m.region}))
    with tempfile.TemporaryDirectory(prefix="bind-bench-") as work:
        bind = LoopbackBind(Path(work), ZONE, secondary=True, regions=regions, dnssec=dnssec)
        with bind:
            first = cycle(bind, desired(fleet(n)))
            same = [cycle(bind, desired(fleet(n))) for _ in range(repeat)]
            tenth = n // 10
            # alternate between two 10 % states so every cycle really changes something
            changed = [
                cycle(bind, desired(fleet(n, lagging=tenth if i % 2 == 0 else 0)))
                for i in range(repeat)
            ]
            baseline = [
                naive(bind, desired(fleet(n, lagging=tenth if i % 2 == 0 else 0)))
                for i in range(1, repeat + 1)
            ]
            size, truncated = srv_answer_size(bind, dnssec)
            lags = sorted(propagation(bind, fleet(n), updates))
    ours = statistics.median(c[0] for c in changed)
    theirs = statistics.median(b[0] for b in baseline)
    return {
        "mirrors": n,
        "dnssec": dnssec,
        "first_publish_s": round(first[0], 3),
        "first_publish_messages": first[1],
        "first_publish_record_sets": first[2],
        "no_change_s": round(statistics.median(c[0] for c in same), 3),
        "no_change_messages": max(c[1] for c in same),
        "ten_percent_s": round(ours, 3),
        "ten_percent_messages": max(c[1] for c in changed),
        "ten_percent_record_sets": max(c[2] for c in changed),
        "ten_percent_serial_bumps": max(c[3] for c in changed),
        "naive_ten_percent_s": round(theirs, 3),
        "naive_messages": max(b[1] for b in baseline),
        "naive_serial_bumps": max(b[2] for b in baseline),
        "naive_over_ours": round(theirs / ours, 1),
        "secondary_p50_s": round(statistics.median(lags), 4),
        "secondary_p95_s": round(lags[int(0.95 * (len(lags) - 1))], 4),
        "main_srv_answer_bytes": size,
        "main_srv_truncated": truncated,
    }


@click.command()
@click.option("--mirrors", default=1000, show_default=True)
@click.option("--repeat", default=5, show_default=True, help="Cycles per measurement.")
@click.option("--updates", default=20, show_default=True, help="Propagation samples.")
@click.option("--json", "as_json", is_flag=True)
def main(mirrors: int, repeat: int, updates: int, as_json: bool) -> None:
    results = [run(mirrors, repeat, updates, dnssec) for dnssec in (False, True)]
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    keys = list(results[0])
    click.echo("| measure | " + " | ".join(f"dnssec={r['dnssec']}" for r in results) + " |")
    click.echo("|---|" + "---:|" * len(results))
    for key in keys[2:]:
        click.echo(f"| {key} | " + " | ".join(str(r[key]) for r in results) + " |")


if __name__ == "__main__":
    main()
