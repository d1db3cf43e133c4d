"""Publishing to Route 53, against a moto server on 127.0.0.1 over real HTTP.

moto alone accepts some batches Route 53 refuses (a CREATE of a live record set, a
DELETE that does not match); loopback_route53 makes it refuse them, and a test here
shows it does. The tests also check that route53.py refuses those before anything is
sent: the zone is unchanged afterwards and no ChangeResourceRecordSets call was made.
Second writers and PENDING changes: test_route53_races.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from route53kit import FLEET_OWNER, ZONE, cycle, dns_config, fleet_state, listed, moto_server

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.zone import records, update
from mirrorfleet.zone.plan import Plan, plan
from mirrorfleet.zone.providers import route53
from mirrorfleet.zone.records import HEAD, META, OWNER, SERVICE, RecordSet

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
WWW = {
    "Name": f"www.{ZONE}",
    "Type": "A",
    "TTL": 300,
    "ResourceRecords": [{"Value": "192.0.2.10"}],
}


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: moto needs neither root nor lab tools."""


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from moto_server(tmp_path_factory)


@pytest.fixture
def client(moto: str) -> Any:
    return boto3.client("route53", endpoint_url=moto, region_name="us-east-1")


def new_zone(client: Any, name: str = ZONE) -> str:
    """A fresh hosted zone holding one foreign record, www A."""
    zone_id = client.create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)
    zone_id = zone_id["HostedZone"]["Id"].split("/")[-1]
    www = dict(WWW, Name=f"www.{name}")
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": www}]},
    )
    return zone_id


@pytest.fixture
def zone_id(client: Any) -> str:
    return new_zone(client)


@pytest.fixture
def target(moto: str, zone_id: str) -> route53.Route53Provider:
    return route53.Route53Provider(
        ZONE, zone_id, endpoint_url=moto, max_attempts=2, insync_delay=1, insync_attempts=10
    )


def values(client: Any, zone_id: str, name: str, rdtype: str) -> list[str]:
    record = listed(client, zone_id).get((f"{name}.{ZONE}", rdtype), {})
    return sorted(r["Value"] for r in record.get("ResourceRecords", []))


def capture(target: route53.Route53Provider) -> list[list[route53.Change]]:
    """Every ChangeBatch the target sends, as sent."""
    sent: list[list[route53.Change]] = []

    def keep(params: dict, **_: Any) -> None:
        sent.append(params["ChangeBatch"]["Changes"])

    target.client.meta.events.register(
        "provide-client-params.route53.ChangeResourceRecordSets", keep
    )
    return sent


def test_first_publish_is_one_batch_and_listed(client, zone_id, target) -> None:
    result = cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    assert result.messages == 1 and len(result.plan.creates) == 5
    assert target.calls == {
        "ListResourceRecordSets": 1,
        "ChangeResourceRecordSets": 1,
        "GetChange": 1,
    }
    assert values(client, zone_id, SERVICE, "SRV") == [
        "10 100 80 mirror1.example.net.",
        "20 100 80 mirror2.example.net.",
    ]
    assert '"st=lagging"' in values(client, zone_id, f"mirror2.{META}", "TXT")[0]
    assert values(client, zone_id, OWNER, "TXT") == ['"txtvers=2" "owner=fleet-test"']
    assert '"serial=9"' in values(client, zone_id, HEAD, "TXT")[0]


def test_second_cycle_is_an_empty_plan_that_sends_nothing(client, zone_id, target) -> None:
    cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    before = listed(client, zone_id)
    result = cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    assert result.plan.empty and result.messages == 0
    assert target.calls == {"ListResourceRecordSets": 1}
    assert listed(client, zone_id) == before


