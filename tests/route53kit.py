"""Route 53 on loopback, for test_route53.py and test_route53_races.py: a moto server
(loopback_route53 makes it refuse what Route 53 refuses), and a fleet's state turned
into a zone update against it, the way the monitor's round does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.config import DnsConfig
from mirrorfleet.testing import demo_fleet
from mirrorfleet.testing.loopback_route53 import dummy_aws_env, moto_route53
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import update
from mirrorfleet.zone.providers import route53

ZONE = "mirrors.test."
FLEET_OWNER = "fleet-test"
SIGNING_KEY = Ed25519PrivateKey.generate()


def moto_server(tmp_path_factory: pytest.TempPathFactory, pending_polls: int = 0) -> Iterator[str]:
    """A module's moto, with dummy AWS credentials around it: yields its URL."""
    if "gevent.monkey" in sys.modules and sys.modules["gevent.monkey"].is_module_patched("ssl"):
        pytest.fail("an earlier test imported pyinfra_cli in-process: ssl is gevent-patched")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with dummy_aws_env():
        try:
            with moto_route53(log, pending_polls=pending_polls) as url:
                yield url
        except RuntimeError as exc:
            pytest.fail(str(exc))


def dns_config(target: route53.Route53Provider, owner: str = FLEET_OWNER) -> DnsConfig:
    return DnsConfig(
        zone=ZONE,
        provider="route53",
        owner=owner,
        hosted_zone_id=target.hosted_zone_id,
        endpoint_url=target.endpoint_url,
    )


def fleet_state(states: dict[str, str], regions: int = 0) -> dict:
    """The monitor's view: each label in its state at serial 9, under a signed stamp."""
    mirrors = [
        demo_fleet.mirror(label, state, serial=9, region=f"r{i % regions}" if regions else None)
        for i, (label, state) in enumerate(states.items())
    ]
    stamp = json.loads(
        Stamp(serial=9, ts=1_700_000_900, origin="origin", expires=2**32).sign(SIGNING_KEY)
    )
    return {"stamp": stamp, "mirrors": [asdict(m) for m in mirrors]}


def cycle(
    target: route53.Route53Provider,
    states: dict[str, str],
    apply: bool = True,
    owner: str = FLEET_OWNER,
    regions: int = 0,
) -> update.ZoneUpdate:
    """One round of publication, with the target's record of calls started afresh."""
    target.calls.clear()
    state = fleet_state(states, regions)
    return update.update_zone(dns_config(target, owner), state, apply=apply, provider=target)


def listed(client: Any, zone_id: str) -> dict[tuple[str, str], dict]:
    pages = client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
    return {(r["Name"], r["Type"]): r for page in pages for r in page["ResourceRecordSets"]}
