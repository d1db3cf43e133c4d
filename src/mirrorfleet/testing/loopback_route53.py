"""A Route 53 endpoint on 127.0.0.1 (moto in server mode, real HTTP), with dummy
credentials only, for tests and benchmarks: a real AWS account is never used."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mirrorfleet.testing.loopback import free_port, stop_process

START_TIMEOUT = 30.0
# moto_server's own entry point, with route53_rules() below: moto 5 judges a batch by
# its change journal, not the live zone, so it accepts a CREATE of a live record set
# (keeping both) and a DELETE with stale values (a second writer silently lost), yet
# refuses a CREATE identical to an earlier one even when the same batch first DELETEs
# that record set (getmoto/moto#9105), which is how every batch re-asserts our marker.
# What it still hides: throttling, the 32,000-character limit, and PENDING unless pending_polls.
LAUNCHER = """
import sys
from mirrorfleet.testing.loopback_route53 import route53_rules
route53_rules(pending_polls=int(sys.argv.pop(1)))
from moto.server import main
sys.exit(main())
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ROUTE_53",
)


LiveKey = tuple[str, str, str]  # (name: lowercase, no final dot; type; SetIdentifier)
Shape = tuple[Any, ...]  # what a DELETE must name exactly: (TTL, values) or the alias


def _name(name: str) -> str:
    return name.replace("\\052", "*").rstrip(".").lower()


def _shape(ttl: Any, values: Sequence[str], alias: Mapping[str, Any] | None) -> Shape:
    if alias:
        return ("alias", _name(str(alias.get("DNSName", ""))))
    return (str(ttl), tuple(sorted(values)))


def change_key(record: Mapping[str, Any]) -> LiveKey:
    return (_name(record["Name"]), record["Type"], record.get("SetIdentifier") or "")


def change_shape(record: Mapping[str, Any]) -> Shape:
    values = [r["Value"] for r in record.get("ResourceRecords") or []]
    return _shape(record.get("TTL"), values, record.get("AliasTarget"))


def batch_refusals(
    live: Mapping[LiveKey, Shape], changes: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[int]]:
    """What Route 53 refuses in one ChangeBatch, judged in order against the live zone
    (a CREATE of a record set that exists, a DELETE that does not name it exactly),
    and the indexes of the CREATEs that follow an exact DELETE of their record set in
    the same batch: the pairs moto's journal check must let through, and only those.
    These rules are AWS's documented ones as written here, not AWS itself."""
    state, refusals, paired, deleted = dict(live), [], [], set()
    for index, item in enumerate(changes):
        record = item["ResourceRecordSet"]
        key, shape = change_key(record), change_shape(record)
        what = f"resource record set [name='{key[0]}.', type='{key[1]}']"
        if item["Action"] == "CREATE":
            if key in state:
                refusals.append(f"Tried to create {what} but it already exists")
                continue
            if key in deleted:
                paired.append(index)
            state[key] = shape
        elif item["Action"] == "DELETE":
            if key not in state:
                refusals.append(f"Tried to delete {what} but it was not found")
            elif state[key] != shape:
                refusals.append(
                    f"Tried to delete {what} but the values provided do not match the "
                    "current values"
                )
            else:
                del state[key]
                deleted.add(key)
        else:
            state[key] = shape
    return refusals, paired


def route53_rules(pending_polls: int = 0) -> None:
    """Patch moto (in this process) to judge a ChangeBatch as Route 53 does, atomically;
    with pending_polls, each change stays PENDING for that many GetChange calls."""
    from moto.route53 import models, responses
    from moto.route53.exceptions import Route53ClientError

    lock = threading.Lock()  # Route 53 applies one zone's batches one at a time
    unjournaled: set[int] = set()  # id()s of the paired CREATEs of the batch in hand
    in_journal = models.ChangeList.__contains__
    change = models.Route53Backend.change_resource_record_sets

    def contains(self: Any, item: Any) -> bool:
        return id(item) not in unjournaled and in_journal(self, item)

    def change_resource_record_sets(self: Any, zoneid: str, change_list: list) -> None:
        with lock:
            zone = self.get_hosted_zone(zoneid)
            live = {
                (_name(r.name), r.type, r.set_identifier or ""): _shape(
                    r.ttl, r.records, r.alias_target
                )
                for r in zone.rrsets
            }
            refusals, paired = batch_refusals(live, change_list)
            if refusals:
                raise Route53ClientError("InvalidChangeBatch", f"[{', '.join(refusals)}]")
            unjournaled.update(id(change_list[i]) for i in paired)
            try:
                change(self, zoneid, change_list)
            finally:
                unjournaled.clear()

    models.ChangeList.__contains__ = contains  # type: ignore[method-assign]
    models.Route53Backend.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]
    if pending_polls > 0:
        _pending_changes(responses.Route53, pending_polls)


def _pending_changes(response: Any, polls: int) -> None:
    """Each accepted batch gets its own change id and reads PENDING for `polls`
    GetChange calls, then INSYNC, as Route 53 reports propagation (moto: INSYNC at once)."""
    pending: dict[str, int] = {}
    submit, get = response.change_resource_record_sets, response.get_change

    def change_resource_record_sets(self: Any) -> Any:
        result = submit(self)
        change_id = f"C{uuid.uuid4().hex[:13].upper()}"
        pending[change_id] = polls
        result.result["ChangeInfo"].update(Id=f"/change/{change_id}", Status="PENDING")
        return result

    def get_change(self: Any) -> Any:
        result = get(self)
        change_id = str(self._get_param("Id")).rsplit("/", 1)[-1]
        if pending.get(change_id, 0) > 0:
            pending[change_id] -= 1
            result.result["ChangeInfo"]["Status"] = "PENDING"
        return result

    response.change_resource_record_sets = change_resource_record_sets
    response.get_change = get_change


@contextmanager
def dummy_aws_env() -> Iterator[None]:
    """Only dummy credentials and no AWS config files for the duration."""
    saved = dict(os.environ)
    for name in AWS_UNSET:
        os.environ.pop(name, None)
    os.environ.update(AWS_ENV)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def moto_route53(log: Path | None = None, pending_polls: int = 0) -> Iterator[str]:
    """The endpoint URL of a moto server on a free loopback port; stopped by its PID.

    pending_polls: each change reads PENDING for that many GetChange calls.
    """
    port = free_port()
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                str(pending_polls),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:] if log else "(no log kept)"
                    raise RuntimeError(
                        f"moto server did not start (is moto[server] installed?): {tail}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        stop_process(proc)