def test_demotion_updates_in_place_conditional_on_our_marker(client, zone_id, target) -> None:
    cycle(target, {"mirror1": "fresh", "mirror2": "lagging"})
    marker = listed(client, zone_id)[(f"{OWNER}.{ZONE}", "TXT")]
    sent = capture(target)
    result = cycle(target, {"mirror1": "fresh", "mirror2": "down"})
    assert result.messages == 1 and len(result.plan.updates) == 2
    assert values(client, zone_id, SERVICE, "SRV") == ["10 100 80 mirror1.example.net."]
    assert '"st=down"' in values(client, zone_id, f"mirror2.{META}", "TXT")[0]
    [batch] = sent
    assert batch[:2] == [
        {"Action": "DELETE", "ResourceRecordSet": marker},
        {"Action": "CREATE", "ResourceRecordSet": marker},
    ]
    assert listed(client, zone_id)[(f"www.{ZONE}", "A")] == WWW  # foreign, untouched


def test_foreign_records_of_every_shape_are_read_and_left_alone(client, zone_id, target) -> None:
    def record(name: str, rdtype: str, value: str) -> dict:
        return {"Name": name, "Type": rdtype, "TTL": 60, "ResourceRecords": [{"Value": value}]}

    foreign = [
        record(f"\\052.wild.{ZONE}", "TXT", '"escaped wildcard"'),
        record(f"*.star.{ZONE}", "TXT", '"a\\042quote"'),
        record(ZONE, "TXT", '"v=spf1 -all"'),
        {
            "Name": f"alias.{ZONE}",
            "Type": "A",
            "AliasTarget": {
                "HostedZoneId": zone_id,
                "DNSName": f"www.{ZONE}",
                "EvaluateTargetHealth": False,
            },
        },
    ]
    client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": r} for r in foreign]},
    )
    live = {(r.name, r.rdtype): r for r in target.read_live()}
    assert live[("*.wild", "TXT")].values == ('"escaped wildcard"',)
    assert live[("*.star", "TXT")].values == ('"a\\"quote"',)
    assert live[("@", "TXT")].values == ('"v=spf1 -all"',)
    assert live[("alias", "A")].values == (f"ALIAS www.{ZONE}",)
    assert {("@", "SOA"), ("@", "NS"), ("www", "A")} <= set(live)
    before = listed(client, zone_id)
    cycle(target, {"mirror1": "fresh"})
    after = listed(client, zone_id)
    assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.parametrize("how", ["cycle", "apply", "first-publish"])
def test_a_zone_another_fleet_owns_is_refused(client, zone_id, target, how: str) -> None:
    cycle(target, {"mirror1": "fresh"})
    before = listed(client, zone_id)
    target.calls.clear()
    if how == "cycle":
        other = dns_config(target, owner="another-fleet")
        with pytest.raises(MirrorfleetError, match="another fleet publishes here"):
            update.update_zone(
                other, fleet_state({"mirror2": "fresh"}), apply=True, provider=target
            )
    else:
        impostor = records.owner_rrset("another-fleet", 60)
        result = plan([impostor], target.read_live())
        result.creates.append(RecordSet(f"mirror2.{META}", "TXT", 60, ('"txtvers=2"',)))
        match = "marker is not ours" if how == "apply" else "already has a _owner._pkgmirror"
        with pytest.raises(MirrorfleetError, match=match):
            target.apply(result, impostor, owner_is_live=how == "apply")
    assert "ChangeResourceRecordSets" not in target.calls
    assert listed(client, zone_id) == before


def test_a_thousand_mirrors_publish_in_the_fewest_batches_within_limits(
    client, zone_id, target
) -> None:
    states = {f"m{i:04d}": "fresh" for i in range(1000)}
    sent = capture(target)
    result = update.update_zone(
        dns_config(target), fleet_state(states, regions=20), apply=True, provider=target
    )
    assert result.messages == len(sent) == target.calls["ChangeResourceRecordSets"] > 1
    assert all(route53.fits(batch) for batch in sent)
    # as few as the limits allow: no batch had room for the change opening the next
    characters = sum(route53.cost(c)[1] for batch in sent for c in batch)
    biggest = max(route53.cost(c)[1] for batch in sent for c in batch)
    assert math.ceil(characters / route53.MAX_CHARS) <= len(sent)
    assert len(sent) <= math.ceil(characters / (route53.MAX_CHARS - biggest))
    assert len(result.plan.creates) == 1000 + 20 + 3  # meta, region SRV, main SRV/head/owner
    assert len(listed(client, zone_id)) == 1023 + 3  # and www, SOA, NS
    again = update.update_zone(
        dns_config(target), fleet_state(states, regions=20), apply=True, provider=target
    )
    assert again.plan.empty and again.messages == 0


