"""Plan the fleet's DNS records, octoDNS-style: what a zone update would change.

A plan is the difference between the records mirrorfleet wants and the records the
zone holds now, restricted to names mirrorfleet owns. Anything else in the zone is
never read into the plan, so it is never touched. A plan that would withdraw more
than a set share of the listed mirrors at once is refused unless forced (routine
serial bumps rewrite every record and are always fine); an empty plan sends
nothing.

This module imports no provider: a plan is computed from record sets alone, and
zone/update.py hands it to whichever provider dns.toml names.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mirrorfleet.config import DnsConfig
from mirrorfleet.errors import UserError
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import stamp_from_fields
from mirrorfleet.zone.records import (
    HEAD,
    META,
    OWNER,
    SERVICE,
    MirrorRecord,
    RecordSet,
    desired_records,
    head_rrset,
)

MAX_CHANGE_SHARE = 0.5  # refuse plans that withdraw more than half of the listed mirrors


def owned(name: str, rdtype: str) -> bool:
    """Records mirrorfleet writes, exactly as update_policy() grants them: SRV at the
    service names, TXT at head, owner and meta names. A signed zone also holds
    RRSIG/NSEC at those names; they belong to the server's signer."""
    if name == SERVICE or name.startswith(f"{SERVICE}."):
        return rdtype == "SRV"
    return rdtype == "TXT" and (name in (HEAD, OWNER) or name.endswith(f".{META}"))


Key = tuple[str, str]  # (name relative to the zone, type)


@dataclass
class Plan:
    creates: list[RecordSet] = field(default_factory=list)
    updates: list[tuple[RecordSet, RecordSet]] = field(default_factory=list)  # (live, desired)
    deletes: list[RecordSet] = field(default_factory=list)
    mirrors_live: int = 0  # mirrors the zone lists now (SRV targets or meta records)
    withdrawn: list[str] = field(default_factory=list)  # SRV targets the plan drops

    @property
    def empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)

    @property
    def changes(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    def summary(self) -> dict[str, object]:
        return {
            "create": [f"{r.name} {r.rdtype}" for r in self.creates],
            "update": [f"{d.name} {d.rdtype}" for _, d in self.updates],
            "delete": [f"{r.name} {r.rdtype}" for r in self.deletes],
            "mirrors_live": self.mirrors_live,
            "withdrawn": self.withdrawn,
        }

    @property
    def dropped(self) -> int:
        """Mirrors the plan deletes from the zone altogether (their meta records)."""
        return sum(1 for r in self.deletes if r.name.endswith(f".{META}"))

    @property
    def removed(self) -> int:
        """Mirrors the plan takes out of the zone, by SRV target or meta record."""
        return max(len(self.withdrawn), self.dropped)


def plan(desired: Sequence[RecordSet], live: Iterable[RecordSet]) -> Plan:
    wanted = _index(desired, "desired")
    current = _index((r for r in live if owned(r.name, r.rdtype)), "live")
    live_targets = _srv_targets(current.values())
    live_metas = [r for r in current.values() if r.name.endswith(f".{META}")]
    result = Plan(
        mirrors_live=max(len(live_targets), len(live_metas)),
        withdrawn=sorted(live_targets - _srv_targets(wanted.values())),
    )
    for key, rrset in sorted(wanted.items()):
        have = current.get(key)
        if have is None:
            result.creates.append(rrset)
        elif (set(have.values), have.ttl) != (set(rrset.values), rrset.ttl):
            result.updates.append((have, rrset))
    result.deletes = [r for key, r in sorted(current.items()) if key not in wanted]
    return result


CHK_REFRESH = 300  # seconds a meta record's chk= may lag before it alone is rewritten
CHK_RE = re.compile(r'"chk=(\d+)"')


def settle_checks(
    desired: Sequence[RecordSet], live: Iterable[RecordSet], refresh: int = CHK_REFRESH
) -> list[RecordSet]:
    """Keep a live meta record whose only difference is a recent chk= time.

    Every probe moves chk; rewriting every record each cycle would make each plan
    touch the whole fleet. chk then means "checked within `refresh` seconds".
    """
    current = {(r.name, r.rdtype): r for r in live}
    settled = []
    for rrset in desired:
        have = current.get((rrset.name, rrset.rdtype))
        if have is not None and rrset.name.endswith(f".{META}") and have.ttl == rrset.ttl:
            new, old = _chk(rrset), _chk(have)
            same = CHK_RE.sub("", rrset.values[0]) == CHK_RE.sub("", have.values[0])
            if same and new is not None and old is not None and 0 <= new - old < refresh:
                rrset = have
        settled.append(rrset)
    return settled


def _chk(rrset: RecordSet) -> int | None:
    match = CHK_RE.search(rrset.values[0]) if len(rrset.values) == 1 else None
    return int(match.group(1)) if match else None


def check_safe(
    result: Plan,
    max_share: float = MAX_CHANGE_SHARE,
    force: bool = False,
    withdrawals_ok: bool = False,
) -> None:
    """Refuse a plan that takes too much of a listed fleet out of DNS at once.

    withdrawals_ok: the monitor withdraws mirrors it has seen fail (its fail-static
    rule guards those), so only mirrors dropped from the zone altogether count.
    """
    removed = result.dropped if withdrawals_ok else result.removed
    if force or result.mirrors_live == 0:
        return  # a first zone update creates everything, by design
    if removed > max_share * result.mirrors_live:
        raise UserError(
            f"plan withdraws {removed} of {result.mirrors_live} listed mirrors "
            f"(more than {max_share:.0%}); check it with `mirrorfleet dns plan`, "
            "then apply with --force if it is right"
        )


def _srv_targets(rrsets: Iterable[RecordSet]) -> set[str]:
    return {value.split()[-1] for r in rrsets if r.rdtype == "SRV" for value in r.values}


def _index(rrsets: Iterable[RecordSet], what: str) -> dict[Key, RecordSet]:
    index: dict[Key, RecordSet] = {}
    for rrset in rrsets:
        key = (rrset.name, rrset.rdtype)
        if key in index:
            raise UserError(f"{what} records name {rrset.name} {rrset.rdtype} twice")
        index[key] = rrset
    return index


def fleet_records(state: Mapping[str, Any], config: DnsConfig) -> list[RecordSet]:
    """Desired records from a fleet state: the origin's signed stamp and the mirrors."""
    try:
        envelope = state["stamp"]
        signed = envelope["signed"]
        stamp = stamp_from_fields(signed)
        signature = base64.b64decode(envelope["sig"], validate=True)
        mirrors = [MirrorRecord(**m) for m in state["mirrors"]]
    except (KeyError, TypeError, ValueError, BadSignature) as exc:
        raise UserError(f"fleet state is malformed: {exc!r}") from None
    head = head_rrset(stamp, signature, str(envelope["key"]), config.ttl)
    return desired_records(config.zone, head, mirrors, config.owner, config.ttl)


def check_owner(owner: RecordSet, live: Sequence[RecordSet]) -> bool:
    """Whether our marker is live; refuse a zone whose marker names another fleet."""
    marker = next((r for r in live if (r.name, r.rdtype) == (OWNER, "TXT")), None)
    if marker is None:
        return False
    if set(marker.values) != set(owner.values):
        raise UserError(
            f"the zone's {OWNER} marker is {' '.join(marker.values)}, not ours "
            f"({' '.join(owner.values)}): another fleet publishes here"
        )
    return True
