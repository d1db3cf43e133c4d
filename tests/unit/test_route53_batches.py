"""Route 53 change batches: limits, order, the ownership condition, and the checks
for what Route 53 refuses. Pure: no server."""

from __future__ import annotations

import itertools
import math

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorfleet.config import DnsConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.testing import demo_fleet
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import records
from mirrorfleet.zone.plan import Plan, plan
from mirrorfleet.zone.providers import route53
from mirrorfleet.zone.records import META, OWNER, SERVICE, MirrorRecord, RecordSet

ZONE = "mirrors.test."
ORIGIN = dns.name.from_text(ZONE)


def fleet(labels: range | list[int], lagging: frozenset[int] = frozenset()) -> list[MirrorRecord]:
    return demo_fleet.mirrors(labels, regions=20, lagging=lagging)


def desired(n: int | list[int], lagging: frozenset[int] = frozenset()) -> list[RecordSet]:
    head = records.head_rrset(
        Stamp(5, 1_700_000_000, "origin", expires=2**32), b"\x01" * 64, "0" * 16, 60
    )
    labels = range(n) if isinstance(n, int) else n
    return records.desired_records(ZONE, head, fleet(labels, lagging), "fleet")


def live_of(rrsets: list[RecordSet]) -> dict:
    """The zone as Route 53 lists it after we wrote these record sets."""
    return {(r.name, r.rdtype): route53.record_of(r, ORIGIN) for r in rrsets}


def owner_of(rrsets: list[RecordSet]) -> RecordSet:
    return next(r for r in rrsets if r.name == OWNER)


def keys(batch: list[route53.Change]) -> list[tuple[str, str, str]]:
    return [
        (
            c["Action"],
            route53.relative_name(c["ResourceRecordSet"]["Name"], ORIGIN),
            c["ResourceRecordSet"]["Type"],
        )
        for c in batch
    ]


def txt_change(action: str, values: list[str]) -> route53.Change:
    return route53.change(
        action,
        {
            "Name": "x.mirrors.test.",
            "Type": "TXT",
            "TTL": 60,
            "ResourceRecords": [{"Value": v} for v in values],
        },
    )


@pytest.mark.parametrize(("action", "weight"), [("CREATE", 1), ("DELETE", 1), ("UPSERT", 2)])
def test_cost_counts_records_and_value_characters_and_upsert_twice(
    action: str, weight: int
) -> None:
    assert route53.cost(txt_change(action, ['"abc"', '"de"'])) == (2 * weight, 9 * weight)


@pytest.mark.parametrize(
    ("values", "max_records", "max_chars", "ok"),
    [
        (["x" * 10] * 5, 5, 50, True),
        (["x" * 10] * 6, 5, 1000, False),  # one record too many
        (["x" * 10] * 5, 5, 49, False),  # one character too many
    ],
)
def test_fits_is_inclusive_of_both_limits(
    values: list[str], max_records: int, max_chars: int, ok: bool
) -> None:
    assert route53.fits([txt_change("CREATE", values)], max_records, max_chars) is ok


def test_first_publish_is_one_batch_opening_with_the_owner_create() -> None:
    want = desired(3)
    batches = route53.change_batches(plan(want, []), owner_of(want), False, {}, ZONE)
    assert len(batches) == 1
    assert keys(batches[0])[0] == ("CREATE", OWNER, "TXT")
    assert sorted(keys(batches[0])) == sorted(("CREATE", r.name, r.rdtype) for r in want)


def test_every_batch_is_conditional_on_the_exact_live_marker() -> None:
    before = desired(200)
    live = live_of(before)
    # the marker as Route 53 happens to hold it: same record, other spelling of the value
    marker = dict(live[(OWNER, "TXT")], ResourceRecords=[{"Value": '"txtvers=2"  "owner=fleet"'}])
    live[(OWNER, "TXT")] = marker
    result = plan(desired(200, lagging=frozenset(range(0, 200, 2))), route53_view(live))
    batches = route53.change_batches(result, owner_of(before), True, live, ZONE, max_chars=8000)
    assert len(batches) > 1
    for batch in batches:
        assert batch[:2] == [route53.change("DELETE", marker), route53.change("CREATE", marker)]