def _bad_plan(case: str, live: list[RecordSet]) -> Plan:
    head = next(r for r in live if r.name == HEAD)
    other = RecordSet(HEAD, "TXT", 60, ('"txtvers=2" "serial=6"',))
    meta = RecordSet(f"mirror9.{META}", "TXT", 60, ('"txtvers=2"',))
    return {
        "create-of-live-record": Plan(creates=[other]),
        "delete-with-other-ttl": Plan(deletes=[replace(head, ttl=300)]),
        "delete-with-other-values": Plan(deletes=[other]),
        "update-from-stale-values": Plan(updates=[(other, head)]),
        "two-changes-in-one-batch": Plan(creates=[meta, replace(meta, values=('"x"',))]),
    }[case]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("create-of-live-record", "cannot CREATE _head._pkgmirror TXT: it exists"),
        ("delete-with-other-ttl", "do not match the live record exactly"),
        ("delete-with-other-values", "do not match the live record exactly"),
        ("update-from-stale-values", "do not match the live record exactly"),
        ("two-changes-in-one-batch", "more than once"),
    ],
)
def test_what_route53_refuses_is_refused_before_sending(
    client, zone_id, target, case: str, message: str
) -> None:
    cycle(target, {"mirror1": "fresh"})
    before = listed(client, zone_id)
    target.calls.clear()
    owner = records.owner_rrset(FLEET_OWNER, 60)
    with pytest.raises(MirrorfleetError, match=message):
        target.apply(_bad_plan(case, target.read_live()), owner, owner_is_live=True)
    assert "ChangeResourceRecordSets" not in target.calls
    assert listed(client, zone_id) == before


def _dead(target: route53.Route53Provider) -> route53.Route53Provider:
    return replace(target, endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1)


@pytest.mark.parametrize(
    ("call", "failed"),
    [
        (lambda t: t.read_live(), "ListResourceRecordSets"),
        (lambda t: t.apply(Plan(deletes=[]), records.owner_rrset("x", 60), False), None),
        (
            lambda t: t.apply(
                Plan(creates=[records.owner_rrset("x", 60)]), records.owner_rrset("x", 60), False
            ),
            "ListResourceRecordSets",
        ),
    ],
    ids=["read", "empty-plan", "apply"],
)
def test_a_dead_endpoint_is_one_clear_line(
    target, call: Callable[[route53.Route53Provider], object], failed: str | None
) -> None:
    dead = _dead(target)
    if failed is None:  # an empty plan sends nothing, so it cannot fail
        assert call(dead) == 0
        return
    with pytest.raises(MirrorfleetError) as caught:
        call(dead)
    message = str(caught.value)
    assert f"Route 53 {failed} for {ZONE} ({target.hosted_zone_id}) failed" in message
    assert "Could not connect" in message and "\n" not in message


def test_a_wrong_hosted_zone_id_is_refused(client, target) -> None:
    with pytest.raises(MirrorfleetError, match="NoSuchHostedZone"):
        replace(target, hosted_zone_id="ZNOSUCHZONE").read_live()
    other = new_zone(client, "other.test.")
    with pytest.raises(MirrorfleetError, match=r"is other\.test\., not mirrors\.test\."):
        replace(target, hosted_zone_id=other).read_live()


