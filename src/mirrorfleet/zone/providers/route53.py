"""Zone updates in an Amazon Route 53 hosted zone.

Route 53 has no prerequisites like RFC 2136, but it has two primitives that are just
as strict: a CREATE fails if the record set exists, and a DELETE fails unless it
names the live record set exactly (TTL and every value). Every change batch
therefore opens with a DELETE of our exact `_owner` marker and a CREATE of the same
record (or, on the first zone update, a CREATE of the marker): Route 53 applies a batch
all or nothing, so each batch is atomic and conditional on our marker, as one RFC
2136 update is.

An update is a DELETE of the exact live record set followed by a CREATE of the new
one in the same batch, not an UPSERT: the DELETE makes each change conditional on
the values the plan was made from (a concurrent writer makes Route 53 refuse the
batch instead of being overwritten), and it costs the same against the batch limits
(old + new values, where an UPSERT counts the new ones twice).

A plan goes out in as few ChangeResourceRecordSets calls as Route 53's limits
allow: 1,000 ResourceRecord elements and 32,000 characters of values per batch.
What Route 53 would refuse (a CREATE of a live name and type, a DELETE that does not
match, two changes to one record set in a batch) is refused here before anything
is sent, so a plan never half-applies for a reason we could have seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
import dns.exception
import dns.name
import dns.rdata
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mirrorfleet.config import DnsConfig
from mirrorfleet.errors import UserError
from mirrorfleet.zone.plan import Key, Plan, owned
from mirrorfleet.zone.providers.base import Provider
from mirrorfleet.zone.records import OWNER, RecordSet

MAX_RECORDS = 1000  # ResourceRecord elements per ChangeBatch; an UPSERT counts twice
MAX_CHARS = 32000  # characters in all Value elements per ChangeBatch; UPSERT twice
PAGE_SIZE = 300  # ListResourceRecordSets' largest page

Change = dict[str, Any]  # one boto3 Change: {"Action": ..., "ResourceRecordSet": {...}}
Record = dict[str, Any]  # one boto3 ResourceRecordSet
_ESCAPE = re.compile(r"\\(\d{3}|.)", re.DOTALL)


# --- names and values: Route 53's text <-> dnspython's presentation form ---------


def _convert_escapes(text: str, from_base: int, to_format: str) -> str:
    """Route 53 writes `\\ddd` escapes in octal, RFC 1035 (and dnspython) in decimal."""

    def convert(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) != 3:
            return match.group(0)  # \" or \\: the same in both
        try:
            return "\\" + format(int(code, from_base), to_format)
        except ValueError:  # not octal: leave it for the parser to judge
            return match.group(0)

    return _ESCAPE.sub(convert, text)


def from_route53_text(text: str) -> str:
    return _convert_escapes(text, 8, "03d")


def to_route53_text(text: str) -> str:
    return _convert_escapes(text, 10, "03o")


def relative_name(name: str, origin: dns.name.Name) -> str:
    """A Route 53 name ("\\052.x.zone." or "x.zone") as rfc2136 gives it: "*.x", "@"."""
    try:
        absolute = dns.name.from_text(from_route53_text(name), origin=dns.name.root)
    except (dns.exception.DNSException, ValueError):
        return name  # never crash on a foreign name; it simply matches nothing we own
    if absolute.is_subdomain(origin):
        return absolute.relativize(origin).to_text().lower()
    return absolute.to_text().lower()


def presentation(rdtype: str, value: str) -> str:
    """The value as dnspython prints it, so live and desired compare as equals.

    Names in values stay absolute (desired SRV targets are absolute too). A value
    dnspython cannot parse is kept as Route 53 gave it: foreign data never crashes us.
    """
    try:
        rdata = dns.rdata.from_text(
            "IN", rdtype, from_route53_text(value), origin=dns.name.root, relativize=False
        )
    except (dns.exception.DNSException, ValueError):
        return value
    return rdata.to_text()


def rrset_of(record: Record, origin: dns.name.Name) -> RecordSet:
    """One Route 53 record set as an RecordSet; alias and routing records are shown, not parsed."""
    name, rdtype = relative_name(record["Name"], origin), record["Type"]
    if "AliasTarget" in record:
        return RecordSet(name, rdtype, 0, (f"ALIAS {record['AliasTarget'].get('DNSName', '')}",))
    values = tuple(
        sorted(presentation(rdtype, r["Value"]) for r in record.get("ResourceRecords", []))
    )
    return RecordSet(name, rdtype, int(record.get("TTL", 0)), values)


def record_of(rrset: RecordSet, origin: dns.name.Name) -> Record:
    """The Route 53 record set for one of our RRsets (values in our sorted order)."""
    name = dns.name.from_text(rrset.name, origin=origin).to_text()
    return {
        "Name": to_route53_text(name),
        "Type": rrset.rdtype,
        "TTL": rrset.ttl,
        "ResourceRecords": [{"Value": to_route53_text(v)} for v in rrset.values],
    }


def _matches(record: Record, rrset: RecordSet, origin: dns.name.Name) -> bool:
    live = rrset_of(record, origin)
    return (live.ttl, set(live.values)) == (rrset.ttl, set(rrset.values))


# --- change batches: pure, so the limits and the checks are unit-tested ---------


def change(action: str, record: Record) -> Change:
    return {"Action": action, "ResourceRecordSet": record}


def cost(item: Change) -> tuple[int, int]:
    """(ResourceRecord elements, characters of values) as Route 53 counts them."""
    values = [r["Value"] for r in item["ResourceRecordSet"].get("ResourceRecords", [])]
    weight = 2 if item["Action"] == "UPSERT" else 1
    return weight * len(values), weight * sum(len(v) for v in values)


def fits(
    batch: Iterable[Change], max_records: int = MAX_RECORDS, max_chars: int = MAX_CHARS
) -> bool:
    costs = [cost(c) for c in batch]
    return sum(r for r, _ in costs) <= max_records and sum(c for _, c in costs) <= max_chars


def pack(
    first: Sequence[Change],
    rest: Sequence[Change],
    units: Sequence[Sequence[Change]],
    max_records: int = MAX_RECORDS,
    max_chars: int = MAX_CHARS,
) -> list[list[Change]]:
    """Fill batches in order; each opens with its ownership condition (`first` for the
    first batch, `rest` after). A unit (an update's DELETE and CREATE) never splits.

    Greedy filling is optimal here: the order is fixed, so a batch that takes every
    unit that still fits leaves the fewest for the batches after it.
    """
    batches: list[list[Change]] = []
    current = list(first)
    for unit in units:
        if not fits([*current, *unit], max_records, max_chars):
            batches.append(current)
            current = list(rest)
            if not fits([*current, *unit], max_records, max_chars):
                name = unit[0]["ResourceRecordSet"]["Name"]
                raise UserError(
                    f"the change to {name} does not fit one Route 53 batch "
                    f"({max_records} records, {max_chars} characters of values)"
                )
        current += unit
    batches.append(current)
    return batches


def _rank(item: Sequence[Change]) -> tuple[int, str]:
    """Across several batches: meta and head first, then SRV, then deletes of SRV, then
    of the rest. A mirror's meta exists before an SRV set names it, and outlives it."""
    record = item[-1]["ResourceRecordSet"]
    srv = record["Type"] == "SRV"
    if item[-1]["Action"] == "DELETE":
        return (2 if srv else 3), record["Name"]
    return (1 if srv else 0), record["Name"]


def _live_record(
    rrset: RecordSet, live: Mapping[Key, Record], origin: dns.name.Name, what: str
) -> Record:
    record = live.get((rrset.name, rrset.rdtype))
    if record is None:
        raise UserError(
            f"cannot {what} {rrset.name} {rrset.rdtype}: it is not in the zone any more "
            "(someone else changed it; run the cycle again)"
        )
    if not _matches(record, rrset, origin):
        raise UserError(
            f"cannot {what} {rrset.name} {rrset.rdtype}: the plan's TTL and values do not match "
            "the live record exactly, so Route 53 would refuse the DELETE"
        )
    return record


def ownership(
    plan: Plan,
    owner: RecordSet,
    owner_is_live: bool,
    live: Mapping[Key, Record],
    origin: dns.name.Name,
) -> tuple[list[Change], list[Change], Key | None]:
    """The condition opening the first batch and the one opening every later batch,
    and which change of the plan the first condition already carries."""
    key: Key = (owner.name, owner.rdtype)
    if any((r.name, r.rdtype) == key for r in plan.deletes):
        raise UserError(f"the plan deletes the {OWNER} marker; refusing to give up the zone")
    marker = live.get(key)
    update = next((d for old, d in plan.updates if (old.name, old.rdtype) == key), None)
    if owner_is_live:
        if marker is None or set(rrset_of(marker, origin).values) != set(owner.values):
            raise UserError(
                f"the zone's {OWNER} marker is not ours ({' '.join(owner.values)}): "
                "another fleet publishes here"
            )
        after = record_of(update, origin) if update else marker
        return (
            [change("DELETE", marker), change("CREATE", after)],
            _same(after),
            (key if update else None),
        )
    if marker is not None:
        raise UserError(
            f"the zone already has a {OWNER} marker ({' '.join(rrset_of(marker, origin).values)}): "
            "another fleet owns these names"
        )
    create = next((r for r in plan.creates if (r.name, r.rdtype) == key), owner)
    after = record_of(create, origin)
    return [change("CREATE", after)], _same(after), key


def _same(record: Record) -> list[Change]:
    return [change("DELETE", record), change("CREATE", record)]


def units_of(
    plan: Plan, live: Mapping[Key, Record], origin: dns.name.Name, skip: Key | None = None
) -> list[list[Change]]:
    """The plan's changes, each update a DELETE+CREATE pair, in the order of _rank."""
    units: list[list[Change]] = []
    for rrset in plan.creates:
        if (rrset.name, rrset.rdtype) != skip:
            units.append([change("CREATE", record_of(rrset, origin))])
    for old, new in plan.updates:
        if (old.name, old.rdtype) != skip:
            gone = _live_record(old, live, origin, "update")
            units.append([change("DELETE", gone), change("CREATE", record_of(new, origin))])
    for rrset in plan.deletes:
        units.append([change("DELETE", _live_record(rrset, live, origin, "delete"))])
    return sorted(units, key=_rank)


def check(
    batches: Sequence[Sequence[Change]], live: Mapping[Key, Record], origin: dns.name.Name
) -> None:
    """Refuse, before anything is sent, what Route 53 would refuse (moto accepts some)."""
    state = dict(live)
    for number, batch in enumerate(batches, 1):
        actions: dict[Key, list[str]] = {}
        for item in batch:
            record = item["ResourceRecordSet"]
            key = (relative_name(record["Name"], origin), record["Type"])
            if not owned(*key):
                raise UserError(
                    f"refusing to change {key[0]} {key[1]}: mirrorfleet does not own it"
                )
            actions.setdefault(key, []).append(item["Action"])
        for key, seen in actions.items():
            if seen not in (["CREATE"], ["DELETE"], ["UPSERT"], ["DELETE", "CREATE"]):
                raise UserError(
                    f"batch {number} changes {key[0]} {key[1]} more than once "
                    f"({', '.join(seen)}); Route 53 would refuse it"
                )
        for item in batch:
            _simulate(state, item, origin)


def _simulate(state: dict[Key, Record], item: Change, origin: dns.name.Name) -> None:
    """One change against the zone as the batches so far leave it."""
    record = item["ResourceRecordSet"]
    key = (relative_name(record["Name"], origin), record["Type"])
    name, present = f"{key[0]} {key[1]}", state.get(key)
    if item["Action"] == "CREATE":
        if present is not None:
            raise UserError(
                f"cannot CREATE {name}: it exists in the zone; Route 53 would refuse it"
            )
        state[key] = record
    elif item["Action"] == "DELETE":
        if present is None or not _matches(present, rrset_of(record, origin), origin):
            raise UserError(
                f"cannot DELETE {name}: it does not match the live record exactly; "
                "Route 53 would refuse it"
            )
        del state[key]
    else:
        state[key] = record


def change_batches(
    plan: Plan,
    owner: RecordSet,
    owner_is_live: bool,
    live: Mapping[Key, Record],
    zone: str,
    max_records: int = MAX_RECORDS,
    max_chars: int = MAX_CHARS,
) -> list[list[Change]]:
    """The ChangeBatches for a plan: fewest within the limits, each conditional on our marker."""
    origin = dns.name.from_text(zone)
    first, rest, carried = ownership(plan, owner, owner_is_live, live, origin)
    units = units_of(plan, live, origin, skip=carried)
    batches = pack(first, rest, units, max_records, max_chars)
    check(batches, live, origin)
    return batches


# --- the provider ----------------------------------------------------------------


@dataclass
class Route53Provider(Provider):
    """A hosted zone as a Provider. The boto3 client is made on first use, so
    building a target sends nothing and needs no credentials."""

    zone: str  # "mirrors.test."
    hosted_zone_id: str
    region: str = "us-east-1"
    endpoint_url: str = ""  # empty: AWS
    max_attempts: int = 5  # adaptive mode: retries with client-side rate limiting
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    insync_delay: float = 5  # seconds between GetChange polls
    insync_attempts: int = 60  # bounds the wait: Route 53 says changes propagate within 60 s
    max_records: int = MAX_RECORDS  # per batch; lower only to test several batches
    max_chars: int = MAX_CHARS
    calls: dict[str, int] = field(default_factory=dict)  # API calls by operation name
    last_read: dict[Key, Record] | None = field(default=None, repr=False)

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)

    @cached_property
    def client(self) -> Any:
        config = Config(
            retries={"mode": "adaptive", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )
        client = boto3.session.Session().client(
            "route53",
            region_name=self.region,
            endpoint_url=self.endpoint_url or None,
            config=config,
        )
        client.meta.events.register("before-call.route53", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] = self.calls.get(model.name, 0) + 1

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"Route 53 hosted zone {self.hosted_zone_id} ({self.zone}){where}"

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        """One boto call; any failure becomes one line naming the zone and what failed."""
        try:
            return function()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
        except BotoCoreError as exc:
            detail = str(exc)
        detail = " ".join(detail.split())
        raise UserError(f"Route 53 {what} for {self.zone} ({self.hosted_zone_id}) failed: {detail}")

    def read_live(self) -> list[RecordSet]:
        """Every record set in the zone, names relative to it, values as dnspython prints them."""
        origin = self.origin
        return sorted(
            (rrset_of(r, origin) for r in self._read_records()), key=lambda r: (r.name, r.rdtype)
        )

    def _read_records(self) -> list[Record]:
        """ListResourceRecordSets, every page; kept in last_read for apply()'s checks."""
        pages = self.client.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=self.hosted_zone_id, PaginationConfig={"PageSize": PAGE_SIZE}
        )
        records = self._call(
            "ListResourceRecordSets", lambda: [r for p in pages for r in p["ResourceRecordSets"]]
        )
        self._check_zone(records)
        origin = self.origin
        self.last_read = {(relative_name(r["Name"], origin), r["Type"]): r for r in records}
        return records

    def _check_zone(self, records: Sequence[Record]) -> None:
        """Refuse a hosted zone id that names another zone: its SOA sits at its apex."""
        apex = [r["Name"] for r in records if r["Type"] == "SOA"]
        if apex and dns.name.from_text(from_route53_text(apex[0])) != self.origin:
            raise UserError(
                f"Route 53 hosted zone {self.hosted_zone_id} is {apex[0]}, not {self.zone}: "
                "check hosted_zone_id"
            )

    def apply(self, plan: Plan, owner: RecordSet, owner_is_live: bool) -> int:
        """Send the plan in as few conditional batches as fit; wait until INSYNC.

        Checked against the records the last read_live() saw (the cycle's own read),
        so nothing is sent that Route 53 would refuse for a reason visible there.
        """
        if plan.empty:
            return 0
        if self.last_read is None:
            self._read_records()
        live = self.last_read or {}
        batches = change_batches(
            plan, owner, owner_is_live, live, self.zone, self.max_records, self.max_chars
        )
        self.last_read = None  # stale from the first call on
        ids = [self._send(batch, number, len(batches)) for number, batch in enumerate(batches, 1)]
        for change_id in ids:
            self._wait(change_id)
        return len(batches)

    def _send(self, batch: list[Change], number: int, total: int) -> str:
        try:
            response = self._call(
                f"ChangeResourceRecordSets (batch {number} of {total})",
                lambda: self.client.change_resource_record_sets(
                    HostedZoneId=self.hosted_zone_id,
                    ChangeBatch={"Comment": f"mirrorfleet {number}/{total}", "Changes": batch},
                ),
            )
        except UserError as exc:
            raise UserError(f"{exc}{left_behind(str(exc), number, total)}") from None
        return response["ChangeInfo"]["Id"]

    def _wait(self, change_id: str) -> None:
        waiter = self.client.get_waiter("resource_record_sets_changed")
        self._call(
            f"wait for change {change_id} to be INSYNC",
            lambda: waiter.wait(
                Id=change_id,
                WaiterConfig={"Delay": self.insync_delay, "MaxAttempts": self.insync_attempts},
            ),
        )


def left_behind(error: str, number: int, total: int) -> str:
    """What a failed batch leaves in the zone, for the error message. Route 53 applies a
    batch all or nothing, and a refused batch is one whose conditions (our marker, the
    exact values it deletes) no longer hold: the zone changed after the plan read it."""
    notes = []
    if "InvalidChangeBatch" in error:
        notes.append(
            f"batch {number} applied nothing: the zone changed after it was read "
            "(another writer?), so the plan is stale"
        )
    if number > 1:
        notes.append(f"{number - 1} of {total} batches were applied")
    return "; " + "; ".join([*notes, "run again to finish"]) if notes else ""


def from_config(config: DnsConfig) -> Route53Provider:
    return Route53Provider(
        zone=config.zone,
        hosted_zone_id=config.hosted_zone_id,
        region=config.region,
        endpoint_url=config.endpoint_url,
    )
