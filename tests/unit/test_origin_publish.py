"""Origin publish: serials, the sharded manifest, the change records, the stamp."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from mirrorfleet.config import OriginConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.origin.publish import publish
from mirrorfleet.tree import manifest
from mirrorfleet.tree.changes import changes_path, parse_record
from mirrorfleet.tree.keys import TSIG_KEYS, SecretsDir, init_secrets, load_signing_key
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import read_local_stamp


def keys(config: OriginConfig) -> list:
    return [load_signing_key(config.signing_key).public_key()]


def test_first_publish_is_serial_one_with_every_project(origin_config: OriginConfig) -> None:
    result = publish(origin_config)
    assert (result.previous, result.serial) == (0, 1)
    assert result.changed == [f"proj{i}" for i in range(5)]
    stamp = read_local_stamp(origin_config.tree, keys(origin_config))
    assert stamp is not None and stamp.serial == 1 and stamp.origin == "origin"
    state = manifest.load_manifest(origin_config.tree, keys(origin_config))
    assert set(state) == {f"proj{i}" for i in range(5)}
    assert {serial for serial, _ in state.values()} == {1}


def test_no_change_keeps_the_serial(origin_config: OriginConfig) -> None:
    publish(origin_config)
    stamp_file = origin_config.tree / ".mirror/stamp.json"
    before = stamp_file.read_bytes()
    again = publish(origin_config)
    assert not again.published and again.serial == 1
    assert stamp_file.read_bytes() == before
    assert publish(origin_config, force=True).serial == 2


def test_one_changed_project_rewrites_one_shard(origin_config: OriginConfig, add_project) -> None:
    publish(origin_config)
    shards = origin_config.tree / manifest.MANIFEST_DIR
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    add_project(origin_config.tree, "proj3", "2.0")
    result = publish(origin_config)
    assert result.serial == 2 and result.changed == ["proj3"]
    rewritten = [p.name for p in shards.iterdir() if p.stat().st_mtime_ns != mtimes.get(p.name)]
    assert rewritten == [f"{manifest.shard_of('proj3')}.json"]
    state = manifest.load_manifest(origin_config.tree, keys(origin_config))
    assert state["proj3"][0] == 2 and state["proj1"][0] == 1
    records = [
        parse_record((origin_config.tree / changes_path(n)).read_bytes(), keys(origin_config), n)
        for n in (1, 2)
    ]
    assert [r.changed for r in records] == [[f"proj{i}" for i in range(5)], ["proj3"]]


def test_removed_project_is_recorded(origin_config: OriginConfig) -> None:
    publish(origin_config)
    (origin_config.tree / "simple/proj4/index.html").unlink()
    result = publish(origin_config)
    assert result.removed == ["proj4"]
    assert "proj4" not in manifest.load_manifest(origin_config.tree, keys(origin_config))


def test_tampered_shard_fails_loudly(origin_config: OriginConfig, add_project) -> None:
    """A publish reads only the shards its change touches: a tampered one stops the
    publish that touches it, and a full publish (which reads them all)."""
    publish(origin_config)
    shard = origin_config.tree / manifest.shard_path("proj2")
    doc = json.loads(shard.read_bytes())
    doc["signed"]["projects"]["proj2"][0] = 99
    shard.write_text(json.dumps(doc))
    with pytest.raises(BadSignature):
        manifest.load_manifest(origin_config.tree, keys(origin_config))
    stamp = (origin_config.tree / ".mirror/stamp.json").read_bytes()
    add_project(origin_config.tree, "proj2", "2.0")
    with pytest.raises(MirrorfleetError, match="does not verify with this signing key"):
        publish(origin_config)
    with pytest.raises(MirrorfleetError, match="does not verify with this signing key"):
        publish(origin_config, full=True)
    assert (origin_config.tree / ".mirror/stamp.json").read_bytes() == stamp


def test_publish_with_another_key_is_refused(origin_config: OriginConfig, tmp_path: Path) -> None:
    publish(origin_config)
    init_secrets(tmp_path / "other")
    other = OriginConfig(
        name="origin",
        tree=origin_config.tree,
        signing_key=SecretsDir(tmp_path / "other").signing_key,
        ping_secret=origin_config.ping_secret,
        state_dir=origin_config.state_dir,
    )
    with pytest.raises(MirrorfleetError, match="was the key rotated"):
        publish(other)


def test_secrets_are_private_and_never_overwritten(tmp_path: Path) -> None:
    created = init_secrets(tmp_path / "s")
    assert sorted(created) == [
        "origin-signing.key",
        "origin-signing.pub",
        "ping.secret",
        "tsig-hosts.key",
        "tsig-monitor.key",
        "tsig-transfer.key",
    ]
    folder = SecretsDir(tmp_path / "s")
    tsig = [folder.tsig(name) for name in TSIG_KEYS]
    for path in (folder.signing_key, folder.ping_secret, *tsig):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # TSIG secrets are distinct 256-bit base64 keys, as BIND's key statement takes them
    secrets = {folder.tsig_secret(name) for name in TSIG_KEYS}
    assert len(secrets) == len(TSIG_KEYS) == 3
    assert all(len(base64.b64decode(s)) == 32 for s in secrets)
    assert stat.S_IMODE(folder.path.stat().st_mode) == 0o700
    before = folder.signing_key.read_bytes()
    assert init_secrets(tmp_path / "s") == []
    assert folder.signing_key.read_bytes() == before
