"""Route 53 with a second writer, and with changes that stay PENDING: against a moto
server on 127.0.0.1 (real HTTP, boto3), patched by loopback_route53 to judge each
batch as Route 53 does.

A plan is read, then another client writes, then the stale plan is applied: its
conditional batch must be refused whole, and the next cycle (or the monitor's next
round) must converge. Every wait here is for a condition, and bounded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from route53kit import FLEET_OWNER, ZONE, cycle, dns_config, listed, moto_server

from mirrorfleet.config import DnsConfig, MonitorConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.monitor.daemon import Monitor, serve
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.testing.loopback_fleet import LoopbackFleet
from mirrorfleet.tree.keys import SecretsDir, init_secrets
from mirrorfleet.zone import records
from mirrorfleet.zone.providers import route53
from mirrorfleet.zone.records import META, OWNER, SERVICE

OWNER_NAME = f"{OWNER}.{ZONE}"
SRV_NAME = f"{SERVICE}.{ZONE}"
LABEL = "result"  # the label of mirrorfleet_monitor_publishes_total
PENDING_POLLS = 2  # GetChange calls that read PENDING before INSYNC, per change


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: moto needs neither root nor lab tools."""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from moto_server(tmp_path_factory)


@pytest.fixture(scope="module")
def pending_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto whose every change reads PENDING for PENDING_POLLS GetChange calls."""
    yield from moto_server(tmp_path_factory, PENDING_POLLS)


@pytest.fixture
def client(moto: str) -> Any:
    """The second writer: another client of the same endpoint."""
    return boto3.client("route53", endpoint_url=moto, region_name="us-east-1")


def new_zone(client: Any) -> str:
    created = client.create_hosted_zone(Name=ZONE, CallerReference=uuid.uuid4().hex)
    return created["HostedZone"]["Id"].split("/")[-1]


def target_for(url: str, zone_id: str, **kwargs: Any) -> route53.Route53Provider:
    settings = {"max_attempts": 1, "insync_delay": 0.05, "insync_attempts": 10, **kwargs}
    return route53.Route53Provider(ZONE, zone_id, endpoint_url=url, **settings)


@pytest.fixture
def target(moto: str, client: Any) -> route53.Route53Provider:
    return target_for(moto, new_zone(client))


def our_owner(owner: str = FLEET_OWNER) -> records.RecordSet:
    return records.owner_rrset(owner, DnsConfig(zone=ZONE).ttl)


def write(client: Any, zone_id: str, action: str, record: dict) -> None:
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": record}]},
    )


def srv_targets(client: Any, zone_id: str) -> dict[str, int]:
    """SRV target label -> priority, as the zone lists it."""
    record = listed(client, zone_id).get((SRV_NAME, "SRV"), {})
    values = [r["Value"].split() for r in record.get("ResourceRecords", [])]
    return {v[3].split(".")[0]: int(v[0]) for v in values}


def assert_converged(target: route53.Route53Provider, states: dict[str, str], **kw: Any) -> None:
    """A rerun finds nothing to do: the zone holds what the plan wants."""
    again = cycle(target, states, **kw)
    assert again.plan.empty and again.messages == 0, again.plan.summary()
    assert "ChangeResourceRecordSets" not in target.calls


# --- a second writer between plan and apply ------------------------------------------


def _other_srv(live: dict) -> tuple[str, dict]:
    srv = live[(SRV_NAME, "SRV")]
    rogue = {"Value": "30 100 80 rogue.example.net."}
    return "UPSERT", {**srv, "ResourceRecords": [*srv["ResourceRecords"], rogue]}


def _other_meta(live: dict) -> tuple[str, dict]:
    meta = live[(f"m2.{META}.{ZONE}", "TXT")]
    return "UPSERT", {**meta, "ResourceRecords": [{"Value": '"txtvers=2" "st=fresh"'}]}


def _gone_meta(live: dict) -> tuple[str, dict]:
    return "DELETE", live[(f"m2.{META}.{ZONE}", "TXT")]


def _other_ttl(live: dict) -> tuple[str, dict]:
    return "UPSERT", {**live[(SRV_NAME, "SRV")], "TTL": 3600}


@pytest.mark.parametrize(
    ("writes", "refusal"),
    [
        (_other_srv, "do not match the current values"),
        (_other_meta, "do not match the current values"),
        (_gone_meta, "but it was not found"),
        (_other_ttl, "do not match the current values"),
    ],
    ids=["srv-values", "meta-values", "meta-deleted", "srv-ttl"],
)
def test_a_second_writer_between_plan_and_apply_is_refused_whole_then_converges(
    client, target, writes: Callable[[dict], tuple[str, dict]], refusal: str
) -> None:
    cycle(target, {"m1": "fresh", "m2": "fresh", "m3": "fresh"})
    wanted = {"m1": "fresh", "m2": "down", "m3": "fresh"}
    stale = cycle(target, wanted, apply=False).plan  # read, planned ...
    assert {r.name for _, r in stale.updates} == {SERVICE, f"m2.{META}"}
    write(client, target.hosted_zone_id, *writes(listed(client, target.hosted_zone_id)))
    before = listed(client, target.hosted_zone_id)  # ... another writer ... then apply
    with pytest.raises(MirrorfleetError) as caught:
        target.apply(stale, our_owner(), owner_is_live=True)
    message = str(caught.value)
    assert "InvalidChangeBatch" in message and refusal in message, message
    assert "batch 1 applied nothing" in message and "\n" not in message
    assert listed(client, target.hosted_zone_id) == before  # nothing half-applied
    assert target.calls["ChangeResourceRecordSets"] == 1
    rerun = cycle(target, wanted)  # reads the other writer's change and plans from it
    assert rerun.messages == 1
    assert srv_targets(client, target.hosted_zone_id) == {"m1": 10, "m3": 10}
    assert_converged(target, wanted)


def test_a_writer_that_takes_the_zone_between_plan_and_apply_keeps_it(client, target) -> None:
    cycle(target, {"m1": "fresh", "m2": "fresh"})
    stale = cycle(target, {"m1": "fresh", "m2": "down"}, apply=False).plan
    marker = listed(client, target.hosted_zone_id)[(OWNER_NAME, "TXT")]
    theirs = {**marker, "ResourceRecords": [{"Value": '"txtvers=2" "owner=another-fleet"'}]}
    write(client, target.hosted_zone_id, "UPSERT", theirs)
    before = listed(client, target.hosted_zone_id)
    with pytest.raises(MirrorfleetError, match=f"name='{OWNER_NAME}'.*do not match"):
        target.apply(stale, our_owner(), owner_is_live=True)
    with pytest.raises(MirrorfleetError, match="another fleet publishes here"):
        cycle(target, {"m1": "fresh", "m2": "down"})
    assert listed(client, target.hosted_zone_id) == before


# --- a race on the first _owner CREATE -------------------------------------------------


@pytest.mark.parametrize("rival_owner", [FLEET_OWNER, "another-fleet"])
def test_two_first_publishes_race_for_the_marker_and_one_wins_whole(
    moto, client, target, rival_owner: str
) -> None:
    """Two publishers read the empty zone, both plan a first publish (a CREATE of the
    marker), the rival applies first: ours is refused and leaves nothing behind."""
    rival = target_for(moto, target.hosted_zone_id)
    ours, theirs = {"m1": "fresh", "m2": "lagging"}, {"m1": "fresh", "m2": "fresh"}
    stale = cycle(target, ours, apply=False).plan
    assert (OWNER, "TXT") in {(r.name, r.rdtype) for r in stale.creates}
    cycle(rival, theirs, owner=rival_owner)
    before = listed(client, target.hosted_zone_id)
    with pytest.raises(MirrorfleetError) as caught:
        target.apply(stale, our_owner(), owner_is_live=False)
    message = str(caught.value)
    assert f"Tried to create resource record set [name='{OWNER_NAME}'" in message, message
    assert "batch 1 applied nothing" in message
    assert listed(client, target.hosted_zone_id) == before  # the rival's zone, whole
    if rival_owner != FLEET_OWNER:  # another fleet won: we keep out
        with pytest.raises(MirrorfleetError, match="another fleet publishes here"):
            cycle(target, ours)
        assert listed(client, target.hosted_zone_id) == before
        return
    assert cycle(target, ours).messages == 1  # our own fleet won: we take it from there
    assert srv_targets(client, target.hosted_zone_id) == {"m1": 10, "m2": 20}
    assert_converged(target, ours)


# --- n of m batches applied -------------------------------------------------------------


def test_a_refused_later_batch_says_how_many_were_applied_and_a_rerun_finishes(
    moto, client
) -> None:
    target = target_for(moto, new_zone(client), max_records=10)
    mirrors = ("m1", "m2", "m3", "m4")
    cycle(target, dict.fromkeys(mirrors, "fresh"), regions=2)
    wanted = dict.fromkeys(mirrors, "lagging")
    stale = cycle(target, wanted, apply=False, regions=2).plan
    live = dict(target.last_read or {})
    batches = route53.change_batches(stale, our_owner(), True, live, ZONE, max_records=10)
    assert len(batches) >= 3, [len(b) for b in batches]
    victim = batches[1][2]["ResourceRecordSet"]  # batch 2, after its marker pair
    assert victim["Type"] == "SRV"
    write(client, target.hosted_zone_id, "UPSERT", {**victim, "TTL": 3600})
    before = listed(client, target.hosted_zone_id)
    with pytest.raises(MirrorfleetError) as caught:
        target.apply(stale, our_owner(), owner_is_live=True)
    message = str(caught.value)
    total = len(batches)
    assert f"(batch 2 of {total})" in message and "batch 2 applied nothing" in message
    assert f"1 of {total} batches were applied; run again to finish" in message
    assert target.calls["ChangeResourceRecordSets"] == 2  # the later batches never sent
    after = listed(client, target.hosted_zone_id)
    first = {(c["ResourceRecordSet"]["Name"], c["ResourceRecordSet"]["Type"]) for c in batches[0]}
    assert {k for k in after if after[k] != before[k]} == first - {(OWNER_NAME, "TXT")}
    assert after.keys() == before.keys()
    for key in first - {(OWNER_NAME, "TXT")}:
        assert '"st=lagging"' in after[key]["ResourceRecords"][0]["Value"], key
    assert cycle(target, wanted, regions=2).messages >= 1
    assert set(srv_targets(client, target.hosted_zone_id).values()) == {20}
    assert_converged(target, wanted, regions=2)


# --- PENDING -> INSYNC ---------------------------------------------------------------------


def statuses(target: route53.Route53Provider) -> list[tuple[str, str]]:
    """(change id, status) for every GetChange answer the target reads."""
    seen: list[tuple[str, str]] = []

    def keep(parsed: dict, **_: Any) -> None:
        seen.append((parsed["ChangeInfo"]["Id"], parsed["ChangeInfo"]["Status"]))

    target.client.meta.events.register("after-call.route53.GetChange", keep)
    return seen


def test_apply_returns_only_once_every_batch_is_insync(pending_moto) -> None:
    zone_id = new_zone(boto3.client("route53", endpoint_url=pending_moto, region_name="us-east-1"))
    target = target_for(pending_moto, zone_id, max_records=4)
    seen = statuses(target)
    result = cycle(target, {"m1": "fresh", "m2": "fresh"})
    assert result.messages >= 2
    ids = list(dict.fromkeys(change for change, _ in seen))
    assert len(ids) == result.messages  # one change per batch, each waited for
    for change in ids:
        assert [s for c, s in seen if c == change] == ["PENDING"] * PENDING_POLLS + ["INSYNC"]
    assert target.calls["GetChange"] == result.messages * (PENDING_POLLS + 1)


def test_the_insync_wait_is_bounded_and_a_rerun_sends_nothing(pending_moto) -> None:
    zone_id = new_zone(boto3.client("route53", endpoint_url=pending_moto, region_name="us-east-1"))
    target = target_for(pending_moto, zone_id, insync_attempts=PENDING_POLLS, insync_delay=0.1)
    started = time.monotonic()
    with pytest.raises(MirrorfleetError) as caught:
        cycle(target, {"m1": "fresh"})
    waited = time.monotonic() - started
    message = str(caught.value)
    assert "wait for change" in message and "to be INSYNC" in message, message
    assert "Max attempts exceeded" in message
    assert target.calls["GetChange"] == PENDING_POLLS  # gave up at the bound ...
    assert waited < 5  # ... not at Route 53's 300 s default
    assert_converged(target, {"m1": "fresh"})  # the batch was accepted: nothing to resend


# --- the monitor, publishing to Route 53 ---------------------------------------------------

MIRRORS = ("m1", "m2", "m3")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LoopbackFleet]:
    init_secrets(tmp_path / "secrets")
    fleet = LoopbackFleet(tmp_path, SecretsDir(tmp_path / "secrets"), MIRRORS)
    try:
        yield fleet
    finally:
        fleet.close()


def monitor_for(
    fleet: LoopbackFleet, target: route53.Route53Provider, tmp_path: Path, **settings: Any
) -> Monitor:
    config = MonitorConfig(
        fleet=tmp_path / "unused-fleet.toml",
        ping_secret=fleet.secrets.ping_secret,
        status_dir=tmp_path / "status",
        lag_grace=0,
        **settings,
    )
    return Monitor(config, fleet.config(), dns_config(target), provider=target)


def before_each_batch(target: route53.Route53Provider, action: Callable[[], None]) -> list[int]:
    """Run `action` once, just before the target's first ChangeResourceRecordSets goes out."""
    ran: list[int] = []

    def hook(**_: Any) -> None:
        if not ran:
            ran.append(1)
            action()

    target.client.meta.events.register("before-call.route53.ChangeResourceRecordSets", hook)
    return ran