def test_missing_credentials_are_a_clear_error(target, monkeypatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(MirrorfleetError, match="Unable to locate credentials"):
        replace(target).read_live()


def _cli(tmp_path: Path, zone_id: str, moto: str, *argv: str) -> subprocess.CompletedProcess:
    (tmp_path / "dns.toml").write_text(
        f'zone = "{ZONE}"\nprovider = "route53"\nhosted_zone_id = "{zone_id}"\n'
        f'endpoint_url = "{moto}"\nowner = "{FLEET_OWNER}"\n'
    )
    return subprocess.run(
        [MIRRORFLEET, "dns", *argv, "--config", str(tmp_path / "dns.toml")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_apply_and_show(client, zone_id, moto, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps(fleet_state({"mirror1": "fresh"})))
    state = ["--state", str(tmp_path / "state.json"), "--json"]

    def cli(*argv: str) -> Any:
        proc = _cli(tmp_path, zone_id, moto, *argv)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert f"mirror1.{META} TXT" in cli("plan", *state)["create"]
    assert cli("apply", *state)["messages"] == 1
    assert cli("apply", *state)["messages"] == 0
    shown = {(r["name"], r["rdtype"]): r["values"] for r in cli("show", "--json")}
    assert (f"mirror1.{META}", "TXT") in shown and ("www", "A") not in shown
    assert shown[(SERVICE, "SRV")] == ["10 100 80 mirror1.example.net."]
    assert values(client, zone_id, SERVICE, "SRV") == ["10 100 80 mirror1.example.net."]


def test_cli_wrong_zone_is_one_line(moto, tmp_path: Path) -> None:
    proc = _cli(tmp_path, "ZNOSUCHZONE", moto, "show")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert " ".join(proc.stderr.split()) == (
        f"error: Route 53 ListResourceRecordSets for {ZONE} (ZNOSUCHZONE) failed: "
        "NoSuchHostedZone: No hosted zone found with ID: ZNOSUCHZONE"
    )  # one message (the console wraps it at 80 columns)


def _txt(value: str, name: str = f"x.{ZONE}", ttl: int = 60) -> dict:
    return {"Name": name, "Type": "TXT", "TTL": ttl, "ResourceRecords": [{"Value": value}]}


def _batch(*changes: tuple[str, dict]) -> list[dict]:
    return [{"Action": action, "ResourceRecordSet": record} for action, record in changes]


LIVE_X = _txt('"a"')


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        (_batch(("CREATE", _txt('"b"'))), "already exists"),
        (_batch(("CREATE", LIVE_X)), "already exists"),
        (_batch(("DELETE", _txt('"b"')), ("CREATE", _txt('"c"'))), "do not match"),
        (_batch(("DELETE", _txt('"a"', ttl=300)), ("CREATE", _txt('"c"'))), "do not match"),
        (_batch(("DELETE", _txt('"a"', name=f"y.{ZONE}"))), "was not found"),
        (_batch(("CREATE", _txt('"n"', name=f"new.{ZONE}")), ("CREATE", _txt('"b"'))), "exists"),
        (_batch(("DELETE", LIVE_X), ("CREATE", LIVE_X)), None),
        (_batch(("DELETE", LIVE_X), ("CREATE", _txt('"c"'))), None),
        (_batch(("UPSERT", _txt('"c"'))), None),
    ],
    ids=[
        "create-over-live-other-values",
        "create-over-live-same-values",
        "delete-stale-values",
        "delete-stale-ttl",
        "delete-missing",
        "all-or-nothing",
        "delete-create-pair-same",
        "delete-create-pair-new",
        "upsert",
    ],
)
def test_the_endpoint_refuses_what_route53_refuses_and_only_that(
    client, zone_id, changes: list[dict], refusal: str | None
) -> None:
    """The moto patch is narrow: only a CREATE that the same batch has made room for
    (by an exact DELETE) skips moto's journal check; a plain CREATE of a live record
    set, a stale DELETE, and the whole batch around either are refused."""
    client.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": _batch(("CREATE", LIVE_X))}
    )
    before = listed(client, zone_id)
    send = lambda: client.change_resource_record_sets(  # noqa: E731
        HostedZoneId=zone_id, ChangeBatch={"Changes": changes}
    )
    if refusal is None:
        send()
        final = changes[-1]["ResourceRecordSet"]
        assert listed(client, zone_id)[(final["Name"], "TXT")] == final
        return
    with pytest.raises(client.exceptions.ClientError) as caught:
        send()
    assert caught.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert refusal in caught.value.response["Error"]["Message"]
    assert listed(client, zone_id) == before
