"""Issue 19: a client that pins the fleet's offline roots, not the origin's key,
against real parts on loopback (a BIND primary the monitor writes, the trees served
over HTTP, the `mirrorfleet` command as a user runs it). A rotation changes nothing
on its side; a revoked key's head is refused once a heartbeat carried the revocation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dns.query
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.client.memory import STATE_ENV
from mirrorfleet.monitor.daemon import Monitor
from mirrorfleet.origin.heartbeat import heartbeat
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.testing.loopback_fleet import LoopbackFleet, loopback_monitor
from mirrorfleet.tree.keyfiles import private_pem
from mirrorfleet.tree.keys import (
    MONITOR_TSIG,
    SecretsDir,
    init_secrets,
    key_id,
    load_signing_key,
    public_key_text,
)
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.tree.trust import certify, new_document, revoke, rotate
from mirrorfleet.zone.records import HEAD, head_rrset, signed_bytes

MIRRORFLEET = str(Path(sys.executable).with_name("mirrorfleet"))
ZONE = "mirrors.test."
MIRRORS = ("m1", "m2")
ROOTS = [Ed25519PrivateKey.generate() for _ in range(3)]
PINNED = tuple(public_key_text(r) for r in ROOTS)


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: loopback BIND needs no lab."""


class World:
    def __init__(self, fleet: LoopbackFleet, bind: LoopbackBind, root: Path) -> None:
        self.fleet, self.bind = fleet, bind
        self.document = root / "keys.json"
        self.doc = new_document([r.public_key() for r in ROOTS], 2)
        self.monitor: Monitor | None = None

    def sign(self, doc) -> None:
        self.doc = doc
        self.document.write_bytes(doc.sign(ROOTS[:2]))

    def everywhere(self) -> None:
        """The mirrors copy the origin; the monitor probes and writes DNS."""
        for label in MIRRORS:
            self.fleet.sync(label)
        assert self.monitor is not None
        self.monitor.round(set(MIRRORS), refresh_head=True)

    def pick(self) -> subprocess.CompletedProcess:
        argv = [MIRRORFLEET, "pick", "--json", "--zone", ZONE, "--server", "127.0.0.1"]
        argv += ["--port", str(self.bind.primary.port), "--timeout", "1", "--root-threshold", "2"]
        for key in PINNED:
            argv += ["--key", key]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=os.environ)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    init_secrets(tmp_path / "secrets")
    fleet = LoopbackFleet(tmp_path, SecretsDir(tmp_path / "secrets"), MIRRORS)
    made = World(fleet, None, tmp_path)  # type: ignore[arg-type]
    online = load_signing_key(fleet.secrets.signing_key).public_key()
    made.sign(certify(made.doc, online, int(time.time()), 30))
    fleet.origin = replace(fleet.origin, keys_document=made.document)
    fleet.pinned, fleet.threshold = PINNED, 2
    fleet.release("2.0")
    try:
        with LoopbackBind(tmp_path / "bind", ZONE) as bind:
            made.bind = bind
            made.monitor = loopback_monitor(fleet, bind, tmp_path / "status", lag_grace=0)
            made.everywhere()
            yield made
    finally:
        fleet.close()


def test_a_client_pinning_the_roots_picks_rotates_and_refuses_a_revoked_key(
    world: World,
) -> None:
    state = Path(os.environ[STATE_ENV])
    first = world.pick()
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["serial"] == 2
    kept = state / f"keys-{ZONE}json"
    assert kept.read_bytes() == world.document.read_bytes()  # the roots' document, kept

    # rotation: a new online key on the origin, nothing changed on the client
    old = load_signing_key(world.fleet.secrets.signing_key)
    new = Ed25519PrivateKey.generate()
    world.sign(rotate(world.doc, new.public_key(), int(time.time()), 30))
    world.fleet.secrets.signing_key.write_bytes(private_pem(new))
    serial = world.fleet.release("3.0")
    world.everywhere()
    second = world.pick()
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["serial"] == serial
    assert kept.read_bytes() == world.document.read_bytes()  # version 2, fetched once

    # revocation of the old key, carried by one heartbeat
    world.sign(revoke(world.doc, key_id(old.public_key()), int(time.time())))
    time.sleep(1.05)
    heartbeat(world.fleet.origin, ping=False)
    world.everywhere()
    third = world.pick()
    assert third.returncode == 0, third.stderr
    assert kept.read_bytes() == world.document.read_bytes()  # version 3

    # whoever holds the old key writes a newer head into DNS: refused
    now = int(time.time())
    forged = Stamp(serial + 1, now, "origin", now + 600, keys=world.doc.version)
    head = head_rrset(forged, old.sign(signed_bytes(forged)), key_id(old.public_key()), 60)
    update = dns.update.UpdateMessage(
        ZONE,
        keyring=dns.tsigkeyring.from_text({MONITOR_TSIG: world.bind.keys[MONITOR_TSIG]}),
        keyname=MONITOR_TSIG,
    )
    update.replace(HEAD, 60, "TXT", *head.values)
    assert dns.query.tcp(update, "127.0.0.1", port=world.bind.primary.port, timeout=5).rcode() == 0
    refused = world.pick()
    assert refused.returncode == 1
    assert f"key {key_id(old.public_key())} is revoked (keys document version 3)" in refused.stderr