def publishes(monitor: Monitor, outcome: str) -> float:
    """The monitor's own count of publishes that ended in `outcome`, as /metrics shows it."""
    name = "mirrorfleet_monitor_publishes_total"
    return monitor.metrics.registry.get_sample_value(name, {LABEL: outcome}) or 0.0


def test_the_monitor_reports_a_refused_batch_and_recovers_on_its_next_round(
    client, target, fleet, tmp_path: Path
) -> None:
    monitor = monitor_for(fleet, target, tmp_path)
    monitor.restore()
    monitor.round(set(MIRRORS), refresh_head=True)
    assert srv_targets(client, target.hosted_zone_id) == {"m1": 10, "m2": 10, "m3": 10}
    fleet.release("2.0")
    fleet.sync("m1")
    fleet.sync("m2")  # m3 misses it: the next round demotes m3
    zone = target.hosted_zone_id
    ran = before_each_batch(target, lambda: write(client, zone, *_other_srv(listed(client, zone))))
    monitor.round(set(MIRRORS), refresh_head=True)
    assert ran and publishes(monitor, "error") == 1
    error = monitor.dns_status["error"] or ""
    assert "InvalidChangeBatch" in error and "batch 1 applied nothing" in error, error
    assert srv_targets(client, zone) == {"m1": 10, "m2": 10, "m3": 10, "rogue": 30}
    monitor.round(set(MIRRORS), refresh_head=True)  # the next round: nobody in the way
    assert monitor.dns_status["error"] is None
    assert srv_targets(client, zone) == {"m1": 10, "m2": 10, "m3": 20}
    assert (
        '"st=lagging"'
        in listed(client, zone)[(f"m3.{META}.{ZONE}", "TXT")]["ResourceRecords"][0]["Value"]
    )
    target.calls.clear()
    monitor.round(set(MIRRORS), refresh_head=True)
    assert "ChangeResourceRecordSets" not in target.calls  # converged: nothing to send


