"""An offline root certifies the origin's online key: verifiers pin the roots (two of
three here), a rotation changes nothing they pin, and a revocation travels with the
next heartbeat. Against a real rsync daemon and HTTP on loopback."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.agent import sync
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.errors import UserError
from mirrorfleet.monitor.daemon import keys_warning
from mirrorfleet.origin.heartbeat import heartbeat
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.observe import FleetConfig, fetch_origin_stamp
from mirrorfleet.tree.keyfiles import private_pem
from mirrorfleet.tree.keys import key_id, load_signing_key, public_key_text
from mirrorfleet.tree.signed import sign_many
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp, StampUnavailable, fetch_stamp
from mirrorfleet.tree.trust import KEYS_PATH, Keyring, certify, new_document, revoke, rotate

ROOTS = [Ed25519PrivateKey.generate() for _ in range(3)]
PINNED = tuple(public_key_text(r) for r in ROOTS)


class Operator:
    """The operator's side: the keys document, signed offline by two of three roots."""

    def __init__(self, config: OriginConfig, path: Path) -> None:
        self.config, self.path = config, path
        self.doc = new_document([r.public_key() for r in ROOTS], 2)

    def write(self) -> None:
        self.path.write_bytes(self.doc.sign(ROOTS[:2]))

    def certify(self) -> None:
        online = load_signing_key(self.config.signing_key).public_key()
        self.doc = certify(self.doc, online, int(time.time()), 30)
        self.write()

    def rotate(self) -> Ed25519PrivateKey:
        """A new online key, certified beside the old one; the origin signs with it."""
        old, new = load_signing_key(self.config.signing_key), Ed25519PrivateKey.generate()
        self.doc = rotate(self.doc, new.public_key(), int(time.time()), 30)
        self.write()
        self.config.signing_key.write_bytes(private_pem(new))
        return old

    def revoke(self, key: Ed25519PrivateKey) -> None:
        self.doc = revoke(self.doc, key_id(key.public_key()), int(time.time()))
        self.write()


@pytest.fixture
def operator(origin_config: OriginConfig, tmp_path: Path) -> Operator:
    rooted = replace(origin_config, keys_document=tmp_path / "keys.json")
    made = Operator(rooted, rooted.keys_document)
    made.certify()
    return made


@pytest.fixture
def pinned(agent_config: AgentConfig) -> AgentConfig:
    """The agent pins the roots, not the origin's key."""
    return replace(agent_config, public_keys=PINNED, root_threshold=2)


def fleet(upstream) -> FleetConfig:
    return FleetConfig(upstream.http_url, PINNED, (), root_threshold=2)


def test_pinning_the_roots_a_verifier_takes_the_key_they_certify(
    pinned: AgentConfig, operator: Operator, upstream
) -> None:
    publish(operator.config, ping=False, force=True)
    assert (operator.config.tree / KEYS_PATH).exists()
    result = sync.sync_once(pinned)
    assert (result.status, result.serial) == ("synced", 2)
    assert (pinned.tree / KEYS_PATH).read_bytes() == operator.path.read_bytes()
    assert fetch_origin_stamp(fleet(upstream))[0].keys == 1


def test_a_keys_document_one_root_short_certifies_nothing(
    pinned: AgentConfig, operator: Operator
) -> None:
    operator.path.write_bytes(sign_many(operator.doc.signed(), ROOTS[:1]))
    publish(operator.config, ping=False, force=True)
    result = sync.sync_once(pinned)
    assert result.status == "error"
    assert "1 valid signature(s) by the 3 pinned keys, 2 needed" in result.error
    assert not (pinned.tree / KEYS_PATH).exists()


def test_a_rotation_needs_no_change_on_any_verifier(
    pinned: AgentConfig, operator: Operator, upstream
) -> None:
    publish(operator.config, ping=False, force=True)
    assert sync.sync_once(pinned).serial == 2
    keys = Keyring.pinned(PINNED, 2)
    base = upstream.http_url
    assert keys.refresh(base, 5) and fetch_stamp(base, keys)[0].serial == 2
    operator.rotate()
    publish(operator.config, ping=False, force=True)  # signed by the new key
    with pytest.raises(StampUnavailable, match="signed by unknown key"):
        fetch_stamp(base, Keyring.pinned(PINNED, 2))  # the roots alone do not sign stamps
    result = sync.sync_once(pinned)  # same agent.toml
    assert (result.status, result.serial) == ("synced", 3)
    assert fetch_origin_stamp(fleet(upstream))[0].serial == 3
    assert keys.refresh(base, 5) and fetch_stamp(base, keys)[0].serial == 3


def test_a_revoked_key_is_refused_everywhere_after_one_heartbeat(
    pinned: AgentConfig, operator: Operator, upstream
) -> None:
    publish(operator.config, ping=False, force=True)
    old = operator.rotate()
    publish(operator.config, ping=False, full=True)  # every shard signed by the new key
    assert sync.sync_once(pinned).serial == 3
    monitor = fleet(upstream)
    fetch_origin_stamp(monitor)
    operator.revoke(old)
    time.sleep(1.05)  # a heartbeat is a newer stamp: whole seconds
    heartbeat(operator.config, ping=False)
    # the heartbeat's ping: the agent and the monitor each take it
    assert sync.sync_once(pinned).status == "renewed"
    assert fetch_origin_stamp(monitor)[0].keys == 3
    assert (pinned.tree / KEYS_PATH).read_bytes() == operator.path.read_bytes()
    # whoever holds the old key signs a newer serial and serves it upstream
    stolen = Stamp.new(4, "origin").sign(old)
    (operator.config.tree / STAMP_PATH).write_bytes(stolen)
    result = sync.sync_once(pinned)
    assert result.status == "error" and f"key {key_id(old.public_key())} is revoked" in result.error
    with pytest.raises(UserError, match="is revoked"):
        fetch_origin_stamp(monitor)
    client = Keyring.pinned(PINNED, 2)
    client.refresh(upstream.http_url, 5)
    with pytest.raises(StampUnavailable, match="is revoked"):
        fetch_stamp(upstream.http_url, client)


def test_a_verifier_still_pinning_the_origins_key_keeps_working_through_the_switch(
    agent_config: AgentConfig, operator: Operator, upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The deploy that brings roots reaches the origin first: until an agent's own
    config pins the roots, it meets stamps naming a keys document its pin cannot
    verify, signed by the key it pins. That is no error for it, nor for the monitor."""
    publish(operator.config, ping=False, force=True)
    result = sync.sync_once(agent_config)  # pins the origin's key, as before the switch
    assert (result.status, result.serial) == ("synced", 2)
    assert "not needed, the stamp's signer is pinned itself" in caplog.text
    own = (agent_config.public_keys[0],)
    assert fetch_origin_stamp(FleetConfig(upstream.http_url, own, ()))[0].serial == 2


def test_the_monitor_warns_before_the_keys_document_ends(operator: Operator) -> None:
    """Once it ends, every verifier refuses everything the origin signs: the status
    page says so two weeks ahead, and after."""
    expires = operator.doc.expires
    assert keys_warning(None, time.time()) is None
    assert keys_warning(operator.doc, expires - 15 * 86400) is None
    soon = keys_warning(operator.doc, expires - 2 * 86400)
    assert soon == (
        f"keys document version {operator.doc.version} expires in 2.0 days: "
        "run `mirrorfleet keys certify` and deploy"
    )
    assert "has expired" in (keys_warning(operator.doc, expires + 1) or "")