def route53_view(live: dict) -> list[RecordSet]:
    return [route53.rrset_of(r, ORIGIN) for r in live.values()]


def test_an_update_deletes_the_live_record_as_listed_then_creates_in_the_same_batch() -> None:
    before = desired(3)
    live = live_of(before)
    meta = (f"m0001.{META}", "TXT")
    srv = (SERVICE, "SRV")
    live[srv] = dict(live[srv], ResourceRecords=list(reversed(live[srv]["ResourceRecords"])))
    result = plan(desired(3, lagging=frozenset({1})), route53_view(live))
    [batch] = route53.change_batches(result, owner_of(before), True, live, ZONE)
    for key in (meta, srv):
        at = keys(batch).index(("DELETE", *key))
        assert batch[at] == route53.change("DELETE", live[key])  # values in Route 53's order
        assert keys(batch)[at + 1] == ("CREATE", *key)


def test_order_meta_first_then_srv_then_srv_deletes_then_meta_deletes() -> None:
    before = desired([0, 1, 2, 3])
    live = live_of(before)
    result = plan(desired([0, 1, 2, 5]), route53_view(live))  # mirror 3 leaves, 5 joins
    [batch] = route53.change_batches(result, owner_of(before), True, live, ZONE)
    assert keys(batch)[2:] == [
        ("CREATE", f"m0005.{META}", "TXT"),
        ("DELETE", SERVICE, "SRV"),
        ("CREATE", SERVICE, "SRV"),
        ("CREATE", f"{SERVICE}.r5", "SRV"),
        ("DELETE", f"{SERVICE}.r3", "SRV"),
        ("DELETE", f"m0003.{META}", "TXT"),
    ]


def test_a_thousand_mirrors_split_into_the_fewest_batches_within_limits() -> None:
    want = desired(1000)
    result = plan(want, [])
    batches = route53.change_batches(result, owner_of(want), False, {}, ZONE)
    sent = [c for batch in batches for c in batch]
    values = sum(route53.cost(c)[1] for c in sent)
    biggest = max(route53.cost(c)[1] for c in sent)
    assert all(route53.fits(batch) for batch in batches)
    # no batch left room for the change that opened the next one
    assert len(batches) > 1
    assert math.ceil(values / route53.MAX_CHARS) <= len(batches)
    assert len(batches) <= math.ceil(values / (route53.MAX_CHARS - biggest))
    creates = [k for batch in batches for k in keys(batch) if k[0] == "CREATE"]
    assert sorted(set(creates)) == sorted(("CREATE", r.name, r.rdtype) for r in want)
    assert len(creates) - len(set(creates)) == len(batches) - 1  # the marker, re-created
    assert keys(batches[0])[0] == ("CREATE", OWNER, "TXT")
    for batch in batches[1:]:
        assert keys(batch)[:2] == [("DELETE", OWNER, "TXT"), ("CREATE", OWNER, "TXT")]