def wait_for(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.05)


def test_a_monitor_that_loses_the_marker_race_publishes_on_a_later_round(
    client, target, fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's own loop: a twin monitor of the same fleet creates the marker just
    before our first publish goes out; a later round (interval 1 s) publishes."""
    zone = target.hosted_zone_id
    marker = route53.record_of(our_owner(), target.origin)
    ran = before_each_batch(target, lambda: write(client, zone, "CREATE", marker))
    monitor = monitor_for(fleet, target, tmp_path, interval=1, listen=f"127.0.0.1:{free_port()}")
    server, loop = serve(monitor)
    try:
        wait_for(lambda: publishes(monitor, "applied") >= 1, 15)
        assert ran and publishes(monitor, "error") == 1
        [refused] = [
            r.getMessage() for r in caplog.records if "zone update failed" in r.getMessage()
        ]
        assert f"Tried to create resource record set [name='{OWNER_NAME}'" in refused, refused
        assert srv_targets(client, zone) == {"m1": 10, "m2": 10, "m3": 10}
        assert monitor.dns_status["error"] is None
    finally:
        monitor.stop()
        loop.join(10)
        server.shutdown()
        server.server_close()
    assert not loop.is_alive()


def test_the_monitor_waits_for_insync_and_bounds_the_wait(
    pending_moto, fleet, tmp_path: Path
) -> None:
    zone_id = new_zone(boto3.client("route53", endpoint_url=pending_moto, region_name="us-east-1"))
    patient = target_for(pending_moto, zone_id)
    monitor = monitor_for(fleet, patient, tmp_path)
    seen = statuses(patient)
    monitor.round(set(MIRRORS), refresh_head=True)
    assert monitor.dns_status["error"] is None
    assert [s for _, s in seen] == ["PENDING"] * PENDING_POLLS + ["INSYNC"]
    fleet.release("2.0")
    fleet.sync("m1")
    hasty = target_for(pending_moto, zone_id, insync_attempts=1)
    monitor.provider = hasty
    monitor.round(set(MIRRORS), refresh_head=True)
    error = monitor.dns_status["error"] or ""
    assert "to be INSYNC" in error and "Max attempts exceeded" in error, error
    hasty.calls.clear()
    monitor.round(set(MIRRORS), refresh_head=True)  # the change landed: nothing to resend
    assert monitor.dns_status["error"] is None
    assert "ChangeResourceRecordSets" not in hasty.calls
