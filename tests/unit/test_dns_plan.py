"""Plan: diff against live records, touch only what we own, refuse unsafe plans."""

from __future__ import annotations

import dns.name
import dns.update
import pytest

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.zone.plan import check_safe, owned, plan, settle_checks
from mirrorfleet.zone.providers.rfc2136 import pack
from mirrorfleet.zone.records import RecordSet


def txt(name: str, value: str = '"txtvers=2"', ttl: int = 60) -> RecordSet:
    return RecordSet(name, "TXT", ttl, (value,))


def srv(*targets: str, name: str = "_pkgmirror._tcp") -> RecordSet:
    return RecordSet(name, "SRV", 60, tuple(f"10 100 80 {t}." for t in targets))


FOREIGN = [RecordSet("www", "A", 300, ("192.0.2.1",)), txt("_dmarc", '"v=DMARC1"'), txt("@")]


@pytest.mark.parametrize(
    ("name", "rdtype", "ours"),
    [
        ("_pkgmirror._tcp", "SRV", True),
        ("_pkgmirror._tcp.eu", "SRV", True),
        ("_head._pkgmirror", "TXT", True),
        ("_owner._pkgmirror", "TXT", True),
        ("mirror1._meta._pkgmirror", "TXT", True),
        ("_pkgmirror._tcp", "TXT", False),
        ("_head._pkgmirror", "SRV", False),
        ("_owner._pkgmirror", "RRSIG", False),
        ("mirror1._meta._pkgmirror", "NSEC", False),
        ("www", "TXT", False),
        ("_pkgmirror", "TXT", False),
        ("x_pkgmirror._tcp", "SRV", False),
        ("_meta._pkgmirror.evil", "TXT", False),
    ],
)
def test_ownership(name: str, rdtype: str, ours: bool) -> None:
    assert owned(name, rdtype) is ours


@pytest.mark.parametrize("rdtype", ["RRSIG", "NSEC", "A"])
def test_signer_and_foreign_types_at_our_names_are_left_alone(rdtype: str) -> None:
    live = [txt("_owner._pkgmirror"), RecordSet("_owner._pkgmirror", rdtype, 60, ("x",))]
    assert plan([txt("_owner._pkgmirror")], live).empty


def test_first_publish_creates_everything_and_ignores_foreign_records() -> None:
    desired = [txt("_owner._pkgmirror"), srv("a.example"), txt("a._meta._pkgmirror")]
    result = plan(desired, FOREIGN)
    assert [r.name for r in result.creates] == sorted(r.name for r in desired)
    assert result.updates == [] and result.deletes == []
    check_safe(result)


def test_same_records_make_an_empty_plan() -> None:
    desired = [txt("_owner._pkgmirror"), srv("a.example", "b.example")]
    live = [*FOREIGN, txt("_owner._pkgmirror"), srv("b.example", "a.example")]
    assert plan(desired, live).empty


def test_changes_and_stale_records() -> None:
    live = [txt("_owner._pkgmirror"), srv("a.example"), txt("gone._meta._pkgmirror"), *FOREIGN]
    desired = [txt("_owner._pkgmirror"), srv("a.example", "b.example")]
    result = plan(desired, live)
    assert [d.values for _, d in result.updates] == [srv("a.example", "b.example").values]
    assert [r.name for r in result.deletes] == ["gone._meta._pkgmirror"]
    assert result.changes == 2


def test_ttl_change_is_an_update() -> None:
    result = plan([txt("_head._pkgmirror", ttl=300)], [txt("_head._pkgmirror", ttl=60)])
    assert len(result.updates) == 1


def test_a_plan_removing_most_of_the_fleet_is_refused_unless_forced() -> None:
    live = [txt(f"m{i}._meta._pkgmirror") for i in range(10)]
    result = plan(live[:3], live)
    assert len(result.deletes) == 7
    with pytest.raises(MirrorfleetError, match="withdraws 7 of 10 listed mirrors"):
        check_safe(result)
    check_safe(result, force=True)


