"""TUF's mix-and-match: metadata from different serials, each piece validly signed,
served as one view that never existed. The stamp names its snapshot (every shard by
hash) and the chain of change records, so the agent downstream, the monitor and the
client each refuse the mix, against a real rsync daemon and HTTP on loopback.
"""

from __future__ import annotations

import random

import pytest

from mirrorfleet.agent import sync
from mirrorfleet.client.projects import ChangesUnavailable, fetch_changes
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.fetch import SpotCheckFailed
from mirrorfleet.probe.spotcheck import Candidate, spot_check
from mirrorfleet.tree.changes import changes_path, parse_record
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.manifest import parse_shard, shard_of, shard_path
from mirrorfleet.tree.snapshot import SNAPSHOT_PATH, digest, parse_snapshot
from mirrorfleet.tree.stamp import fetch_stamp, read_local_stamp

# in proj0's shard (e9), so serial 2 rewrites the very shard proj0 is listed in
NEIGHBOUR = "other168"


def keys_of(config: OriginConfig) -> list:
    return [load_signing_key(config.signing_key).public_key()]


def older_shard_under_todays_stamp(config: OriginConfig, add_project) -> bytes:
    """Publish serial 2 (a project beside proj0 in its shard), then put serial 1's
    shard back: every file verifies, the view is a mix. Returns today's shard."""
    assert shard_of(NEIGHBOUR) == shard_of("proj0")
    path = config.tree / shard_path("proj0")
    old = path.read_bytes()
    add_project(config.tree, NEIGHBOUR, "1.0")
    assert publish(config, ping=False).serial == 2
    today = path.read_bytes()
    path.write_bytes(old)
    assert parse_shard(old, keys_of(config))[0] == 1  # signed, at serial 1
    return today


def test_publish_names_every_shard_in_the_snapshot_its_stamp_names(
    origin_config: OriginConfig, add_project
) -> None:
    publish(origin_config, ping=False)
    keys, tree = keys_of(origin_config), origin_config.tree
    first = read_local_stamp(tree, keys)
    snapshot = parse_snapshot((tree / SNAPSHOT_PATH).read_bytes(), keys, first.snapshot)
    shards = sorted(p.name[:2] for p in (tree / ".mirror/manifest").glob("??.json"))
    assert sorted(snapshot.shards) == shards and snapshot.serial == 1
    assert first.record == digest((tree / changes_path(1)).read_bytes())
    add_project(tree, NEIGHBOUR, "1.0")
    publish(origin_config, ping=False)
    second = read_local_stamp(tree, keys)
    after = parse_snapshot((tree / SNAPSHOT_PATH).read_bytes(), keys, second.snapshot)
    changed = {s for s in after.shards if after.shards[s] != snapshot.shards.get(s)}
    assert changed == {shard_of(NEIGHBOUR)}  # only the shard the publish touched
    record = parse_record((tree / changes_path(2)).read_bytes(), keys, 2)
    assert record.prev == first.record  # the chain: serial 2's record names serial 1's


def test_the_agent_downstream_refuses_a_shard_from_an_older_serial(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    assert sync.sync_once(agent_config).serial == 1
    older_shard_under_todays_stamp(origin_config, add_project)
    result = sync.sync_once(agent_config)
    assert result.status == "error"
    assert "shards are not the ones serial 2's snapshot names" in result.error
    # nothing from the mix was stamped: the mirror still says serial 1
    assert read_local_stamp(agent_config.tree, keys_of(origin_config)).serial == 1


def test_the_agent_takes_the_upstream_once_it_serves_the_real_view(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    sync.sync_once(agent_config)
    today = older_shard_under_todays_stamp(origin_config, add_project)
    assert sync.sync_once(agent_config).status == "error"
    (origin_config.tree / shard_path("proj0")).write_bytes(today)  # repaired
    result = sync.sync_once(agent_config)
    assert (result.status, result.serial) == ("synced", 2)
    assert (agent_config.tree / shard_path("proj0")).read_bytes() == today


def test_the_monitor_refuses_a_shard_from_an_older_serial(
    upstream, origin_config: OriginConfig, add_project
) -> None:
    publish(origin_config, ping=False)
    keys = keys_of(origin_config)
    base = upstream.http_url.rstrip("/") + "/"
    stamp = fetch_stamp(base, keys)[0]
    pool = [Candidate("proj0", 1)]
    assert spot_check(base, stamp, pool, keys, 5, 1, 1 << 20, random.Random(0)) == 1
    older_shard_under_todays_stamp(origin_config, add_project)
    stamp = fetch_stamp(base, keys)[0]
    # proj0's own entry is the same in both shards: only the snapshot tells the mix
    with pytest.raises(SpotCheckFailed, match="a shard from another serial"):
        spot_check(base, stamp, pool, keys, 5, 1, 1 << 20, random.Random(0))


def test_the_client_refuses_a_change_record_outside_the_stamps_chain(
    upstream, origin_config: OriginConfig, add_project
) -> None:
    """A record of serial 2 that the origin signed for a publish never stamped (it
    died, and the redo wrote another): the client reading per-project freshness
    refuses it instead of missing what the real one names."""
    publish(origin_config, ping=False)
    keys = keys_of(origin_config)
    tree, base = origin_config.tree, upstream.http_url.rstrip("/") + "/"
    add_project(tree, NEIGHBOUR, "1.0")
    publish(origin_config, ping=False)
    stray = tree / changes_path(2)
    real = stray.read_bytes()
    add_project(tree, "proj1", "2.0")
    publish(origin_config, ping=False)
    head = fetch_stamp(base, keys)[0]
    assert fetch_changes(base, head, 1, keys, 5) == {
        2: frozenset({NEIGHBOUR}),
        3: frozenset({"proj1"}),
    }
    record = parse_record(real, keys, 2)
    record.changed = []  # the same serial, validly signed, naming nothing
    stray.write_bytes(record.sign(load_signing_key(origin_config.signing_key)))
    with pytest.raises(ChangesUnavailable, match="record 2 is not the one the stamp's chain"):
        fetch_changes(base, head, 1, keys, 5)
