"""A zone update: desired -> live -> plan -> (checked) apply, through one provider.

"Publish" is the origin's new serial (origin/publish.py); writing the fleet's
records into DNS is a zone update, and this is the one place that does it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mirrorfleet.config import DnsConfig
from mirrorfleet.zone.plan import Plan, check_owner, check_safe, fleet_records, plan, settle_checks
from mirrorfleet.zone.providers import Provider, provider_for
from mirrorfleet.zone.records import OWNER, RecordSet


@dataclass
class ZoneUpdate:
    """What one zone update planned, and whether (and in how many messages) it applied."""

    plan: Plan
    messages: int
    applied: bool


def update_zone(
    config: DnsConfig,
    state: Mapping[str, Any],
    apply: bool,
    force: bool = False,
    provider: Provider | None = None,
    live: Sequence[RecordSet] | None = None,
    withdrawals_ok: bool = False,
) -> ZoneUpdate:
    """Desired -> live -> plan -> (checked) apply, in as few messages as the provider allows.

    live: the zone's records when the caller has just read them.
    """
    desired = fleet_records(state, config)
    provider = provider or provider_for(config)
    live = provider.read_live() if live is None else live
    owner = next(r for r in desired if r.name == OWNER)
    owner_live = check_owner(owner, live)
    result = plan(settle_checks(desired, live), live)
    if not apply:
        return ZoneUpdate(result, 0, False)
    check_safe(result, config.max_withdraw_share / 100, force, withdrawals_ok)
    return ZoneUpdate(result, provider.apply(result, owner, owner_live), True)