def test_a_plan_withdrawing_most_srv_targets_is_refused() -> None:
    live = [srv("a.example", "b.example", "c.example")]
    result = plan([srv("a.example")], live)
    assert result.withdrawn == ["b.example.", "c.example."] and result.mirrors_live == 3
    with pytest.raises(MirrorfleetError, match="withdraws 2 of 3"):
        check_safe(result)


def test_routine_serial_bumps_rewrite_everything_and_are_safe() -> None:
    live = [txt("_head._pkgmirror", '"serial=1"'), srv("a.example", "b.example")]
    live += [txt(f"{m}._meta._pkgmirror", '"serial=1"') for m in "ab"]
    desired = [txt("_head._pkgmirror", '"serial=2"'), srv("a.example", "b.example")]
    desired += [txt(f"{m}._meta._pkgmirror", '"serial=2"') for m in "ab"]
    result = plan(desired, live)
    assert len(result.updates) == 3 and result.removed == 0
    check_safe(result)


def test_duplicate_desired_sets_are_an_error() -> None:
    with pytest.raises(MirrorfleetError, match="twice"):
        plan([txt("_head._pkgmirror"), txt("_head._pkgmirror")], [])


def meta(chk: int, st: str = "ok", ttl: int = 60) -> RecordSet:
    return txt("m1._meta._pkgmirror", f'"txtvers=2" "serial=5" "chk={chk}" "st={st}"', ttl)


@pytest.mark.parametrize(
    ("live", "desired", "kept"),
    [
        (meta(1000), meta(1299), True),  # only chk moved, recently: keep live
        (meta(1000), meta(1300), False),  # chk too old: refresh it
        (meta(1000, "fresh"), meta(1001, "lagging"), False),  # state changed
        (meta(1000, ttl=60), meta(1001, ttl=300), False),  # TTL changed
        (meta(2000), meta(1000), False),  # clock went back: write what we saw
    ],
)
def test_chk_alone_is_refreshed_only_every_few_minutes(live, desired, kept: bool) -> None:
    settled = settle_checks([desired], [live])
    assert (settled[0] is live) is kept
    assert plan(settled, [live]).empty is kept


def test_a_plan_too_big_for_one_message_is_packed_in_order() -> None:
    owner = txt("_owner._pkgmirror", '"txtvers=2" "owner=x"')
    metas = [
        txt(f"m{i:04d}._meta._pkgmirror", '"txtvers=2" "' + "u" * 200 + '"') for i in range(600)
    ]
    big_srv = srv(*(f"m{i:04d}.example" for i in range(100)))
    gone = txt("old._meta._pkgmirror")
    result = plan([big_srv, owner, *metas], [gone])
    batches = pack(result, owner, dns.name.from_text("z.test."))
    flat = [(delete, r.name) for batch in batches for delete, r in batch]
    assert len(batches) > 1 and all(batches)
    for batch in batches:  # each one really fits a DNS message
        update = dns.update.UpdateMessage("z.test.")
        for _, rrset in batch:
            update.replace(rrset.name, rrset.ttl, rrset.rdtype, *rrset.values)
        assert len(update.to_wire()) <= 65535 - 1000
    assert flat[0] == (False, "_owner._pkgmirror")
    assert flat[-2:] == [(False, "_pkgmirror._tcp"), (True, "old._meta._pkgmirror")]
    assert sorted(flat) == sorted(
        [(False, r.name) for r in [owner, big_srv, *metas]] + [(True, gone.name)]
    )


def test_a_routine_plan_is_one_message() -> None:
    owner = txt("_owner._pkgmirror")
    result = plan([owner, srv("a.example"), txt("a._meta._pkgmirror")], [])
    assert len(pack(result, owner, dns.name.from_text("z.test."))) == 1