def _refused(case: str) -> tuple[Plan, RecordSet, bool, dict]:
    """A plan Route 53 would refuse (moto accepts some of these), by case."""
    want = desired(2)
    owner, live = owner_of(want), live_of(want)
    head = next(r for r in want if r.name == records.HEAD)
    other = RecordSet(head.name, "TXT", 60, ('"txtvers=2" "serial=6"',))
    plans = {
        "create-exists": (Plan(creates=[other]), True),
        "delete-ttl": (Plan(deletes=[RecordSet(head.name, "TXT", 300, head.values)]), True),
        "delete-values": (Plan(deletes=[other]), True),
        "delete-missing": (
            Plan(deletes=[RecordSet("m9._meta._pkgmirror", "TXT", 60, ("x",))]),
            True,
        ),
        "update-stale": (Plan(updates=[(other, head)]), True),
        "twice-in-batch": (
            Plan(creates=[RecordSet("m9._meta._pkgmirror", "TXT", 60, ('"a"',))] * 2),
            True,
        ),
        "not-ours": (Plan(creates=[RecordSet("www", "A", 60, ("192.0.2.1",))]), True),
        "owner-deleted": (Plan(deletes=[owner]), True),
        "owner-not-ours": (Plan(creates=[other]), True),
        "owner-exists": (Plan(creates=[owner]), False),
    }
    result, owner_is_live = plans[case]
    if case == "owner-not-ours":
        owner = records.owner_rrset("another-fleet", 60)
    return result, owner, owner_is_live, live


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("create-exists", "cannot CREATE _head._pkgmirror TXT: it exists"),
        ("delete-ttl", "do not match the live record exactly"),
        ("delete-values", "do not match the live record exactly"),
        ("delete-missing", "not in the zone any more"),
        ("update-stale", "do not match the live record exactly"),
        ("twice-in-batch", "more than once"),
        ("not-ours", "does not own it"),
        ("owner-deleted", "deletes the _owner._pkgmirror marker"),
        ("owner-not-ours", "marker is not ours"),
        ("owner-exists", "already has a _owner._pkgmirror marker"),
    ],
)
def test_what_route53_would_refuse_is_refused_here(case: str, message: str) -> None:
    result, owner, owner_is_live, live = _refused(case)
    with pytest.raises(MirrorfleetError, match=message):
        route53.change_batches(result, owner, owner_is_live, live, ZONE)


def test_a_change_too_big_for_any_batch_is_refused() -> None:
    condition = [txt_change("CREATE", ['"o"'])]
    with pytest.raises(MirrorfleetError, match="does not fit one Route 53 batch"):
        route53.pack(condition, condition, [[txt_change("CREATE", ["x" * 100])]], 10, 50)


unit_strategy = st.lists(
    st.tuples(
        st.sampled_from(["CREATE", "DELETE", "UPSERT"]),
        st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=2,
).map(lambda unit: [txt_change(action, ["v" * n for n in sizes]) for action, sizes in unit])


@settings(max_examples=300, deadline=None)
@given(
    units=st.lists(unit_strategy, max_size=40),
    max_records=st.integers(min_value=4, max_value=40),
    max_chars=st.integers(min_value=20, max_value=600),
)
def test_packing_invariants(units: list, max_records: int, max_chars: int) -> None:
    first = [txt_change("CREATE", ["o" * 5])]
    rest = [txt_change("DELETE", ["o" * 5]), txt_change("CREATE", ["o" * 5])]
    try:
        batches = route53.pack(first, rest, units, max_records, max_chars)
    except MirrorfleetError:  # only when a unit fits no batch at all
        assert not all(route53.fits([*rest, *u], max_records, max_chars) for u in units)
        return
    # every change lands in exactly one batch, in order, after that batch's condition
    opened = [first] + [rest] * (len(batches) - 1)
    assert [c for b, o in zip(batches, opened, strict=True) for c in b[len(o) :]] == [
        c for u in units for c in u
    ]
    assert all(b[: len(o)] == o for b, o in zip(batches, opened, strict=True))
    assert all(route53.fits(b, max_records, max_chars) for b in batches)
    # fewest batches: no batch could have taken the next batch's first unit
    for before, after in itertools.pairwise(batches):
        unit = next(u for u in units if u[0] is after[len(rest)])
        assert not route53.fits([*before, *unit], max_records, max_chars)


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        ("\\052.x.mirrors.test.", "*.x"),  # Route 53 escapes a wildcard in octal
        ("*.x.mirrors.test.", "*.x"),
        ("mirrors.test.", "@"),
        ("_pkgmirror._tcp.mirrors.test", "_pkgmirror._tcp"),  # no trailing dot
        ("Mirror1._meta._pkgmirror.mirrors.test.", "mirror1._meta._pkgmirror"),
        ("www.other.test.", "www.other.test."),
    ],
)
def test_relative_names_as_rfc2136_gives_them(name: str, relative: str) -> None:
    assert route53.relative_name(name, ORIGIN) == relative


