"""Fail static, and reading the published state back from the zone."""

from __future__ import annotations

import pytest

from mirrorfleet.monitor.listing import Published, fail_static, read_head, read_published
from mirrorfleet.testing.demo_fleet import mirror
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone.records import META, RecordSet, head_rrset, meta_rrset


def test_enough_mirrors_up_publishes_the_truth() -> None:
    judged = [mirror("m1", "fresh", 5), mirror("m2", "down", 5)]
    published = {"m2": Published("fresh", 5, 1, 1)}
    records, held = fail_static(judged, published, min_listed=1)
    assert records == judged and held == set()


def test_all_down_keeps_the_published_set_unchanged() -> None:
    judged = [mirror("m1", "down", 9), mirror("m2", "down", 9), mirror("m3", "down", 9)]
    published = {
        "m1": Published("fresh", 5, 11, 21),
        "m2": Published("lagging", 4, 10, 20),
        "m3": Published("down", 3, 9, 19),
    }
    records, held = fail_static(judged, published, min_listed=1)
    assert held == {"m1", "m2"}
    by_label = {r.label: r for r in records}
    assert (by_label["m1"].state, by_label["m1"].serial, by_label["m1"].chk) == ("fresh", 5, 21)
    assert (by_label["m2"].state, by_label["m2"].serial) == ("lagging", 4)
    assert by_label["m3"].state == "down"


def test_nothing_published_lists_the_freshest_as_lagging() -> None:
    judged = [mirror("m1", "down", 3), mirror("m2", "down", 7), mirror("m3", "down", 0)]
    records, held = fail_static(judged, {}, min_listed=1)
    assert held == {"m2"}
    assert [r.state for r in records] == ["down", "lagging", "down"]


def test_a_mirror_never_verified_is_never_listed() -> None:
    judged = [mirror("m1", "down", 0)]
    records, held = fail_static(judged, {}, min_listed=1)
    assert held == set() and records[0].state == "down"


def test_min_listed_zero_lets_every_mirror_go() -> None:
    judged = [mirror("m1", "down", 5)]
    records, held = fail_static(judged, {"m1": Published("fresh", 5, 1, 1)}, min_listed=0)
    assert held == set() and records[0].state == "down"


def test_published_state_round_trips_through_the_records() -> None:
    records = [
        meta_rrset(mirror(label, state, 7), 60)
        for label, state in [("m1", "fresh"), ("m2", "lagging"), ("m3", "down")]
    ]
    published = read_published(records)
    assert {k: v.state for k, v in published.items()} == {
        "m1": "fresh",
        "m2": "lagging",
        "m3": "down",
    }
    assert published["m1"].serial == 7


@pytest.mark.parametrize(
    "value",
    [
        '"txtvers=2" "st=ok" "serial=1" "ts=1" "chk=1"',
        '"txtvers=2" "st=fresh"',
        '"junk"',
        '"txtvers=3" "st=fresh" "serial=1" "ts=1" "chk=1"',
        '"txtvers=2" "st=fresh" "serial=x" "ts=1" "chk=1"',
    ],
    ids=["old-vocabulary", "missing-fields", "not-key-value", "future-version", "bad-number"],
)
def test_malformed_meta_records_are_skipped(value: str) -> None:
    assert read_published([RecordSet(f"m1.{META}", "TXT", 60, (value,))]) == {}


def test_the_head_is_read_back_with_its_signature() -> None:
    stamp = Stamp(serial=9, ts=1234, origin="origin", expires=2**32)
    head = read_head([head_rrset(stamp, b"s" * 64, "0123456789abcdef", 60)])
    assert head == (stamp, b"s" * 64, "0123456789abcdef")