@pytest.mark.parametrize(
    ("rdtype", "value", "shown"),
    [
        ("SRV", "10 100 80 m1.example.net", "10 100 80 m1.example.net."),
        ("SRV", "10 100 80 m1.example.net.", "10 100 80 m1.example.net."),
        ("TXT", '"txtvers=2" "owner=x"', '"txtvers=2" "owner=x"'),
        ("TXT", '"a\\042b"', '"a\\"b"'),  # octal 042 is a double quote
        ("SOA", "{'Value': 'garbled'}", "{'Value': 'garbled'}"),  # kept, never a crash
    ],
)
def test_values_in_dnspython_presentation_form(rdtype: str, value: str, shown: str) -> None:
    assert route53.presentation(rdtype, value) == shown


def test_alias_records_are_returned_not_parsed() -> None:
    alias = {
        "Name": "alias.mirrors.test.",
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": "Z1",
            "DNSName": "www.mirrors.test.",
            "EvaluateTargetHealth": False,
        },
    }
    assert route53.rrset_of(alias, ORIGIN) == RecordSet(
        "alias", "A", 0, ("ALIAS www.mirrors.test.",)
    )


@pytest.mark.parametrize("rrset", desired(2), ids=lambda r: f"{r.name} {r.rdtype}")
def test_our_records_round_trip(rrset: RecordSet) -> None:
    assert route53.rrset_of(route53.record_of(rrset, ORIGIN), ORIGIN) == rrset


def test_target_from_config_sends_nothing_until_used() -> None:
    config = DnsConfig(
        zone=ZONE,
        provider="route53",
        hosted_zone_id="Z123",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:1",
    )
    target = route53.from_config(config)
    assert (target.zone, target.hosted_zone_id, target.region) == (ZONE, "Z123", "eu-west-1")
    assert target.describe() == "Route 53 hosted zone Z123 (mirrors.test.) at http://127.0.0.1:1"
    assert "client" not in vars(target) and target.calls == {}


@pytest.mark.parametrize(
    ("error", "number", "total", "note"),
    [
        ("InvalidChangeBatch: [...]", 1, 1, "; batch 1 applied nothing: the zone changed"),
        ("InvalidChangeBatch: [...]", 3, 4, "2 of 4 batches were applied; run again to finish"),
        ("Could not connect", 2, 2, "; 1 of 2 batches were applied; run again to finish"),
        ("Could not connect", 1, 3, ""),
    ],
)
def test_a_failed_batch_says_what_it_left_behind(
    error: str, number: int, total: int, note: str
) -> None:
    """Route 53 applies a batch all or nothing: a refused one applied nothing, and the
    batches before it stay applied, so the message counts them."""
    said = route53.left_behind(error, number, total)
    assert note in said if note else said == ""
    assert ("applied nothing" in said) == ("InvalidChangeBatch" in error)


def test_the_endpoint_rules_refuse_in_order_and_pair_only_an_exact_delete() -> None:
    """loopback_route53's rules, which the moto server enforces: a CREATE after an exact
    DELETE of its record set is the only one exempt from moto's journal check."""
    from mirrorfleet.testing.loopback_route53 import batch_refusals, change_key, change_shape

    live = route53.record_of(RecordSet("x", "TXT", 60, ('"a"',)), ORIGIN)
    other = route53.record_of(RecordSet("x", "TXT", 60, ('"b"',)), ORIGIN)
    zone = {change_key(live): change_shape(live)}
    pair = [route53.change("DELETE", live), route53.change("CREATE", other)]
    assert batch_refusals(zone, pair) == ([], [1])
    assert batch_refusals(zone, [route53.change("UPSERT", other), pair[1]])[1] == []
    stale = [route53.change("DELETE", other), route53.change("CREATE", live)]
    refused, paired = batch_refusals(zone, stale)
    assert paired == [] and [r.split(" but ")[1] for r in refused] == [
        "the values provided do not match the current values",
        "it already exists",
    ]
